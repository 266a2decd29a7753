"""The SQL store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL``, every writing transaction opens with
``BEGIN IMMEDIATE`` (so writers queue on the busy timeout instead of deadlocking) and
reads open a deferred ``BEGIN``. PostgreSQL runs READ COMMITTED and locks the touched
account rows in id order (``SELECT ... ORDER BY id FOR UPDATE``), so concurrent entries
serialise per account without deadlocks; serialisation failures and deadlocks
(SQLSTATE 40001, 40P01) are retried all the same.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from json.encoder import encode_basestring as _quote
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from market.clock import from_micros, to_micros
from market.crashpoints import crash_point
from market.ledger._errors import LedgerError, StoreUnavailable
from market.ledger._model import Account, AccountKind, Entry, Transfer
from market.ledger._schema import accounts as t_accounts
from market.ledger._schema import entries as t_entries
from market.ledger._schema import transfers as t_transfers
from market.ledger._store import (
    EntryQuery,
    ExtraWrites,
    Pending,
    PlanPending,
    apply_entries,
    check_reopen,
    merge_results,
    resolve_replays,
)

_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite caps bound parameters per statement; stay well below every build's limit.
_CHUNK = 500
_READ = {"creditx_read": True}
# Page cache of each SQLite connection, in KiB (SQLite's default is 2 MiB).
_SQLITE_CACHE_KIB = 64 * 1024
# Below this many entries plain executemany beats COPY's extra round trips.
_COPY_FROM = 64


def create_store_engine(url: str, *, busy_timeout_ms: int = 30_000, durable: bool = True) -> Engine:
    """Create the engine of a creditx store at ``url`` (SQLite file or PostgreSQL).

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path/to/ledger.db`` or
        ``postgresql+psycopg://host:5432/db``.
    busy_timeout_ms
        How long a SQLite writer waits for the write lock before failing.
    durable
        Flush every commit to disk before acknowledging it (SQLite ``synchronous=FULL``,
        PostgreSQL ``synchronous_commit=on``). ``False`` keeps atomicity and isolation
        but may lose the last commits on a power cut: for simulations and for tests
        that measure isolation rather than durability.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise LedgerError("the SQL store needs a SQLite file; use MemoryStore in memory")
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let the "begin" hook below choose the transaction mode.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # settlement batches rewrite tens of thousands of rows: keep their pages cached
            cursor.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            read_only = conn.get_execution_options().get("creditx_read", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, isolation_level="READ COMMITTED", pool_size=10)
        if not durable:

            @event.listens_for(engine, "connect")
            def _no_flush(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cursor:
                    cursor.execute("SET synchronous_commit = off")
                dbapi_conn.commit()

        return engine
    raise LedgerError(f"unsupported store URL {url!r}: use sqlite:/// or postgresql://")


def read_connection(engine: Engine) -> Connection:
    """Open a connection of a creditx store whose transactions only read.

    On SQLite they begin with a deferred ``BEGIN``, reading a snapshot of the WAL
    without taking the write lock, so readers never queue behind (or hold up) writers;
    plain ``engine.connect()`` transactions begin ``IMMEDIATE``, as writers must.
    """
    return engine.connect().execution_options(**_READ)


def _driver_error(exc: BaseException) -> BaseException:
    # COPY runs on the driver's cursor, so its errors arrive unwrapped by SQLAlchemy.
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def _retryable(exc: BaseException) -> bool:
    orig = _driver_error(exc)
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    return "database is locked" in str(orig) or "database is busy" in str(orig)


def _integrity(exc: BaseException) -> bool:
    orig = _driver_error(exc)
    return isinstance(exc, sa.exc.IntegrityError) or str(
        getattr(orig, "sqlstate", "") or ""
    ).startswith("23")


class _WritesFailed(Exception):
    """Carries an error of the extra writes out of the retry loop untouched."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class SqlStore:
    """A ledger store in a SQL database; create its tables with ``market.migrations``."""

    def __init__(
        self, url_or_engine: str | Engine, *, max_attempts: int = 50, durable: bool = True
    ) -> None:
        self.engine = (
            create_store_engine(url_or_engine, durable=durable)
            if isinstance(url_or_engine, str)
            else url_or_engine
        )
        self._max_attempts = max_attempts
        self._postgres = self.engine.dialect.name == "postgresql"
        mark = "%s" if self._postgres else "?"
        self._sql_insert_entry = (
            "INSERT INTO ledger_entries (id, idempotency_key, fingerprint, reason, actor,"
            f" created_at_us, metadata) VALUES ({', '.join([mark] * 7)})"
        )
        self._sql_insert_transfer = (
            "INSERT INTO ledger_transfers (entry_id, position, source, destination, amount)"
            f" VALUES ({', '.join([mark] * 5)})"
        )
        self._sql_update_balance = f"UPDATE ledger_accounts SET balance = {mark} WHERE id = {mark}"

    # accounts

    def open_accounts(self, accounts: Sequence[Account]) -> None:
        wanted = {a.id: a for a in accounts}
        for attempt in range(self._max_attempts):
            try:
                with self.engine.begin() as conn:
                    stored = self._load_accounts(conn, wanted)
                    for account_id, account in stored.items():
                        check_reopen(account, wanted[account_id])
                    rows = [
                        {"id": a.id, "asset": a.asset, "kind": str(a.kind), "balance": 0}
                        for a in wanted.values()
                        if a.id not in stored
                    ]
                    if rows:
                        conn.execute(t_accounts.insert(), rows)
                    crash_point("ledger.open_accounts.before_commit")
                crash_point("ledger.open_accounts.after_commit")
                return
            except sa.exc.IntegrityError:
                # Opened concurrently by someone else: look again.
                self._backoff(attempt)
            except sa.exc.DBAPIError as exc:
                if not _retryable(exc):
                    raise
                self._backoff(attempt)
        raise StoreUnavailable(f"could not open {len(wanted)} accounts after retries")

    def get_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            return self._load_accounts(conn, account_ids)

    def all_accounts(self) -> dict[str, Account]:
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            rows = conn.execute(sa.select(t_accounts.c.id, t_accounts.c.asset, t_accounts.c.kind))
            return {r.id: Account(r.id, r.asset, AccountKind(r.kind)) for r in rows}

    @staticmethod
    def _load_accounts(conn: Connection, account_ids: Iterable[str]) -> dict[str, Account]:
        ids = list(dict.fromkeys(account_ids))
        found: dict[str, Account] = {}
        query = sa.select(t_accounts.c.id, t_accounts.c.asset, t_accounts.c.kind)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for row in conn.execute(query.where(t_accounts.c.id.in_(chunk))):
                found[row.id] = Account(row.id, row.asset, AccountKind(row.kind))
        return found

    # posting

    def commit(
        self,
        pending: Sequence[Pending],
        accounts: Mapping[str, Account],
        writes: ExtraWrites | None = None,
    ) -> list[Entry]:
        look_up_keys = False
        for attempt in range(self._max_attempts):
            try:
                with self.engine.begin() as conn:
                    posted = self._commit(conn, pending, accounts, look_up_keys)
                    if writes is not None:
                        try:
                            writes(conn)
                        except Exception as exc:
                            raise _WritesFailed(exc) from exc
                    crash_point("ledger.post.before_commit")
                crash_point("ledger.post.after_commit")
                return posted
            except LedgerError:
                raise
            except _WritesFailed as failed:
                # The rows belong to the caller: its errors are its own, not key conflicts.
                if not _retryable(failed.error):
                    raise failed.error from None
                self._backoff(attempt)
            except Exception as exc:
                if _integrity(exc):
                    if not any(p.entry.idempotency_key for p in pending):
                        raise LedgerError(
                            f"the store refused the entries: {_driver_error(exc)}"
                        ) from exc
                    # Another transaction used one of our keys first: replay or conflict.
                    look_up_keys = True
                elif _retryable(exc):
                    self._backoff(attempt)
                else:
                    raise
        raise StoreUnavailable(f"could not commit {len(pending)} entries after retries")

    def commit_planned(
        self, lock: Sequence[str], plan: PlanPending, accounts: Mapping[str, Account]
    ) -> list[Entry]:
        for attempt in range(self._max_attempts):
            try:
                with self.engine.begin() as conn:
                    # PostgreSQL locks the rows in id order; SQLite holds the write lock
                    balances = self._lock_balances(conn, sorted(set(lock)))
                    pending, writes = plan(balances)
                    posted = self._commit(conn, pending, accounts, False) if pending else []
                    if writes is not None:
                        try:
                            writes(conn)
                        except Exception as exc:
                            raise _WritesFailed(exc) from exc
                    crash_point("ledger.post.before_commit")
                crash_point("ledger.post.after_commit")
                return posted
            except LedgerError:
                raise
            except _WritesFailed as failed:
                if not _retryable(failed.error):
                    raise failed.error from None
                self._backoff(attempt)
            except sa.exc.DBAPIError as exc:
                if not _retryable(exc):
                    raise
                self._backoff(attempt)
        raise StoreUnavailable("could not commit the planned entries after retries")

    def _commit(
        self,
        conn: Connection,
        pending: Sequence[Pending],
        accounts: Mapping[str, Account],
        look_up_keys: bool,
    ) -> list[Entry]:
        if look_up_keys:
            keys = [p.entry.idempotency_key for p in pending if p.entry.idempotency_key]
            fresh, replays = resolve_replays(pending, self._load_keys(conn, keys))
        else:
            fresh, replays = list(pending), [None] * len(pending)
        if not fresh:
            return merge_results(fresh, replays)
        touched = sorted(
            {a for item in fresh for t in item.entry.transfers for a in (t.source, t.destination)}
        )
        working = self._lock_balances(conn, touched)
        start = dict(working)
        apply_entries(working, fresh, accounts)
        entry_rows, transfer_rows = _rows(fresh)
        changed = [(working[a], a) for a in touched if working[a] != start[a]]
        self._write(conn, entry_rows, transfer_rows, changed)
        return merge_results(fresh, replays)

    def _write(
        self,
        conn: Connection,
        entry_rows: list[tuple[Any, ...]],
        transfer_rows: list[tuple[Any, ...]],
        changed: list[tuple[int, str]],
    ) -> None:
        if self._postgres and len(entry_rows) >= _COPY_FROM:
            # COPY streams a settlement batch in one round trip; balances go as arrays.
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(_PG_COPY_ENTRIES) as copy:
                for row in entry_rows:
                    copy.write_row(row)
            with cursor.copy(_PG_COPY_TRANSFERS) as copy:
                for row in transfer_rows:
                    copy.write_row(row)
            cursor.close()
            if changed:
                conn.exec_driver_sql(_PG_UPDATE_BALANCES, _columns(changed, 2))
            return
        if self._postgres:
            # Every write of the entries in one round trip, as arrays unnested server-side.
            conn.exec_driver_sql(
                _PG_WRITE_ALL,
                _columns(entry_rows, 7) + _columns(transfer_rows, 5) + _columns(changed, 2),
            )
            return
        # Driver-level executemany: one prepared statement, no per-row parameter objects.
        conn.exec_driver_sql(self._sql_insert_entry, entry_rows)
        conn.exec_driver_sql(self._sql_insert_transfer, transfer_rows)
        if changed:
            conn.exec_driver_sql(self._sql_update_balance, changed)

    def _lock_balances(self, conn: Connection, touched: Sequence[str]) -> dict[str, int]:
        balances: dict[str, int] = {}
        if self._postgres:
            # One statement locks every touched row, in id order, so entries never deadlock.
            rows = conn.exec_driver_sql(
                "SELECT id, balance FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                (list(touched),),
            )
            balances.update(rows.all())
            return balances
        for start in range(0, len(touched), _CHUNK):
            chunk = tuple(touched[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = conn.exec_driver_sql(
                f"SELECT id, balance FROM ledger_accounts WHERE id IN ({marks})", chunk
            )
            balances.update(rows.all())
        return balances

    def _load_keys(
        self, conn: Connection, keys: Sequence[str]
    ) -> dict[str, tuple[str | None, Entry]]:
        found: dict[str, tuple[str | None, Entry]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = (
                sa.select(t_entries)
                .where(t_entries.c.idempotency_key.in_(chunk))
                .order_by(t_entries.c.seq)
            )
            rows = list(conn.execute(query))
            for row, entry in zip(rows, self._with_transfers(conn, rows), strict=True):
                found[row.idempotency_key] = (row.fingerprint, entry)
        return found

    # reading

    def balances(self, prefix: str | None) -> dict[str, int]:
        query = sa.select(t_accounts.c.id, t_accounts.c.balance)
        if prefix is not None:
            query = query.where(t_accounts.c.id.startswith(prefix, autoescape=True))
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            return dict(conn.execute(query).all())

    def balances_of(self, account_ids: Iterable[str]) -> dict[str, int]:
        ids = list(dict.fromkeys(account_ids))
        found: dict[str, int] = {}
        query = sa.select(t_accounts.c.id, t_accounts.c.balance)
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                found.update(conn.execute(query.where(t_accounts.c.id.in_(chunk))).all())
        return found

    def entries(self, query: EntryQuery) -> list[Entry]:
        select = sa.select(t_entries).order_by(t_entries.c.seq)
        if query.reason is not None:
            select = select.where(t_entries.c.reason == query.reason)
        if query.since is not None:
            select = select.where(t_entries.c.created_at_us >= to_micros(query.since))
        if query.until is not None:
            select = select.where(t_entries.c.created_at_us < to_micros(query.until))
        if query.account is not None:
            legs = sa.select(t_transfers.c.entry_id).where(
                sa.or_(
                    t_transfers.c.source == query.account,
                    t_transfers.c.destination == query.account,
                )
            )
            select = select.where(t_entries.c.id.in_(legs))
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            rows = list(conn.execute(select))
            found = [e for e in self._with_transfers(conn, rows) if query.matches(e)]
        return found if query.limit is None else found[: query.limit]

    def journal(self) -> Iterator[Entry]:
        query = (
            sa.select(
                t_entries, t_transfers.c.source, t_transfers.c.destination, t_transfers.c.amount
            )
            .join(t_transfers, t_transfers.c.entry_id == t_entries.c.id)
            .order_by(t_entries.c.seq, t_transfers.c.position)
        )
        with self.engine.connect().execution_options(**_READ) as conn, conn.begin():
            current: Any = None
            legs: list[Transfer] = []
            for row in conn.execute(query):
                if current is not None and row.id != current.id:
                    yield _entry(current, tuple(legs))
                    legs = []
                current = row
                legs.append(Transfer(row.source, row.destination, row.amount))
            if current is not None:
                yield _entry(current, tuple(legs))

    def _with_transfers(self, conn: Connection, rows: Sequence[Any]) -> list[Entry]:
        legs: dict[str, list[Transfer]] = {row.id: [] for row in rows}
        ids = list(legs)
        query = sa.select(t_transfers).order_by(t_transfers.c.entry_id, t_transfers.c.position)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for leg in conn.execute(query.where(t_transfers.c.entry_id.in_(chunk))):
                legs[leg.entry_id].append(Transfer(leg.source, leg.destination, leg.amount))
        return [_entry(row, tuple(legs[row.id])) for row in rows]

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(min(0.2, 0.002 * 2**attempt) * random.random())


_PG_COPY_ENTRIES = (
    "COPY ledger_entries (id, idempotency_key, fingerprint, reason, actor, created_at_us,"
    " metadata) FROM STDIN"
)
_PG_COPY_TRANSFERS = (
    "COPY ledger_transfers (entry_id, position, source, destination, amount) FROM STDIN"
)
_PG_WRITE_ALL = (
    "WITH new_entries AS (INSERT INTO ledger_entries (id, idempotency_key, fingerprint,"
    " reason, actor, created_at_us, metadata) SELECT * FROM unnest(%s::varchar[],"
    " %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::bigint[], %s::text[])),"
    " new_transfers AS (INSERT INTO ledger_transfers (entry_id, position, source,"
    " destination, amount) SELECT * FROM unnest(%s::varchar[], %s::smallint[],"
    " %s::varchar[], %s::varchar[], %s::bigint[])),"
    " new_balances AS (UPDATE ledger_accounts AS a SET balance = v.balance"
    " FROM unnest(%s::bigint[], %s::varchar[]) AS v(balance, id) WHERE a.id = v.id)"
    " SELECT 1"
)
_PG_UPDATE_BALANCES = (
    "UPDATE ledger_accounts AS a SET balance = v.balance"
    " FROM unnest(%s::bigint[], %s::varchar[]) AS v(balance, id) WHERE a.id = v.id"
)


def _encode_metadata(metadata: Mapping[str, Any]) -> str:
    # Values are only str or int, so this is exact JSON without the general encoder.
    if not metadata:
        return "{}"
    parts = [
        f"{_quote(k)}:{v}" if type(v) is int else f"{_quote(k)}:{_quote(v)}"
        for k, v in metadata.items()
    ]
    return "{" + ",".join(parts) + "}"


def _rows(fresh: Sequence[Pending]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    # the entries' and their transfers' rows, in column order
    created_at_us = {}
    entry_rows: list[tuple[Any, ...]] = []
    transfer_rows: list[tuple[Any, ...]] = []
    for item in fresh:
        entry = item.entry
        moment = entry.created_at
        if moment not in created_at_us:
            created_at_us[moment] = to_micros(moment)
        metadata = entry.metadata
        entry_rows.append(
            (
                entry.id,
                entry.idempotency_key,
                item.fingerprint,
                entry.reason,
                entry.actor,
                created_at_us[moment],
                _encode_metadata(metadata),
            )
        )
        entry_id = entry.id
        transfer_rows.extend(
            (entry_id, position, t.source, t.destination, t.amount)
            for position, t in enumerate(entry.transfers)
        )
    return entry_rows, transfer_rows


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    return tuple([row[i] for row in rows] for i in range(width))


def _entry(row: Any, transfers: tuple[Transfer, ...]) -> Entry:
    return Entry(
        id=row.id,
        idempotency_key=row.idempotency_key,
        reason=row.reason,
        actor=row.actor,
        created_at=from_micros(row.created_at_us),
        transfers=transfers,
        metadata=MappingProxyType(json.loads(row.metadata)),
    )
