"""The continuous book against the brute-force reference, with invariants after every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from market.errors import InvalidTransition
from market.venue.book import BookConfig, OrderBook, SelfTradePrevention
from market.venue.orders import OrderState, Side, TimeInForce, Trade
from tests.market.matching_reference import ReferenceBook

TICK = 5
START = datetime(2026, 3, 1, tzinfo=UTC)

add_op = st.tuples(
    st.just("add"),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 8).map(lambda k: k * TICK),
    st.integers(1, 5).map(lambda k: k * 250),
    st.sampled_from(["i1", "i2", "i3"]),
    st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTT]),
    st.integers(1, 4),
)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 40))
modify_op = st.tuples(
    st.just("modify"),
    st.integers(0, 40),
    st.none() | st.integers(1, 8).map(lambda k: k * TICK),
    st.none() | st.integers(1, 6).map(lambda k: k * 250),
)
tick_op = st.tuples(st.just("tick"), st.integers(1, 3))
ops = st.lists(st.one_of(add_op, add_op, cancel_op, modify_op, tick_op), min_size=3, max_size=40)
# a resting book every stream starts from, so that most streams trade
SEED = [
    ("i1", Side.SELL, 5 * TICK),
    ("i2", Side.SELL, 6 * TICK),
    ("i1", Side.BUY, 3 * TICK),
    ("i2", Side.BUY, 2 * TICK),
]


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _assert_invariants(book: OrderBook, limits: dict[str, int], trades: list[Trade]) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, "the book is crossed"
    for trade in trades:
        assert trade.price <= limits[trade.buy_order_id]
        assert trade.price >= limits[trade.sell_order_id]
        assert trade.buyer != trade.seller
    for side in (Side.BUY, Side.SELL):
        resting = [o for o in book.open_orders(side)]
        depth = book.depth(side)
        assert sum(q for _, q, _ in depth) == sum(o.remaining for o in resting)
        assert sum(c for _, _, c in depth) == len(resting)
        assert all(o.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED) for o in resting)


@pytest.mark.parametrize("mode", list(SelfTradePrevention))
@settings(max_examples=250, deadline=None)
@given(stream=ops)
def test_book_matches_the_reference_trade_for_trade(mode: SelfTradePrevention, stream) -> None:
    clock = _Clock()
    book = OrderBook(BookConfig(tier="gold", tick_size=TICK, self_trade=mode), clock)
    ref = ReferenceBook(mode, clock)
    ids: list[str] = []
    limits: dict[str, int] = {}
    trades: list[Trade] = []
    for n, (owner, side, price) in enumerate(SEED):
        book.submit(f"s{n}", owner, side, price, 500)
        ref.submit(f"s{n}", owner, side, price, 500)
        ids.append(f"s{n}")
        limits[f"s{n}"] = price
    for op in stream:
        events = []
        if op[0] == "add":
            _, side, price, qty, owner, tif, minutes = op
            order_id = f"o{len(ids)}"
            ids.append(order_id)
            expires = clock.now + timedelta(minutes=minutes) if tif is TimeInForce.GTT else None
            events = book.submit(order_id, owner, side, price, qty, tif, expires)
            ref.submit(order_id, owner, side, price, qty, tif, expires)
            limits[order_id] = price
        elif op[0] == "cancel" and ids:
            order_id = ids[op[1] % len(ids)]
            if ref.is_resting(order_id):
                events = book.cancel(order_id)
                ref.cancel(order_id)
            else:
                with pytest.raises(InvalidTransition, match="cannot take event cancel"):
                    book.cancel(order_id)
        elif op[0] == "modify" and ids:
            order_id = ids[op[1] % len(ids)]
            _, _, price, qty = op
            if ref.is_resting(order_id):
                events = book.modify(order_id, price=price, quantity=qty)
                ref.modify(order_id, price, qty)
                if price is not None:
                    limits[order_id] = price
            else:
                with pytest.raises(InvalidTransition, match="cannot take event modify"):
                    book.modify(order_id, price=price, quantity=qty)
        elif op[0] == "tick":
            clock.now += timedelta(minutes=op[1])
            events = book.expire()
        new_trades = [e for e in events if isinstance(e, Trade)]
        trades.extend(new_trades)
        _assert_invariants(book, limits, new_trades)
        assert [(t.price, t.quantity, t.buy_order_id, t.sell_order_id) for t in trades] == (
            ref.trades
        )
        ref_open = ref.open_orders()
        assert (
            sorted((o.order_id, o.side, o.price, o.remaining) for o in book.open_orders())
            == ref_open
        )
    event(f"trades: {bool(trades)}")
