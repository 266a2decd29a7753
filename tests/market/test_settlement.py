"""An auction batch settles in one ledger entry on SQLite and PostgreSQL, and verifies."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from market.clock import ManualClock
from market.errors import StandingLimitViolation
from market.ledger import (
    FEES_ACCOUNT,
    Ledger,
    SqlStore,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.migrations import upgrade
from market.venue.auction import AuctionMode, AuctionOrder, CallAuction
from market.venue.book import BookConfig
from market.venue.handling import (
    OrderRequest,
    Venue,
    t_auctions,
    t_orders,
    t_trades,
)
from market.venue.orders import Side
from market.venue.store import trade_log_rows, trade_log_writes
from tests.market.support import deposit

INSTANCES = [f"vm{i}" for i in range(12)]


def _venue(url: str, clock: ManualClock, mode: AuctionMode) -> Venue:
    upgrade(url)
    store = SqlStore(url)
    ledger = Ledger(store, clock)
    venue = Venue(
        ledger,
        clock,
        [BookConfig(tier="gold", tick_size=5, fee_bps=25)],
        engine=store.engine,
        auction_mode=mode,
    )
    for name in INSTANCES:
        venue.register_instance(name, "gold")
    deposit(ledger, INSTANCES, funds=1_000_000, credits=90_000)
    return venue


def _orders() -> list[OrderRequest]:
    rng = random.Random(7)
    buyers, sellers = INSTANCES[:6], INSTANCES[6:]
    requests = [
        OrderRequest(
            rng.choice(buyers), Side.BUY, rng.randrange(20, 60) * 5, rng.randrange(1, 9) * 1_000
        )
        for _ in range(30)
    ] + [
        OrderRequest(
            rng.choice(sellers), Side.SELL, rng.randrange(10, 50) * 5, rng.randrange(1, 9) * 1_000
        )
        for _ in range(30)
    ]
    rng.shuffle(requests)
    return requests


def _settle_and_verify(url: str, clock: ManualClock, mode: AuctionMode) -> None:
    venue = _venue(url, clock, mode)
    ledger = venue.ledger
    before = ledger.balances()
    placed = venue.submit_to_auction(_orders())
    assert all(not isinstance(p, Exception) for p in placed)
    result = venue.run_auction("gold")
    assert result.volume > 0
    assert len(ledger.entries(reason="market.auction")) == 1
    (entry,) = ledger.entries(reason="market.auction")
    assert entry.metadata["trades"] == len(result.trades)
    report = ledger.verify()
    assert report.ok, report
    after = ledger.balances()
    # every escrow and clearing account is back to zero; each instance moved exactly its trades
    assert all(v == 0 for k, v in after.items() if k.startswith("escrow:"))
    for name in INSTANCES:
        bought = sum(t.quantity for t in result.trades if t.buyer == name)
        sold = sum(t.quantity for t in result.trades if t.seller == name)
        paid = sum(t.value + t.fee for t in result.trades if t.buyer == name)
        received = sum(t.seller_receives for t in result.trades if t.seller == name)
        assert after[instance_credits(name)] - before[instance_credits(name)] == bought - sold
        assert after[instance_funds(name)] - before[instance_funds(name)] == received - paid
    assert after[FEES_ACCOUNT] == sum(t.fee for t in result.trades) + result.surplus
    engine = venue._engine
    assert engine is not None
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t_trades.c.trade_id, t_trades.c.quantity)).all()
        states = conn.execute(sa.select(t_orders.c.state)).scalars().all()
        auctions = conn.execute(sa.select(t_auctions.c.volume)).scalars().all()
    assert sorted(stored) == sorted((t.trade_id, t.quantity) for t in result.trades)
    assert set(states) <= {"filled", "cancelled"}
    assert len(states) == 60
    assert auctions == [result.volume]


@pytest.mark.parametrize("mode", list(AuctionMode))
def test_auction_batch_settles_on_sqlite(sqlite_url: str, clock: ManualClock, mode) -> None:
    _settle_and_verify(sqlite_url, clock, mode)


@pytest.mark.postgres
@pytest.mark.parametrize("mode", list(AuctionMode))
def test_auction_batch_settles_on_postgres(pg_url: str, clock: ManualClock, mode) -> None:
    _settle_and_verify(pg_url, clock, mode)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_continuous_trades_settle_one_entry_each(
    backend: str, clock: ManualClock, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    venue = _venue(url, clock, AuctionMode.UNIFORM)
    results = venue.place_many(_orders())
    trades = [t for r in results if not isinstance(r, Exception) for t in r.trades]
    assert trades
    entries = venue.ledger.entries(reason="market.trade")
    assert [e.metadata["trade_id"] for e in entries] == [t.trade_id for t in trades]
    assert venue.ledger.verify().ok


def test_auction_results_reach_market_data_with_unmatched_interest(
    sqlite_url: str, clock: ManualClock
) -> None:
    venue = _venue(sqlite_url, clock, AuctionMode.UNIFORM)
    venue.submit_to_auction(
        [
            OrderRequest("vm0", Side.BUY, 100, 3_000),
            OrderRequest("vm6", Side.SELL, 90, 1_000),
            OrderRequest("vm7", Side.SELL, 120, 1_000),
        ]
    )
    result = venue.run_auction("gold")
    (summary,) = venue.market_data.auction_results("gold")
    assert (summary.volume, summary.unmatched_bid_quantity, summary.unmatched_ask_quantity) == (
        1_000,
        2_000,
        1_000,
    )
    # volume and imbalance tie on [90, 100]; without a previous price the lowest wins
    assert summary.clearing_price == result.clearing_price == 90
    assert venue.market_data.last_trades("gold") == list(result.trades)


def test_a_restarted_venue_restores_books_priority_escrow_and_limits(
    sqlite_url: str, clock: ManualClock
) -> None:
    venue = _venue(sqlite_url, clock, AuctionMode.UNIFORM)
    venue.set_limits("vm1", max_bid=300)
    early = venue.place("vm6", Side.SELL, 200, 3_000)
    late = venue.place("vm7", Side.SELL, 200, 2_000)
    venue.place("vm0", Side.BUY, 200, 1_000)  # partly fills the early ask
    bid = venue.place("vm1", Side.BUY, 150, 4_000)
    (waiting,) = venue.submit_to_auction([OrderRequest("vm2", Side.BUY, 100, 1_000)])
    gold = venue.book("gold")
    depth_before = (gold.depth(Side.BUY), gold.depth(Side.SELL))
    held_before = {o: venue.escrow_left(o) for o in (early.order.order_id, bid.order.order_id)}

    store = SqlStore(sqlite_url)
    again = Venue(
        Ledger(store, clock),
        clock,
        [BookConfig(tier="gold", tick_size=5, fee_bps=25)],
        engine=store.engine,
    )
    assert again.restore() == 4
    for name in INSTANCES:
        again.register_instance(name, "gold")
    gold = again.book("gold")
    assert (gold.depth(Side.BUY), gold.depth(Side.SELL)) == depth_before
    assert {o: again.escrow_left(o) for o in held_before} == held_before
    assert again.order(early.order.order_id).filled == 1_000
    assert [o.order_id for o in again.pending_auction_orders("gold")] == [waiting.order_id]
    with pytest.raises(StandingLimitViolation, match="at most 300"):
        again.place("vm1", Side.BUY, 305, 1_000)
    # the early ask still trades first
    placed = again.place("vm3", Side.BUY, 200, 2_500)
    assert [(t.sell_order_id, t.quantity) for t in placed.trades] == [
        (early.order.order_id, 2_000),
        (late.order.order_id, 500),
    ]
    again.cancel(bid.order.order_id)
    assert again.escrow_left(bid.order.order_id) == 0
    # the bid was vm1's only order: its escrow account is empty again
    assert again.ledger.balance(escrow_funds("vm1")) == 0
    assert again.ledger.verify().ok


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.mark.parametrize("orders", [10, 300], ids=["few-rows", "copy-sized"])
def test_trade_log_writes_store_every_row_once_and_keep_them_on_a_replay(
    store_url: str, clock: ManualClock, orders: int
) -> None:
    upgrade(store_url)
    store = SqlStore(store_url, durable=False)
    rng = random.Random(orders)
    auction_orders = [
        AuctionOrder(
            f"o{i}", f"vm{i % 12}", Side.BUY if i % 2 else Side.SELL, rng.randrange(90, 110), 1_000
        )
        for i in range(orders)
    ]
    result = CallAuction("gold", fee_bps=25).clear("a1", auction_orders, at=clock.now)
    assert len(result.trades) >= (64 if orders > 100 else 1)
    expected = trade_log_rows(result.trades, auction_at=result.at)
    at_us = int((result.at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    assert expected == [(*t[:10], t.seller_value, None, at_us) for t in result.trades]
    mcafee = CallAuction("gold", fee_bps=25, mode=AuctionMode.MCAFEE).clear(
        "a2", auction_orders, at=clock.now
    )
    assert trade_log_rows(mcafee.trades, auction_at=mcafee.at) == [
        (*t[:10], t.seller_value, None, at_us) for t in mcafee.trades
    ]
    for _ in range(2):  # the second run replays the same settlement's rows
        with store.engine.begin() as conn:
            trade_log_writes(store.engine, result.trades, auction_at=result.at)(conn)
    with store.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.select(t_trades))]
    assert sorted(stored) == sorted(expected)
    store.close()
