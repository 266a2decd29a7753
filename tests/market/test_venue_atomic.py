"""The venue's rows commit in the ledger's transaction: all of them with their entries,
or none, even when the writes fail or the process is killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from market.clock import ManualClock
from market.errors import MarketError
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    LedgerError,
    MemoryStore,
    SqlStore,
    Transfer,
    escrow_credits,
    escrow_funds,
    mint_account,
)
from market.migrations import upgrade
from market.venue.book import BookConfig
from market.venue.handling import OrderRequest, Venue, t_auctions, t_orders, t_trades
from market.venue.orders import Side
from tests.market.support import deposit

NAMES = [f"vm{i}" for i in range(6)]


def _venue(url: str, clock: ManualClock) -> Venue:
    upgrade(url)
    store = SqlStore(url, durable=False)
    ledger = Ledger(store, clock)
    venue = Venue(ledger, clock, [BookConfig(tier="gold", fee_bps=25)], engine=store.engine)
    for name in NAMES:
        venue.register_instance(name, "gold")
    deposit(ledger, NAMES, funds=10**9, credits=10**9)
    return venue


def _fail_inserts(venue: Venue, table: str) -> None:
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'the disk refused the row'); END"
        )


def _rows(venue: Venue) -> tuple[set[str], dict[str, tuple[str, int]], set[str]]:
    engine = venue._engine
    assert engine is not None
    with engine.connect() as conn:
        trades = set(conn.execute(sa.select(t_trades.c.trade_id)).scalars())
        orders = {
            r.order_id: (r.state, r.filled)
            for r in conn.execute(
                sa.select(t_orders.c.order_id, t_orders.c.state, t_orders.c.filled)
            )
        }
        auctions = set(conn.execute(sa.select(t_auctions.c.auction_id)).scalars())
    return trades, orders, auctions


def _check_entries_match_rows(venue: Venue) -> None:
    """Every settled trade has its row and every row its entry; every escrow account holds
    exactly what its orders' rows record; every lock entry's orders have rows."""
    ledger = venue.ledger
    trades, orders, auctions = _rows(venue)
    batches = {str(e.metadata["auction_id"]): e for e in ledger.entries(reason="market.auction")}
    by_batch = {a: {t for t in trades if t.startswith(f"{a}-")} for a in batches}
    assert {a: len(ids) for a, ids in by_batch.items()} == {
        a: e.metadata["trades"] for a, e in batches.items()
    }
    continuous = trades.difference(*by_batch.values())
    assert {
        str(e.metadata["trade_id"]) for e in ledger.entries(reason="market.trade")
    } == continuous
    locks = ledger.entries(reason="market.escrow.lock")
    locked = {str(e.metadata[k]) for e in locks for k in ("first_order_id", "last_order_id")}
    assert locked <= set(orders)
    # a fresh order id starts every lock entry's key: no order is locked twice
    assert len({e.metadata["first_order_id"] for e in locks}) == len(locks)
    engine = venue._engine
    assert engine is not None
    with engine.connect() as conn:
        shares = conn.execute(
            sa.select(t_orders.c.owner, t_orders.c.side, sa.func.sum(t_orders.c.escrow)).group_by(
                t_orders.c.owner, t_orders.c.side
            )
        ).all()
    recorded = {
        (escrow_funds if side == "buy" else escrow_credits)(owner): int(total)
        for owner, side, total in shares
        if total
    }
    held = {a: b for a, b in ledger.balances("escrow:instance:").items() if b}
    assert held == recorded
    assert set(batches) == auctions
    assert ledger.verify().ok


def _sqlite_venue(sqlite_url: str, clock: ManualClock) -> Venue:
    return _venue(sqlite_url, clock)


def test_extra_writes_commit_with_the_entry_or_not_at_all(
    sqlite_url: str, clock: ManualClock
) -> None:
    upgrade(sqlite_url)
    store = SqlStore(sqlite_url, durable=False)
    ledger = Ledger(store, clock)
    ledger.open_accounts(
        [(mint_account(FUNDS), FUNDS, AccountKind.MINT), ("fees:funds", FUNDS, AccountKind.FEES)]
    )
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE side_rows (n INTEGER PRIMARY KEY)")
    request = EntryRequest((Transfer(mint_account(FUNDS), "fees:funds", 5),), "fee", "test")

    def write(n: int) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            conn.exec_driver_sql("INSERT INTO side_rows (n) VALUES (?)", (n,))

        return run

    ledger.post(request, writes=write(1))
    with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"):
        ledger.post(request, writes=write(1))
    assert ledger.balance("fees:funds") == 5
    assert len(ledger.entries()) == 1
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM side_rows").scalars().all() == [1]
    ledger.close()


def test_the_memory_store_refuses_extra_writes(clock: ManualClock) -> None:
    ledger = Ledger(MemoryStore(), clock)
    ledger.open_accounts(
        [(mint_account(FUNDS), FUNDS, AccountKind.MINT), ("fees:funds", FUNDS, AccountKind.FEES)]
    )
    request = EntryRequest((Transfer(mint_account(FUNDS), "fees:funds", 5),), "fee", "test")
    with pytest.raises(LedgerError, match="no SQL tables"):
        ledger.post(request, writes=lambda conn: None)
    assert ledger.balance("fees:funds") == 0


def test_a_venue_needs_its_ledgers_engine(sqlite_url: str, clock: ManualClock) -> None:
    upgrade(sqlite_url)
    store = SqlStore(sqlite_url, durable=False)
    with pytest.raises(MarketError, match="engine of the ledger's SqlStore"):
        Venue(Ledger(MemoryStore(), clock), clock, [BookConfig(tier="gold")], engine=store.engine)
    store.close()


def test_failed_trade_rows_roll_back_the_order_with_its_settlement(
    sqlite_url: str, clock: ManualClock
) -> None:
    venue = _sqlite_venue(sqlite_url, clock)
    ask = venue.place("vm1", Side.SELL, 100, 2_000)
    _fail_inserts(venue, "market_trades")
    balances = venue.ledger.balances()
    entries = len(venue.ledger.entries())
    depth = venue.book("gold").depth(Side.SELL)
    with pytest.raises(MarketError, match="refused the settlement"):
        venue.place("vm0", Side.BUY, 100, 1_000)
    # the bid's escrow lock, its row and its trade commit together: none of them did
    assert venue.ledger.balances() == balances
    assert len(venue.ledger.entries()) == entries
    trades, orders, _ = _rows(venue)
    assert trades == set()
    assert set(orders) == {ask.order.order_id}
    assert orders[ask.order.order_id] == ("open", 0)
    # and the book is as it was: the ask rests whole, the bid never arrived
    assert venue.book("gold").depth(Side.SELL) == depth
    assert venue.book("gold").depth(Side.BUY) == []
    assert venue.escrow_left(ask.order.order_id) == 2_000
    _check_entries_match_rows(venue)
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER fail_market_trades")
    again = venue.place("vm0", Side.BUY, 100, 1_000)
    assert [t.quantity for t in again.trades] == [1_000]
    assert venue.order(ask.order.order_id).filled == 1_000
    _check_entries_match_rows(venue)


def test_failed_auction_rows_roll_back_the_batch(sqlite_url: str, clock: ManualClock) -> None:
    venue = _sqlite_venue(sqlite_url, clock)
    placed = venue.submit_to_auction(
        [OrderRequest("vm0", Side.BUY, 110, 3_000), OrderRequest("vm3", Side.SELL, 90, 2_000)]
    )
    _fail_inserts(venue, "market_auctions")
    balances = venue.ledger.balances()
    with pytest.raises(MarketError, match="refused the settlement"):
        venue.run_auction("gold")
    after = venue.ledger.balances()
    # the batch's clearing accounts may stay open, empty
    assert {k: v for k, v in after.items() if k in balances or v} == balances
    assert venue.ledger.entries(reason="market.auction") == []
    trades, orders, auctions = _rows(venue)
    assert (trades, auctions) == (set(), set())
    assert {orders[p.order_id] for p in placed if not isinstance(p, Exception)} == {("open", 0)}
    _check_entries_match_rows(venue)


def _side_table(venue: Venue) -> None:
    engine = venue._engine
    assert engine is not None
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE side_rows (order_id TEXT PRIMARY KEY, position INT)")


def _side_rows(venue: Venue) -> dict[str, int]:
    engine = venue._engine
    assert engine is not None
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT order_id, position FROM side_rows").all())


def _record(calls: list[list[tuple[int, str]]]) -> Callable[[list[tuple[int, str]]], Any]:
    def writes(accepted: list[tuple[int, str]]) -> Callable[[Connection], None]:
        calls.append(accepted)
        rows = [(order_id, i) for i, order_id in accepted]

        def run(conn: Connection) -> None:
            conn.exec_driver_sql("INSERT INTO side_rows (order_id, position) VALUES (?, ?)", rows)

        return run

    return writes


@pytest.mark.parametrize("auction", [False, True], ids=["place_many", "submit_to_auction"])
def test_the_callers_rows_commit_with_the_accepted_orders(
    sqlite_url: str, clock: ManualClock, auction: bool
) -> None:
    venue = _sqlite_venue(sqlite_url, clock)
    _side_table(venue)
    calls: list[list[tuple[int, str]]] = []
    requests = [
        OrderRequest("vm0", Side.BUY, 100, 1_000),
        OrderRequest("vm1", Side.SELL, 100, 0),  # rejected: no quantity
        OrderRequest("vm2", Side.SELL, 120, 2_000),
    ]
    submit = venue.submit_to_auction if auction else venue.place_many
    results = submit(requests, writes=_record(calls))
    ids = [
        getattr(r, "order_id", None) or getattr(getattr(r, "order", None), "order_id", None)
        for r in results
    ]
    assert isinstance(results[1], MarketError)
    assert calls == [[(0, ids[0]), (2, ids[2])]]
    assert _side_rows(venue) == {ids[0]: 0, ids[2]: 2}
    _, orders, _ = _rows(venue)
    assert set(orders) == {ids[0], ids[2]}
    # a batch that accepts nothing does not call the hook
    submit([OrderRequest("vm3", Side.BUY, 100, -5)], writes=_record(calls))
    assert len(calls) == 1
    # a hook with nothing to add
    (placed,) = submit([OrderRequest("vm4", Side.SELL, 130, 1_000)], writes=lambda accepted: None)
    assert not isinstance(placed, MarketError)
    _check_entries_match_rows(venue)


@pytest.mark.parametrize("auction", [False, True], ids=["place_many", "submit_to_auction"])
def test_failing_caller_rows_roll_the_orders_back(
    sqlite_url: str, clock: ManualClock, auction: bool
) -> None:
    venue = _sqlite_venue(sqlite_url, clock)
    _side_table(venue)
    submit = venue.submit_to_auction if auction else venue.place_many
    (first,) = submit([OrderRequest("vm0", Side.BUY, 100, 1_000)], writes=_record([]))
    assert not isinstance(first, MarketError)
    balances = venue.ledger.balances()
    rows = _rows(venue)
    entries = len(venue.ledger.entries())

    def clash(accepted: list[tuple[int, str]]) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            taken = first.order_id if auction else first.order.order_id  # type: ignore[union-attr]
            conn.exec_driver_sql(
                "INSERT INTO side_rows (order_id, position) VALUES (?, 9)", (taken,)
            )

        return run

    with pytest.raises(MarketError, match="refused"):
        submit([OrderRequest("vm2", Side.SELL, 100, 500)], writes=clash)

    class Refused(Exception):
        pass

    def refuse(accepted: list[tuple[int, str]]) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            raise Refused("the caller said no")

        return run

    with pytest.raises(Refused, match="said no"):
        submit([OrderRequest("vm2", Side.SELL, 100, 500)], writes=refuse)
    assert venue.ledger.balances() == balances
    assert _rows(venue) == rows
    assert len(venue.ledger.entries()) == entries
    assert len(_side_rows(venue)) == 1
    if auction:
        assert [o.owner for o in venue.pending_auction_orders("gold")] == ["vm0"]
    else:
        assert venue.book("gold").best_bid() is not None
        assert venue.book("gold").best_ask() is None
    _check_entries_match_rows(venue)


def test_caller_rows_need_an_engine(clock: ManualClock) -> None:
    ledger = Ledger(MemoryStore(), clock)
    venue = Venue(ledger, clock, [BookConfig(tier="gold")])
    venue.register_instance("vm0", "gold")
    balances = ledger.balances()
    for submit in (venue.place_many, venue.submit_to_auction):
        with pytest.raises(MarketError, match="need a venue with an engine"):
            submit([OrderRequest("vm0", Side.BUY, 100, 1_000)], writes=lambda accepted: None)
    assert ledger.balances() == balances
    assert venue.pending_auction_orders("gold") == []


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from market.clock import ManualClock
    from market.venue.orders import Side
    from market.venue.handling import OrderRequest
    from tests.market.test_venue_atomic import _venue

    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    venue = _venue(sys.argv[1], clock)
    n = 0
    while True:
        n += 1
        clock.advance(timedelta(seconds=1))
        batch = [
            OrderRequest(f"vm{(n + k) % 6}", Side.SELL if k % 2 else Side.BUY, 100 + k % 3, 1_000)
            for k in range(20)
        ]
        venue.place_many(batch)
        if n % 5 == 0:
            venue.submit_to_auction(
                [
                    OrderRequest("vm0", Side.BUY, 105, 2_000),
                    OrderRequest("vm1", Side.SELL, 95, 1_000),
                ]
            )
            venue.run_auction("gold")
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
    """
)


def test_sigkill_never_leaves_an_entry_without_its_rows(
    sqlite_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    _venue(sqlite_url, clock).ledger.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, str(script), sqlite_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.stdout is not None
    rounds = 0
    deadline = time.monotonic() + 60
    try:
        while rounds < 30 and time.monotonic() < deadline:
            if not child.stdout.readline():
                break
            rounds += 1
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert rounds >= 30
    store = SqlStore(sqlite_url, durable=False)
    venue = Venue(
        Ledger(store, clock), clock, [BookConfig(tier="gold", fee_bps=25)], engine=store.engine
    )
    assert venue.ledger.entries(reason="market.trade")
    assert venue.ledger.entries(reason="market.auction")
    _check_entries_match_rows(venue)
    venue.ledger.close()
