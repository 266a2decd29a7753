"""The decision log: the same records, filters and pages in memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market.decisions import (
    DecisionLog,
    DecisionQuery,
    DecisionRecord,
    MemoryDecisionLog,
    SqlDecisionLog,
)
from market.errors import InvalidAgentInput
from market.ledger import create_store_engine
from market.migrations import upgrade

T0 = datetime(2026, 11, 24, 15, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionLog]:
    if request.param == "memory":
        yield MemoryDecisionLog()
        return
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'log.db'}"
    )
    engine = create_store_engine(url)
    upgrade(engine)
    yield SqlDecisionLog(engine)
    engine.dispose()


def _records() -> list[DecisionRecord]:
    return [
        DecisionRecord("agent", "vm-1", T0, "orders", {"spare": 5, "why": ["q90 path"]}),
        DecisionRecord("agent", "vm-2", T0 + timedelta(minutes=1), "fallback", {"spare": 0}),
        DecisionRecord("cem", "gold", T0 + timedelta(minutes=2), "rate", {"new_rate": 7}),
        DecisionRecord("agent", "vm-1", T0 + timedelta(hours=1), "rejected", {"error": "x"}),
    ]


def test_records_come_back_newest_first_with_their_details(log: DecisionLog) -> None:
    stored = log.record(_records())
    assert [r.seq for r in stored] == sorted({r.seq for r in stored})
    everything = log.query(DecisionQuery())
    assert [r.outcome for r in everything] == ["rejected", "rate", "fallback", "orders"]
    assert everything[-1].detail == {"spare": 5, "why": ["q90 path"]}
    assert everything[-1].at == T0


def test_filters_and_pages(log: DecisionLog) -> None:
    log.record(_records())
    agents = log.query(DecisionQuery(kind="agent", subject="vm-1"))
    assert [r.outcome for r in agents] == ["rejected", "orders"]
    assert [r.subject for r in log.query(DecisionQuery(outcome="fallback"))] == ["vm-2"]
    window = DecisionQuery(since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=1))
    assert [r.outcome for r in log.query(window)] == ["rate", "fallback"]
    page = log.query(DecisionQuery(limit=2, offset=1))
    assert [r.outcome for r in page] == ["rate", "fallback"]
    latest = log.latest("agent", "vm-1", "orders")
    assert latest is not None
    assert latest.detail["spare"] == 5
    assert log.latest("cem", "silver", "rate") is None


def test_bad_records_and_queries_are_refused() -> None:
    with pytest.raises(InvalidAgentInput, match="decision kind"):
        DecisionRecord("robot", "vm-1", T0, "orders")  # type: ignore[arg-type]
    with pytest.raises(InvalidAgentInput, match="timezone"):
        DecisionRecord("agent", "vm-1", datetime(2026, 1, 1), "orders")  # noqa: DTZ001
    with pytest.raises(InvalidAgentInput, match="limit"):
        DecisionQuery(limit=0)
    with pytest.raises(InvalidAgentInput, match="offset"):
        DecisionQuery(offset=-1)
    with pytest.raises(InvalidAgentInput, match="since"):
        DecisionQuery(since=datetime(2026, 1, 1))  # noqa: DTZ001
