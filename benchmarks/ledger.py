"""``creditx bench ledger``: durable commits and batched settlement through the ledger.

* durable single-trade commits on SQLite (WAL, ``synchronous=FULL``): one three-leg
  trade entry per transaction through ``Ledger.post``, against a plain ``sqlite3`` loop
  doing the same writes (lock the five balances, insert the entry and its legs, update
  the balances) in the same run; the ratio is held to >= 0.40;
* batched settlement: 10,000 trades in one ``Ledger.post_batch`` transaction, as an
  auction settles; held to >= 50,000 trades/s (best of ``--repeats`` batches), next to
  a plain ``sqlite3`` settlement of the same batch (one transaction, ``executemany``);
* the same two on PostgreSQL (``--pg-url``), against a plain psycopg loop.

Settlement is also reported per CPU-second of the settling process, for context on a
machine whose disk and cores are shared.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer

from benchmarks._report import Figure, report
from market.clock import ManualClock, to_micros
from market.ledger import (
    FEES_ACCOUNT,
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    SqlStore,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.migrations import upgrade

START = datetime(2026, 1, 5, tzinfo=UTC)
TIER = "gold"
INSTANCES = 200
DEFAULT_PG_URL = "postgresql+psycopg://127.0.0.1:5432/test"


def _open_fleet(ledger: Ledger) -> None:
    asset = credits_asset(TIER)
    definitions: list[tuple[str, str, AccountKind]] = [
        (mint_account(asset), asset, AccountKind.MINT),
        (mint_account(FUNDS), FUNDS, AccountKind.MINT),
        (FEES_ACCOUNT, FUNDS, AccountKind.FEES),
    ]
    for n in range(INSTANCES):
        definitions.append((instance_credits(f"vm{n}"), asset, AccountKind.INSTANCE))
        definitions.append((instance_funds(f"vm{n}"), FUNDS, AccountKind.INSTANCE))
    ledger.open_accounts(definitions)
    grants = [
        Transfer(mint_account(asset), instance_credits(f"vm{n}"), 10**12) for n in range(INSTANCES)
    ] + [Transfer(mint_account(FUNDS), instance_funds(f"vm{n}"), 10**12) for n in range(INSTANCES)]
    ledger.post(EntryRequest(tuple(grants), "grant", "bench"))


def _trades(n: int, seed: int, prefix: str) -> list[EntryRequest]:
    rng = random.Random(seed)
    requests = []
    for k in range(n):
        seller, buyer = rng.sample(range(INSTANCES), 2)
        amount, price = rng.randint(1, 5_000), rng.randint(1_000, 100_000)
        fee = price * 20 // 10_000
        requests.append(
            EntryRequest(
                (
                    Transfer(
                        instance_credits(f"vm{seller}"), instance_credits(f"vm{buyer}"), amount
                    ),
                    Transfer(
                        instance_funds(f"vm{buyer}"), instance_funds(f"vm{seller}"), price - fee
                    ),
                    Transfer(instance_funds(f"vm{buyer}"), FEES_ACCOUNT, fee),
                ),
                "trade",
                "bench",
                f"{prefix}-{k}",
                {"tier": TIER, "amount": amount, "price": price, "fee": fee},
            )
        )
    return requests


def _ledger_singles(ledger: Ledger) -> Callable[[list[EntryRequest]], None]:
    def post(requests: list[EntryRequest]) -> None:
        for request in requests:
            ledger.post(request)

    return post


def _fresh_ledger(url: str) -> Ledger:
    upgrade(url)
    ledger = Ledger(SqlStore(url), ManualClock(START))
    _open_fleet(ledger)
    return ledger


def _batch_rates(
    ledger: Ledger, plain: Callable[[list[EntryRequest]], None] | None, batch: int, repeats: int
) -> tuple[float, float, float, float]:
    """Return the best trades per wall-clock second and per CPU-second of this process,
    of the ledger and of the plain driver (0 without one), over ``repeats`` batches."""
    best = [0.0, 0.0, 0.0, 0.0]
    for run in range(repeats):
        # alternate the two so a busy moment of the machine slows both alike
        for offset, post in ((0, ledger.post_batch), (2, plain)):
            if post is None:
                continue
            requests = _trades(batch, 2 + run, f"batch{offset}-{run}")
            started, cpu = time.perf_counter(), time.process_time()
            post(requests)
            wall, used = time.perf_counter() - started, time.process_time() - cpu
            best[offset] = max(best[offset], batch / wall)
            best[offset + 1] = max(best[offset + 1], batch / max(used, 1e-9))
    return best[0], best[1], best[2], best[3]


def _interleaved(
    plain: Callable[[list[EntryRequest]], None],
    ours: Callable[[list[EntryRequest]], None],
    singles: int,
    rounds: int = 10,
) -> tuple[float, float]:
    # Alternate short rounds so a busy machine slows both loops alike.
    plain_requests = _trades(singles, 1, "plain")
    our_requests = _trades(singles, 1, "single")
    size = max(1, singles // rounds)
    plain_time = our_time = 0.0
    for start in range(0, singles, size):
        began = time.perf_counter()
        plain(plain_requests[start : start + size])
        plain_time += time.perf_counter() - began
        began = time.perf_counter()
        ours(our_requests[start : start + size])
        our_time += time.perf_counter() - began
    return singles / plain_time, singles / our_time


def _plain_rows(request: EntryRequest) -> tuple[list[str], dict[str, Any], list[tuple[Any, ...]]]:
    entry_id = uuid.uuid4().hex
    accounts = sorted({a for t in request.transfers for a in (t.source, t.destination)})
    entry = {
        "id": entry_id,
        "key": request.idempotency_key,
        "fp": request.fingerprint(),
        "reason": request.reason,
        "actor": request.actor,
        "at": to_micros(START),
        "meta": json.dumps(dict(request.metadata), separators=(",", ":")),
    }
    legs = [
        (entry_id, position, t.source, t.destination, t.amount)
        for position, t in enumerate(request.transfers)
    ]
    return accounts, entry, legs


def _deltas(request: EntryRequest) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for t in request.transfers:
        deltas[t.source] = deltas.get(t.source, 0) - t.amount
        deltas[t.destination] = deltas.get(t.destination, 0) + t.amount
    return deltas


def _plain_sqlite(path: Path) -> Callable[[list[EntryRequest]], None]:
    url = f"sqlite:///{path}"
    _fresh_ledger(url).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")

    def post(requests: list[EntryRequest]) -> None:
        for request in requests:
            accounts, entry, legs = _plain_rows(request)
            conn.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(accounts))
            balances = dict(
                conn.execute(
                    f"SELECT id, balance FROM ledger_accounts WHERE id IN ({marks})", accounts
                ).fetchall()
            )
            conn.execute(
                "INSERT INTO ledger_entries (id, idempotency_key, fingerprint, reason, actor,"
                " created_at_us, metadata) VALUES (:id, :key, :fp, :reason, :actor, :at, :meta)",
                entry,
            )
            conn.executemany(
                "INSERT INTO ledger_transfers (entry_id, position, source, destination, amount)"
                " VALUES (?, ?, ?, ?, ?)",
                legs,
            )
            conn.executemany(
                "UPDATE ledger_accounts SET balance = ? WHERE id = ?",
                [(balances[a] + d, a) for a, d in _deltas(request).items()],
            )
            conn.execute("COMMIT")

    return post


def _plain_sqlite_batch(path: Path) -> Callable[[list[EntryRequest]], None]:
    """Return a plain ``sqlite3`` settlement of a whole batch in one transaction."""
    _fresh_ledger(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    at = to_micros(START)

    def post(requests: list[EntryRequest]) -> None:
        prefix = uuid.uuid4().hex[:16]
        entries = []
        legs = []
        deltas: dict[str, int] = {}
        for n, request in enumerate(requests):
            entry_id = f"{prefix}{n:016x}"
            entries.append(
                (
                    entry_id,
                    request.idempotency_key,
                    request.fingerprint(),
                    request.reason,
                    request.actor,
                    at,
                    json.dumps(dict(request.metadata), separators=(",", ":")),
                )
            )
            for position, t in enumerate(request.transfers):
                legs.append((entry_id, position, t.source, t.destination, t.amount))
                deltas[t.source] = deltas.get(t.source, 0) - t.amount
                deltas[t.destination] = deltas.get(t.destination, 0) + t.amount
        conn.execute("BEGIN IMMEDIATE")
        accounts = sorted(deltas)
        marks = ",".join("?" * len(accounts))
        balances = dict(
            conn.execute(
                f"SELECT id, balance FROM ledger_accounts WHERE id IN ({marks})", accounts
            ).fetchall()
        )
        conn.executemany(
            "INSERT INTO ledger_entries (id, idempotency_key, fingerprint, reason, actor,"
            " created_at_us, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
            entries,
        )
        conn.executemany(
            "INSERT INTO ledger_transfers (entry_id, position, source, destination, amount)"
            " VALUES (?, ?, ?, ?, ?)",
            legs,
        )
        conn.executemany(
            "UPDATE ledger_accounts SET balance = ? WHERE id = ?",
            [(balances[a] + d, a) for a, d in deltas.items()],
        )
        conn.execute("COMMIT")

    return post


def _plain_postgres(url: str) -> tuple[Callable[[list[EntryRequest]], None], Callable[[], None]]:
    import psycopg

    _fresh_ledger(url).close()
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn)

    def post(requests: list[EntryRequest]) -> None:
        for request in requests:
            accounts, entry, legs = _plain_rows(request)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT id, balance FROM ledger_accounts WHERE id = ANY(%s)"
                    " ORDER BY id FOR UPDATE",
                    (accounts,),
                )
                balances = dict(cur.fetchall())
                cur.execute(
                    "INSERT INTO ledger_entries (id, idempotency_key, fingerprint, reason,"
                    " actor, created_at_us, metadata) VALUES (%(id)s, %(key)s, %(fp)s,"
                    " %(reason)s, %(actor)s, %(at)s, %(meta)s)",
                    entry,
                )
                cur.executemany(
                    "INSERT INTO ledger_transfers (entry_id, position, source, destination,"
                    " amount) VALUES (%s, %s, %s, %s, %s)",
                    legs,
                )
                cur.executemany(
                    "UPDATE ledger_accounts SET balance = %s WHERE id = %s",
                    [(balances[a] + d, a) for a, d in _deltas(request).items()],
                )

    return post, conn.close


def _fresh_pg_schema(server_url: str) -> tuple[str, Callable[[], None]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{schema}", drop


def run(singles: int, batch: int, pg_url: str | None, repeats: int = 3) -> list[Figure]:
    """Measure every figure of the ledger area and return them."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="creditx-bench-ledger-") as tmp:
        work = Path(tmp)
        ledger = _fresh_ledger(f"sqlite:///{work / 'ledger.db'}")
        plain, single = _interleaved(
            _plain_sqlite(work / "plain.db"), _ledger_singles(ledger), singles
        )
        batched, batched_cpu, plain_batched, plain_batched_cpu = _batch_rates(
            ledger, _plain_sqlite_batch(work / "plain-batch.db"), batch, repeats
        )
        if not ledger.verify().ok:
            raise RuntimeError("the benchmark ledger does not verify")
        ledger.close()
    figures += [
        Figure("sqlite plain sqlite3 durable commits", plain, "trades/s"),
        Figure("sqlite ledger durable single-trade commits", single, "trades/s"),
        Figure("sqlite ledger / plain sqlite3", single / plain, "ratio", ">= 0.40"),
        Figure(f"sqlite batched settlement ({batch:,} trades)", batched, "trades/s", ">= 50000"),
        Figure("sqlite batched settlement per CPU-second", batched_cpu, "trades/cpu-s"),
        Figure("sqlite plain sqlite3 batched settlement", plain_batched, "trades/s"),
        Figure(
            "sqlite plain sqlite3 batched settlement per CPU-second",
            plain_batched_cpu,
            "trades/cpu-s",
        ),
        Figure("sqlite batched settlement / plain sqlite3", batched / plain_batched, "ratio"),
    ]
    if pg_url:
        plain_url, drop_plain = _fresh_pg_schema(pg_url)
        ledger_url, drop_ledger = _fresh_pg_schema(pg_url)
        try:
            ledger = _fresh_ledger(ledger_url)
            plain_post, close_plain = _plain_postgres(plain_url)
            plain, single = _interleaved(plain_post, _ledger_singles(ledger), singles)
            close_plain()
            batched, batched_cpu, _, _ = _batch_rates(ledger, None, batch, repeats)
            ledger.close()
        finally:
            drop_plain()
            drop_ledger()
        figures += [
            Figure("postgres plain psycopg durable commits", plain, "trades/s"),
            Figure("postgres ledger durable single-trade commits", single, "trades/s"),
            Figure("postgres ledger / plain psycopg", single / plain, "ratio", ">= 0.40"),
            Figure(
                f"postgres batched settlement ({batch:,} trades)", batched, "trades/s", ">= 50000"
            ),
            Figure(
                "postgres batched settlement per client CPU-second", batched_cpu, "trades/cpu-s"
            ),
        ]
    return figures


def register(bench_app: typer.Typer) -> None:
    """Add ``creditx bench ledger``."""

    @bench_app.command("ledger")
    def ledger(
        json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
        pg_url: str = typer.Option(DEFAULT_PG_URL, "--pg-url", help="PostgreSQL; '' to skip"),
        singles: int = typer.Option(2_000, help="single-trade commits per store"),
        batch: int = typer.Option(10_000, help="trades in the settlement batch"),
        repeats: int = typer.Option(3, help="settlement batches per store; the best counts"),
    ) -> None:
        """Durable single-trade commits vs plain drivers, and batched settlement."""
        report("ledger", run(singles, batch, pg_url or None, repeats), json_out)
