"""Fixtures of the market tests: a manual clock and ledgers over every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market.clock import ManualClock
from market.ledger import Ledger, MemoryStore, SqlStore
from market.migrations import upgrade

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def sql_ledger(url: str, clock: ManualClock) -> Ledger:
    """Return a ledger over a freshly migrated SQL store at ``url``."""
    upgrade(url)
    return Ledger(SqlStore(url), clock)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ledger(store_kind: str, clock: ManualClock, request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """A ledger over each store: in memory, a SQLite file and PostgreSQL."""
    if store_kind == "memory":
        book = Ledger(MemoryStore(), clock)
    elif store_kind == "sqlite":
        book = sql_ledger(request.getfixturevalue("sqlite_url"), clock)
    else:
        book = sql_ledger(request.getfixturevalue("pg_url"), clock)
    yield book
    book.close()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store to copy: a fresh store per Hypothesis example, cheaply."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path
