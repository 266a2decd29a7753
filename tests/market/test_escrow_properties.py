"""Random order streams through the venue: escrow conserves every asset at every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from market.book import BookConfig
from market.clock import ManualClock
from market.errors import MarketError
from market.escrow import required_escrow
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    credits_asset,
    escrow_account,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.orders import ACTIVE_STATES, Side, TimeInForce, Trade
from market.venue import OrderRequest, Venue

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
streams = st.lists(
    st.one_of(place, place, place, bad_place, cancel, modify, tick), min_size=4, max_size=30
)


def _venue(clock: ManualClock) -> Venue:
    ledger = Ledger(MemoryStore(), clock)
    venue = Venue(ledger, clock, [BookConfig(tier="gold", tick_size=10, fee_bps=FEE_BPS)])
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


def _check(venue: Venue, orders: dict[str, int], trades: list[Trade]) -> None:
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
    for order_id in orders:
        order = venue.order(order_id)
        held = balances[escrow_account(order_id)]
        assert held == venue.escrow_left(order_id)
        if order.state in ACTIVE_STATES:
            assert held >= required_escrow(order.side, order.price, order.remaining, FEE_BPS)
        else:
            assert held == 0, "a finished order kept escrow"
    for t in trades:
        assert orders[t.sell_order_id] <= t.price <= orders[t.buy_order_id]
    for name in NAMES:
        assert balances[instance_funds(name)] >= 0
        assert balances[instance_credits(name)] >= 0


@settings(max_examples=150, deadline=None)
@given(stream=streams)
def test_escrow_conserves_every_asset_after_every_step(stream) -> None:
    clock = ManualClock(datetime(2026, 3, 2, tzinfo=UTC))
    venue = _venue(clock)
    orders: dict[str, int] = {}  # order id -> current limit price
    ids: list[str] = []
    # a resting book to trade against: asks at 30 and 40, bids at 20 and 10
    seed = [("a", Side.SELL, 30), ("a", Side.SELL, 40), ("b", Side.BUY, 20), ("b", Side.BUY, 10)]
    for name, side, price in seed:
        placed = venue.place(name, side, price, 999)
        orders[placed.order.order_id] = price
        ids.append(placed.order.order_id)
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
                    trades += result.trades
            elif op[0] == "cancel" and ids:
                order_id = ids[op[1] % len(ids)]
                order = venue.order(order_id)
                account = (instance_funds if order.side is Side.BUY else instance_credits)(
                    order.owner
                )
                left = venue.escrow_left(order_id)
                venue.cancel(order_id)
                # cancel returns exactly what was left in escrow, to the owner
                assert venue.ledger.balance(account) == before[account] + left
                assert venue.ledger.balance(escrow_account(order_id)) == 0
            elif op[0] == "modify" and ids:
                order_id = ids[op[1] % len(ids)]
                events = venue.modify(order_id, price=op[2], quantity=op[3])
                if op[2] is not None:
                    orders[order_id] = op[2]
                trades += [e for e in events if isinstance(e, Trade)]
            elif op[0] == "tick":
                clock.advance(timedelta(minutes=op[1]))
                venue.expire()
        except MarketError:
            assert venue.ledger.balances() == before, "a rejected operation moved a balance"
        _check(venue, orders, trades)
    event(f"trades: {len(venue.trade_log()) > 0}")
    assert venue.ledger.verify().ok
