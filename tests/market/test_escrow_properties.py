"""Random order streams through the venue: escrow conserves every asset at every step.

Escrow is held per instance and asset; after every step each instance's escrow account
holds exactly the sum of its open orders' shares (as the venue tracks them and, on
SQLite, as the orders' rows record them), finished orders hold nothing, and fills draw
only from their own order's share.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import event, given, settings
from hypothesis import strategies as st

from market.clock import ManualClock
from market.errors import MarketError
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    SqlStore,
    Transfer,
    credits_asset,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.venue.book import BookConfig
from market.venue.escrow import required_escrow
from market.venue.handling import OrderRequest, Venue, t_orders
from market.venue.orders import ACTIVE_STATES, Side, TimeInForce, Trade

NAMES = ("a", "b", "c")
FEE_BPS = 50

# bids at 30..60 and asks at 10..40, so that most streams trade
place = st.tuples(
    st.just("place"),
    st.sampled_from(NAMES),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(0, 3),
    st.integers(1, 6).map(lambda k: k * 333),
    st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTT]),
).map(lambda op: (*op[:3], (op[3] + (3 if op[2] is Side.BUY else 1)) * 10, *op[4:]))
# bad input: zero, negative or off-tick prices, zero or negative quantities, or more
# than the owner holds
bad_place = st.tuples(
    st.just("place"),
    st.sampled_from(NAMES),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([0, -10, 15, 30]),
    st.sampled_from([0, -333, 999, 900_000]),
    st.just(TimeInForce.GTC),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 30))
modify = st.tuples(
    st.just("modify"),
    st.integers(0, 30),
    st.none() | st.integers(1, 12).map(lambda k: k * 10),
    st.none() | st.integers(1, 12).map(lambda k: k * 333),
)
tick = st.tuples(st.just("tick"), st.integers(1, 3))
# call auction orders wait beside the book and settle together when the auction runs
auction_order = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(0, 3),
    st.integers(1, 6).map(lambda k: k * 333),
).map(lambda o: (*o[:2], (o[2] + (3 if o[1] is Side.BUY else 1)) * 10, o[3]))
# a batch of auction orders, locked together
auction = st.tuples(st.just("auction"), st.lists(auction_order, min_size=1, max_size=4))
run = st.tuples(st.just("run"))
streams = st.lists(
    st.one_of(place, place, place, bad_place, cancel, modify, tick, auction, run),
    min_size=4,
    max_size=30,
)


def _venue(clock: ManualClock, url: str | None = None) -> Venue:
    tiers = [BookConfig(tier="gold", tick_size=10, fee_bps=FEE_BPS)]
    if url is None:
        ledger = Ledger(MemoryStore(), clock)
        venue = Venue(ledger, clock, tiers)
    else:
        store = SqlStore(url, durable=False)
        ledger = Ledger(store, clock)
        venue = Venue(ledger, clock, tiers, engine=store.engine)
    ledger.open_accounts(
        [
            (mint_account(FUNDS), FUNDS, AccountKind.MINT),
            (mint_account(credits_asset("gold")), credits_asset("gold"), AccountKind.MINT),
        ]
    )
    for name in NAMES:
        venue.register_instance(name, "gold")
        ledger.post(
            EntryRequest(
                (
                    Transfer(mint_account(FUNDS), instance_funds(name), 5_000),
                    Transfer(mint_account(credits_asset("gold")), instance_credits(name), 8_000),
                ),
                reason="deposit",
                actor="test",
            )
        )
    return venue


def _check(
    venue: Venue, orders: dict[str, int], trades: list[Trade], drawn: dict[str, int]
) -> None:
    balances = venue.ledger.balances()
    totals: dict[str, int] = {}
    for account_id, balance in balances.items():
        asset = venue.ledger.account(account_id).asset
        totals[asset] = totals.get(asset, 0) + balance
    # every asset's accounts sum to zero against its mint: nothing created or lost
    assert totals == {FUNDS: 0, credits_asset("gold"): 0}
    assert balances[mint_account(FUNDS)] == -3 * 5_000
    book = venue.book("gold")
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask
    shares: dict[str, int] = {}
    for name in NAMES:
        shares[escrow_funds(name)] = shares[escrow_credits(name)] = 0
    for order_id in orders:
        order = venue.order(order_id)
        held = venue.escrow_left(order_id)
        if order.state in ACTIVE_STATES:
            assert held >= required_escrow(order.side, order.price, order.remaining, FEE_BPS)
        else:
            assert held == 0, "a finished order kept escrow"
        account = (escrow_funds if order.side is Side.BUY else escrow_credits)(order.owner)
        shares[account] += held
    # each escrow account holds exactly its open orders' shares: no balance backs two
    assert {a: balances[a] for a in shares} == shares
    engine = venue._engine
    if engine is not None:
        with engine.connect() as conn:
            rows = dict(conn.execute(sa.select(t_orders.c.order_id, t_orders.c.escrow)).all())
        assert rows == {o: venue.escrow_left(o) for o in orders}, "a row's share is stale"
    for t in trades:
        assert orders[t.sell_order_id] <= t.price <= orders[t.buy_order_id]
        drawn[t.buy_order_id] = drawn.get(t.buy_order_id, 0) + t.value + t.fee
        drawn[t.sell_order_id] = drawn.get(t.sell_order_id, 0) + t.quantity
    for name in NAMES:
        assert balances[instance_funds(name)] >= 0
        assert balances[instance_credits(name)] >= 0


@settings(max_examples=150, deadline=None)
@given(stream=streams)
def test_escrow_conserves_every_asset_after_every_step(stream) -> None:
    _run(stream, None)


@settings(max_examples=25, deadline=None)
@given(stream=streams)
def test_escrow_shares_persist_on_sqlite_after_every_step(
    stream, template_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("stream") / "venue.db"
    shutil.copy(template_db, path)
    _run(stream, f"sqlite:///{path}")


def _run(stream: list, url: str | None) -> None:
    clock = ManualClock(datetime(2026, 3, 2, tzinfo=UTC))
    venue = _venue(clock, url)
    orders: dict[str, int] = {}  # order id -> current limit price
    ids: list[str] = []
    # order id -> escrow it locked (first lock and top-ups), and what its fills drew
    locked: dict[str, int] = {}
    drawn: dict[str, int] = {}
    # a resting book to trade against: asks at 30 and 40, bids at 20 and 10
    seed = [("a", Side.SELL, 30), ("a", Side.SELL, 40), ("b", Side.BUY, 20), ("b", Side.BUY, 10)]
    for name, side, price in seed:
        placed = venue.place(name, side, price, 999)
        orders[placed.order.order_id] = price
        ids.append(placed.order.order_id)
        locked[placed.order.order_id] = required_escrow(side, price, 999, FEE_BPS)
    for op in stream:
        trades: list[Trade] = []
        before = venue.ledger.balances()
        try:
            if op[0] == "place":
                _, name, side, price, qty, tif = op
                expires = clock.now + timedelta(minutes=2) if tif is TimeInForce.GTT else None
                (result,) = venue.place_many([OrderRequest(name, side, price, qty, tif, expires)])
                if isinstance(result, MarketError):
                    assert venue.ledger.balances() == before
                else:
                    orders[result.order.order_id] = price
                    ids.append(result.order.order_id)
                    locked[result.order.order_id] = required_escrow(side, price, qty, FEE_BPS)
                    trades += result.trades
            elif op[0] == "cancel" and ids:
                order_id = ids[op[1] % len(ids)]
                order = venue.order(order_id)
                account = (instance_funds if order.side is Side.BUY else instance_credits)(
                    order.owner
                )
                left = venue.escrow_left(order_id)
                escrow = (escrow_funds if order.side is Side.BUY else escrow_credits)(order.owner)
                venue.cancel(order_id)
                # cancel returns exactly what was left of its share, to the owner
                assert venue.ledger.balance(account) == before[account] + left
                assert venue.ledger.balance(escrow) == before[escrow] - left
                assert venue.escrow_left(order_id) == 0
            elif op[0] == "modify" and ids:
                order_id = ids[op[1] % len(ids)]
                order = venue.order(order_id)
                needed = required_escrow(
                    order.side,
                    order.price if op[2] is None else op[2],
                    order.remaining if op[3] is None else op[3],
                    FEE_BPS,
                )
                top_up = max(0, needed - venue.escrow_left(order_id))
                events = venue.modify(order_id, price=op[2], quantity=op[3])
                # a top-up adds to the order's share (a trim returns part of it)
                locked[order_id] += top_up
                if op[2] is not None:
                    orders[order_id] = op[2]
                trades += [e for e in events if isinstance(e, Trade)]
            elif op[0] == "tick":
                clock.advance(timedelta(minutes=op[1]))
                lefts = {o: venue.escrow_left(o) for o in orders}
                expired = [e.order_id for e in venue.expire()]
                # expiry returns exactly what each expired order had left, to its owner
                returned: dict[str, int] = {}
                for order_id in expired:
                    order = venue.order(order_id)
                    account = (instance_funds if order.side is Side.BUY else instance_credits)(
                        order.owner
                    )
                    returned[account] = returned.get(account, 0) + lefts[order_id]
                after = venue.ledger.balances()
                assert {a: after[a] - before[a] for a in returned} == returned
            elif op[0] == "auction":
                batch = [OrderRequest(name, side, price, qty) for name, side, price, qty in op[1]]
                for r, waiting in zip(batch, venue.submit_to_auction(batch), strict=True):
                    if not isinstance(waiting, MarketError):
                        orders[waiting.order_id] = r.price
                        ids.append(waiting.order_id)
                        locked[waiting.order_id] = required_escrow(
                            r.side, r.price, r.quantity, FEE_BPS
                        )
            elif op[0] == "run":
                auction_trades = venue.run_auction("gold").trades
                event(f"auction trades: {len(auction_trades) > 0}")
                trades += auction_trades
        except MarketError:
            assert venue.ledger.balances() == before, "a rejected operation moved a balance"
        _check(venue, orders, trades, drawn)
        # fills draw only from their own order's share: never more than it locked
        assert all(drawn.get(o, 0) <= locked[o] for o in orders)
    # every stream ends with an auction of whatever still waits for one
    final = venue.run_auction("gold").trades
    event(f"final auction trades: {len(final) > 0}")
    _check(venue, orders, list(final), drawn)
    assert all(drawn.get(o, 0) <= locked[o] for o in orders)
    event(f"trades: {len(venue.trade_log()) > 0}")
    assert venue.ledger.verify().ok
    venue.ledger.close()
