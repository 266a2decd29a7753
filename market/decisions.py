"""Decision records of the agents and the CEM automation, and the log that keeps them.

Every decision an agent or the CEM automation takes is recorded with the inputs it
used, so that an owner can see why an order was placed or not, and an administrator
why a rate moved or a swap happened. A :class:`DecisionLog` keeps them in memory (for
the fleet replay) or in the creditx store (table ``decision_log``, migration
``0004_decisions``).

Their errors are in :mod:`market.errors` (``AgentError``).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from market.clock import from_micros, to_micros
from market.errors import InvalidAgentInput
from market.ledger import read_connection
from market.schema import metadata

DecisionKind = Literal["agent", "cem"]
KINDS: tuple[str, ...] = ("agent", "cem")


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One recorded decision.

    ``subject`` is the instance of an agent's decision, or the tier of the CEM's;
    ``outcome`` a short word (``orders``, ``hold``, ``fallback``, ``rejected``,
    ``rate``, ``manual_rate``, ``swap``, ...); ``detail`` the inputs used and what was
    decided, as plain JSON values. ``seq`` is given by the log.
    """

    kind: DecisionKind
    subject: str
    at: datetime
    outcome: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidAgentInput("decision kind", self.kind, f"must be one of {KINDS}")
        if not isinstance(self.subject, str) or not self.subject:
            raise InvalidAgentInput("decision subject", self.subject, "must be a non-empty str")
        if self.at.tzinfo is None:
            raise InvalidAgentInput("decision time", self.at, "must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionQuery:
    """Which records to read: newest first, filtered, one page."""

    kind: DecisionKind | None = None
    subject: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidAgentInput("decision kind", self.kind, f"must be one of {KINDS}")
        if type(self.limit) is not int or not 0 < self.limit <= 10_000:
            raise InvalidAgentInput("limit", self.limit, "must be an int in 1..10000")
        if type(self.offset) is not int or self.offset < 0:
            raise InvalidAgentInput("offset", self.offset, "must be a non-negative int")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidAgentInput(name, moment, "must be timezone-aware")

    def matches(self, record: DecisionRecord) -> bool:
        """Return whether ``record`` passes the filters."""
        return (
            (self.kind is None or record.kind == self.kind)
            and (self.subject is None or record.subject == self.subject)
            and (self.outcome is None or record.outcome == self.outcome)
            and (self.since is None or record.at >= self.since)
            and (self.until is None or record.at < self.until)
        )


class DecisionLog(ABC):
    """Where decisions are kept: :class:`MemoryDecisionLog` or :class:`SqlDecisionLog`."""

    @abstractmethod
    def record(self, records: Iterable[DecisionRecord]) -> list[DecisionRecord]:
        """Append records in order; return them with their ``seq``."""

    @abstractmethod
    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        """Return the records ``query`` selects, newest first."""

    def latest(self, kind: DecisionKind, subject: str, outcome: str) -> DecisionRecord | None:
        """Return the newest record of ``subject`` with ``outcome``, or ``None``."""
        found = self.query(DecisionQuery(kind=kind, subject=subject, outcome=outcome, limit=1))
        return found[0] if found else None


class MemoryDecisionLog(DecisionLog):
    """Decisions kept in memory, for simulations and the fleet replay."""

    def __init__(self) -> None:
        self._records: list[DecisionRecord] = []
        self._lock = threading.Lock()

    def record(self, records: Iterable[DecisionRecord]) -> list[DecisionRecord]:
        with self._lock:
            stored = []
            for r in records:
                stored.append(replace(r, seq=len(self._records) + 1))
                self._records.append(stored[-1])
            return stored

    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        with self._lock:
            found = [r for r in reversed(self._records) if query.matches(r)]
        return found[query.offset : query.offset + query.limit]


decision_log_table = sa.Table(
    "decision_log",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)


class SqlDecisionLog(DecisionLog):
    """Decisions kept in the creditx store's ``decision_log`` table.

    Create the table with ``market.migrations.upgrade``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, records: Iterable[DecisionRecord]) -> list[DecisionRecord]:
        rows = list(records)
        if not rows:
            return []
        with self.engine.begin() as conn:
            return record_in(conn, rows)

    def query(self, query: DecisionQuery) -> list[DecisionRecord]:
        t = decision_log_table
        statement = sa.select(t)
        if query.kind is not None:
            statement = statement.where(t.c.kind == query.kind)
        if query.subject is not None:
            statement = statement.where(t.c.subject == query.subject)
        if query.outcome is not None:
            statement = statement.where(t.c.outcome == query.outcome)
        if query.since is not None:
            statement = statement.where(t.c.at_us >= to_micros(query.since))
        if query.until is not None:
            statement = statement.where(t.c.at_us < to_micros(query.until))
        statement = statement.order_by(t.c.seq.desc()).limit(query.limit).offset(query.offset)
        with read_connection(self.engine) as conn:
            return [
                DecisionRecord(
                    kind=r.kind,
                    subject=r.subject,
                    at=from_micros(r.at_us),
                    outcome=r.outcome,
                    detail=json.loads(r.detail),
                    seq=r.seq,
                )
                for r in conn.execute(statement)
            ]


def plain(value: object) -> Any:
    """Return ``value`` as plain JSON values: Fractions as ``"n/d"`` strings, tuples as lists."""
    from fractions import Fraction

    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def record_in(conn: Connection, records: Iterable[DecisionRecord]) -> list[DecisionRecord]:
    """Append records to the store's decision log in the open transaction ``conn``, so
    they commit with whatever else it writes; return them with their ``seq``."""
    stored = []
    for r in records:
        result = conn.execute(
            decision_log_table.insert().values(
                kind=r.kind,
                subject=r.subject,
                at_us=to_micros(r.at),
                outcome=r.outcome,
                detail=json.dumps(r.detail, sort_keys=True, default=str),
            )
        )
        (seq,) = result.inserted_primary_key or (0,)
        stored.append(replace(r, seq=int(seq)))
    return stored
