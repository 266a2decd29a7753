"""``creditx bench ledger``: durable commits and batched settlement through the ledger.

* durable single-trade commits on SQLite (WAL, ``synchronous=FULL``): one three-leg
  trade entry per transaction through ``Ledger.post``, against a plain ``sqlite3`` loop
  doing the same writes (lock the five balances, insert the entry and its legs, update
  the balances) in the same run; the ratio is held to >= 0.40;
* batched settlement of 10,000 trades in one transaction, as an auction settles: the
  market's settlement code (:func:`market.venue.settlement.auction_request`) turns a cleared
  call auction into one entry whose legs are netted per account through clearing
  accounts, and its trade-log rows (``market_trades``: price, quantity, buyer, seller,
  fee, order ids) commit with it through ``post_batch(writes=...)``; held to >= 50,000
  trades/s (best of ``--repeats`` batches, timed from the cleared auction to the
  durable commit). Next to it, in the same run, a plain ``sqlite3`` transaction writes
  the same entry, legs, balances and trade rows, handed to it ready-made;
* for context, 10,000 three-leg trade entries (each with its own idempotency key) in
  one ``post_batch``;
* the same on PostgreSQL (``--pg-url``), the single commits against a plain psycopg
  loop.

Settlement is also reported per CPU-second of the settling process, for context on a
machine whose disk and cores are shared. Every ledger verifies after its runs.
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
from market.venue.auction import AuctionOrder, AuctionResult, CallAuction
from market.venue.escrow import lock_request, required_escrow, trading_accounts
from market.venue.handling import auction_clearing_accounts
from market.venue.orders import Side
from market.venue.settlement import auction_request
from market.venue.store import trade_log_rows, trade_log_sql, trade_log_writes

START = datetime(2026, 1, 5, tzinfo=UTC)
TIER = "gold"
INSTANCES = 200
DEFAULT_PG_URL = "postgresql+psycopg://127.0.0.1:5432/test"


def open_fleet(ledger: Ledger, names: list[str], tier: str = TIER, amount: int = 10**12) -> None:
    """Open a fleet's accounts in ``ledger`` and give every instance ``amount`` of each asset.

    Opens the mint accounts of funds and of ``tier``'s credits, the fee account, and
    each instance's :func:`market.venue.escrow.trading_accounts` (as
    :meth:`market.venue.handling.Venue.register_instance` opens them).
    """
    asset = credits_asset(tier)
    definitions: list[tuple[str, str, AccountKind]] = [
        (mint_account(asset), asset, AccountKind.MINT),
        (mint_account(FUNDS), FUNDS, AccountKind.MINT),
        (FEES_ACCOUNT, FUNDS, AccountKind.FEES),
    ]
    for name in names:
        definitions += trading_accounts(name, tier)
    ledger.open_accounts(definitions)
    grants = [
        leg
        for name in names
        for leg in (
            Transfer(mint_account(asset), instance_credits(name), amount),
            Transfer(mint_account(FUNDS), instance_funds(name), amount),
        )
    ]
    ledger.post(EntryRequest(tuple(grants), "deposit", "bench"))


def _names() -> list[str]:
    return [f"vm{n}" for n in range(INSTANCES)]


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
    open_fleet(ledger, _names())
    ledger.open_accounts(
        [
            (_FUNDS_CLEARING, FUNDS, AccountKind.ESCROW),
            (_CREDITS_CLEARING, credits_asset(TIER), AccountKind.ESCROW),
        ]
    )
    return ledger


_FUNDS_CLEARING, _CREDITS_CLEARING = auction_clearing_accounts(TIER)
_FEE_BPS = 20


def _auction(trades: int, seed: int, auction_id: str) -> AuctionResult:
    """Return a cleared call auction of exactly ``trades`` trades among the fleet.

    Every bid crosses every ask and both sides hold the same total, so every order
    fills; the fill boundaries of the two sides (``trades`` distinct points, the last
    shared) cut the volume into exactly ``trades`` trades. The first half of the fleet
    bids, the second half asks.
    """
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, trades * 500), trades - 1))
    total = trades * 500
    bid_ends: list[int] = []
    ask_ends: list[int] = []
    for point in points:
        (bid_ends if rng.random() < 0.5 else ask_ends).append(point)
    bid_ends.append(total)
    ask_ends.append(total)
    buyers, sellers = INSTANCES // 2, INSTANCES - INSTANCES // 2
    sides: list[list[AuctionOrder]] = []
    for side, ends, owners, first, low in (
        (Side.BUY, bid_ends, buyers, 0, 1_000),
        (Side.SELL, ask_ends, sellers, buyers, 900),
    ):
        # limits in priority order (bids falling, asks rising), so that price-time
        # priority keeps the fill boundaries drawn above
        limits = sorted((rng.randint(low, low + 100) for _ in ends), reverse=side is Side.BUY)
        starts = [0, *ends[:-1]]
        sides.append(
            [
                AuctionOrder(
                    f"{auction_id}-{side.value}{k}",
                    f"vm{first + k % owners}",
                    side,
                    limit,
                    end - start,
                )
                for k, (limit, start, end) in enumerate(zip(limits, starts, ends, strict=True))
            ]
        )
    # arrivals interleave the two sides, each side in its own order
    bids, asks = iter(sides[0]), iter(sides[1])
    draws = [True] * len(sides[0]) + [False] * len(sides[1])
    rng.shuffle(draws)
    orders = [next(bids) if bid else next(asks) for bid in draws]
    result = CallAuction(TIER, fee_bps=_FEE_BPS).clear(auction_id, orders, at=START)
    if len(result.allocation.quantity) != trades:
        raise RuntimeError(f"the auction made {len(result.allocation.quantity)} trades")
    return result


def _locked_auction(
    ledger: Ledger, trades: int, seed: int, auction_id: str
) -> tuple[AuctionResult, list[int]]:
    """Clear an auction and lock its orders' escrow in the ledger (as the venue would)."""
    result = _auction(trades, seed, auction_id)
    orders = result.allocation.orders
    shares = [required_escrow(o.side, o.price, o.quantity, _FEE_BPS) for o in orders]
    amounts: dict[tuple[str, Side], int] = {}
    for o, share in zip(orders, shares, strict=True):
        amounts[o.owner, o.side] = amounts.get((o.owner, o.side), 0) + share
    ledger.post(
        lock_request(
            amounts, actor="bench", key=f"lock:{auction_id}", metadata={"orders": len(orders)}
        )
    )
    return result, shares


def _settle(ledger: Ledger, result: AuctionResult, shares: list[int]) -> None:
    """Settle a cleared auction as the venue does: one netted entry and its trade rows."""
    request = auction_request(
        result,
        shares,
        funds_clearing=_FUNDS_CLEARING,
        credits_clearing=_CREDITS_CLEARING,
        actor="bench",
    )
    assert request is not None
    engine = ledger.store.engine  # type: ignore[attr-defined]
    writes = trade_log_writes(engine, result.trades, auction_at=result.at)
    ledger.post_batch([request], writes=writes)


def _auction_rates(
    ledger: Ledger,
    plain: Callable[[EntryRequest, list[tuple[Any, ...]]], None] | None,
    trades: int,
    repeats: int,
    name: str,
) -> tuple[float, float, float, float]:
    """Return the best trades per second and per CPU-second of auction settlement through
    the ledger, and of the plain driver writing the same rows (0 without one)."""
    best = [0.0, 0.0, 0.0, 0.0]
    for run in range(repeats):
        result, shares = _locked_auction(ledger, trades, 10 + run, f"{name}-a{run}")
        started, cpu = time.perf_counter(), time.process_time()
        _settle(ledger, result, shares)
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        best[0] = max(best[0], trades / wall)
        best[1] = max(best[1], trades / max(used, 1e-9))
        if plain is None:
            continue
        # the same writes, ready-made: the entry, its legs and the trade rows
        twin = _auction(trades, 10 + run, f"{name}-p{run}")
        twin_shares = [
            required_escrow(o.side, o.price, o.quantity, _FEE_BPS) for o in twin.allocation.orders
        ]
        request = auction_request(
            twin,
            twin_shares,
            funds_clearing=_FUNDS_CLEARING,
            credits_clearing=_CREDITS_CLEARING,
            actor="bench",
        )
        assert request is not None
        rows = trade_log_rows(twin.trades, auction_at=twin.at)
        started, cpu = time.perf_counter(), time.process_time()
        plain(request, rows)
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        best[2] = max(best[2], trades / wall)
        best[3] = max(best[3], trades / max(used, 1e-9))
    return best[0], best[1], best[2], best[3]


def _entry_rates(ledger: Ledger, batch: int, repeats: int) -> tuple[float, float]:
    """Return the best trades per second and per CPU-second posting ``batch`` three-leg
    trade entries in one ``post_batch``, over ``repeats`` batches."""
    best = [0.0, 0.0]
    for run in range(repeats):
        requests = _trades(batch, 2 + run, f"batch-{run}")
        started, cpu = time.perf_counter(), time.process_time()
        ledger.post_batch(requests)
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        best[0] = max(best[0], batch / wall)
        best[1] = max(best[1], batch / max(used, 1e-9))
    return best[0], best[1]


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


def _plain_sqlite_writes(
    conn: sqlite3.Connection,
    entry: tuple[Any, ...],
    legs: list[tuple[Any, ...]],
    updates: list[tuple[int, str]],
) -> None:
    """Write one entry row, its legs and its accounts' new balances (plain ``sqlite3``)."""
    conn.execute(
        "INSERT INTO ledger_entries (id, idempotency_key, fingerprint, reason, actor,"
        " created_at_us, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
        entry,
    )
    conn.executemany(
        "INSERT INTO ledger_transfers (entry_id, position, source, destination, amount)"
        " VALUES (?, ?, ?, ?, ?)",
        legs,
    )
    conn.executemany("UPDATE ledger_accounts SET balance = ? WHERE id = ?", updates)


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
            updates = [(balances[a] + d, a) for a, d in _deltas(request).items()]
            _plain_sqlite_writes(conn, tuple(entry.values()), legs, updates)
            conn.execute("COMMIT")

    return post


def _plain_sqlite_batch(path: Path) -> Callable[[EntryRequest, list[tuple[Any, ...]]], None]:
    """Return a plain ``sqlite3`` settlement of one auction entry and its trade rows."""
    url = f"sqlite:///{path}"
    _fresh_ledger(url).close()
    engine = sa.create_engine(url)
    insert_trades = trade_log_sql(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    at = to_micros(START)

    def post(request: EntryRequest, trade_rows: list[tuple[Any, ...]]) -> None:
        entry_id = uuid.uuid4().hex
        deltas: dict[str, int] = {}
        legs = []
        for position, t in enumerate(request.transfers):
            legs.append((entry_id, position, t.source, t.destination, t.amount))
            deltas[t.source] = deltas.get(t.source, 0) - t.amount
            deltas[t.destination] = deltas.get(t.destination, 0) + t.amount
        entry = (
            entry_id,
            request.idempotency_key,
            request.fingerprint(),
            request.reason,
            request.actor,
            at,
            json.dumps(dict(request.metadata), separators=(",", ":")),
        )
        conn.execute("BEGIN IMMEDIATE")
        accounts = sorted(deltas)
        balances: dict[str, int] = {}
        for start in range(0, len(accounts), 500):
            chunk = accounts[start : start + 500]
            marks = ",".join("?" * len(chunk))
            balances.update(
                conn.execute(
                    f"SELECT id, balance FROM ledger_accounts WHERE id IN ({marks})", chunk
                ).fetchall()
            )
        updates = [(balances[a] + d, a) for a, d in deltas.items()]
        _plain_sqlite_writes(conn, entry, legs, updates)
        conn.executemany(insert_trades, trade_rows)
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
                balances: dict[str, int] = dict(cur.fetchall())
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
    figures = _sqlite_figures(singles, batch, repeats)
    if pg_url:
        figures += _postgres_figures(pg_url, singles, batch, repeats)
    return figures


def _sqlite_figures(singles: int, batch: int, repeats: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="creditx-bench-ledger-") as tmp:
        work = Path(tmp)
        ledger = _fresh_ledger(f"sqlite:///{work / 'ledger.db'}")
        plain, single = _interleaved(
            _plain_sqlite(work / "plain.db"), _ledger_singles(ledger), singles
        )
        batched, batched_cpu, plain_batched, plain_batched_cpu = _auction_rates(
            ledger, _plain_sqlite_batch(work / "plain-batch.db"), batch, repeats, "sqlite"
        )
        entries, entries_cpu = _entry_rates(ledger, batch, repeats)
        if not ledger.verify().ok:
            raise RuntimeError("the benchmark ledger does not verify")
        ledger.close()
    return [
        Figure("sqlite plain sqlite3 durable commits", plain, "trades/s"),
        Figure("sqlite ledger durable single-trade commits", single, "trades/s"),
        Figure("sqlite ledger / plain sqlite3", single / plain, "ratio", ">= 0.40"),
        Figure(
            f"sqlite batched settlement, one auction entry + trade rows ({batch:,} trades)",
            batched,
            "trades/s",
            ">= 50000",
        ),
        Figure("sqlite batched settlement per CPU-second", batched_cpu, "trades/cpu-s"),
        Figure("sqlite plain sqlite3, same entry + trade rows", plain_batched, "trades/s"),
        Figure(
            "sqlite plain sqlite3, same entry + trade rows per CPU-second",
            plain_batched_cpu,
            "trades/cpu-s",
        ),
        Figure("sqlite batched settlement / plain sqlite3", batched / plain_batched, "ratio"),
        Figure(f"sqlite {batch:,} three-leg trade entries in one post_batch", entries, "trades/s"),
        Figure(
            "sqlite trade entries in one post_batch per CPU-second", entries_cpu, "trades/cpu-s"
        ),
    ]


def _postgres_figures(pg_url: str, singles: int, batch: int, repeats: int) -> list[Figure]:
    plain_url, drop_plain = _fresh_pg_schema(pg_url)
    ledger_url, drop_ledger = _fresh_pg_schema(pg_url)
    try:
        ledger = _fresh_ledger(ledger_url)
        plain_post, close_plain = _plain_postgres(plain_url)
        plain, single = _interleaved(plain_post, _ledger_singles(ledger), singles)
        close_plain()
        batched, batched_cpu, _, _ = _auction_rates(ledger, None, batch, repeats, "postgres")
        entries, _ = _entry_rates(ledger, batch, repeats)
        if not ledger.verify().ok:
            raise RuntimeError("the PostgreSQL benchmark ledger does not verify")
        ledger.close()
    finally:
        drop_plain()
        drop_ledger()
    return [
        Figure("postgres plain psycopg durable commits", plain, "trades/s"),
        Figure("postgres ledger durable single-trade commits", single, "trades/s"),
        Figure("postgres ledger / plain psycopg", single / plain, "ratio", ">= 0.40"),
        Figure(
            f"postgres batched settlement, one auction entry + trade rows ({batch:,} trades)",
            batched,
            "trades/s",
            ">= 50000",
        ),
        Figure("postgres batched settlement per client CPU-second", batched_cpu, "trades/cpu-s"),
        Figure(
            f"postgres {batch:,} three-leg trade entries in one post_batch",
            entries,
            "trades/s",
        ),
    ]


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
