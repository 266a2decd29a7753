"""The call auction against the brute-force reference, and the invariants of its fills."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from market.errors import InvalidAuction
from market.ledger import (
    FEES_ACCOUNT,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
)
from market.venue.auction import AuctionMode, AuctionOrder, CallAuction
from market.venue.escrow import required_escrow
from market.venue.orders import Side
from market.venue.settlement import auction_request
from tests.market.matching_reference import reference_uniform_price

TICK = 5
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)

order_lists = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 12).map(lambda k: k * TICK),
        st.integers(1, 6).map(lambda k: k * 100),
    ),
    min_size=2,
    max_size=25,
)
previous_prices = st.none() | st.integers(1, 14).map(lambda k: k * TICK)


def _orders(raw: list[tuple[Side, int, int]]) -> list[AuctionOrder]:
    return [
        AuctionOrder(f"o{i}", f"i{i % 7}", side, price, qty)
        for i, (side, price, qty) in enumerate(raw)
    ]


def _check_fills(orders: list[AuctionOrder], result) -> None:
    by_id = {o.order_id: o for o in orders}
    bought = sum(f.quantity for f in result.fills if f.side is Side.BUY)
    sold = sum(f.quantity for f in result.fills if f.side is Side.SELL)
    assert bought == sold == result.volume
    for fill in result.fills:
        order = by_id[fill.order_id]
        assert 0 < fill.quantity <= order.quantity
        if fill.side is Side.BUY:
            assert fill.price <= order.price, "a buyer pays above its limit"
        else:
            assert fill.price >= order.price, "a seller receives below its limit"
    traded = Counter()
    for trade in result.trades:
        traded[trade.buy_order_id] += trade.quantity
        traded[trade.sell_order_id] += trade.quantity
        assert trade.seller_receives <= trade.value
    assert traded == Counter({f.order_id: f.quantity for f in result.fills})
    assert result.unmatched_bid_quantity == (
        sum(o.quantity for o in orders if o.side is Side.BUY) - result.volume
    )


def _priority_allocation(orders: list[AuctionOrder], side: Side, price: int, volume: int):
    # price-time priority, written out by hand
    eligible = [
        (i, o)
        for i, o in enumerate(orders)
        if o.side is side and (o.price >= price if side is Side.BUY else o.price <= price)
    ]
    eligible.sort(key=lambda io: (-io[1].price if side is Side.BUY else io[1].price, io[0]))
    fills, left = {}, volume
    for _, o in eligible:
        take = min(left, o.quantity)
        if take:
            fills[o.order_id] = take
        left -= take
    return fills


@settings(max_examples=200, deadline=None)
@given(raw=order_lists, previous=previous_prices)
def test_uniform_price_and_volume_match_the_reference(raw, previous) -> None:
    orders = _orders(raw)
    result = CallAuction("gold", tick_size=TICK).clear("A1", orders, at=AT, previous_price=previous)
    bids = [(o.price, o.quantity) for o in orders if o.side is Side.BUY]
    asks = [(o.price, o.quantity) for o in orders if o.side is Side.SELL]
    expected = reference_uniform_price(bids, asks, tick_size=TICK, previous_price=previous)
    assert (result.clearing_price, result.volume) == expected
    event(f"traded: {result.volume > 0}")
    _check_fills(orders, result)
    if result.clearing_price is not None:
        for side in (Side.BUY, Side.SELL):
            assert {
                f.order_id: f.quantity for f in result.fills if f.side is side
            } == _priority_allocation(orders, side, result.clearing_price, result.volume)


@settings(max_examples=200, deadline=None)
@given(raw=order_lists)
def test_mcafee_never_trades_more_than_uniform_and_never_runs_a_deficit(raw) -> None:
    orders = _orders(raw)
    uniform = CallAuction("gold", tick_size=TICK).clear("A1", orders, at=AT)
    mcafee = CallAuction("gold", tick_size=TICK, mode=AuctionMode.MCAFEE).clear("A1", orders, at=AT)
    _check_fills(orders, mcafee)
    assert mcafee.volume <= uniform.volume
    assert mcafee.surplus >= 0
    if mcafee.volume:
        assert mcafee.buy_price is not None
        assert mcafee.sell_price is not None
        assert mcafee.buy_price >= mcafee.sell_price


def test_mcafee_trades_everything_at_the_midpoint_when_it_lies_inside_the_margin() -> None:
    # bids 100, 90, 20; asks 10, 30, 80: two units trade; next pair (20, 80) -> p0 = 50
    raw = [
        (Side.BUY, 100, 1000),
        (Side.BUY, 90, 1000),
        (Side.BUY, 20, 1000),
        (Side.SELL, 10, 1000),
        (Side.SELL, 30, 1000),
        (Side.SELL, 80, 1000),
    ]
    result = CallAuction("gold", tick_size=5, mode=AuctionMode.MCAFEE).clear(
        "A1", _orders(raw), at=AT
    )
    assert (result.clearing_price, result.volume, result.surplus) == (50, 2000, 0)


def test_mcafee_drops_the_marginal_pair_when_the_midpoint_falls_outside() -> None:
    # bids 100, 60, 5; asks 10, 40, 95: the first two pairs are efficient
    raw = [
        (Side.BUY, 100, 1000),
        (Side.BUY, 60, 1000),
        (Side.BUY, 5, 1000),
        (Side.SELL, 10, 1000),
        (Side.SELL, 40, 1000),
        (Side.SELL, 95, 1000),
    ]
    # p0 = (5 + 95) // 2 = 50, inside [40, 60]: everything trades at 50
    midpoint = CallAuction("gold", tick_size=5, mode=AuctionMode.MCAFEE).clear(
        "A1", _orders(raw), at=AT
    )
    assert (midpoint.clearing_price, midpoint.volume) == (50, 2000)
    raw[5] = (Side.SELL, 200, 1000)  # p0 = (5 + 200) // 2 -> 100 on the tick, above b2 = 60
    reduced = CallAuction("gold", tick_size=5, mode=AuctionMode.MCAFEE).clear(
        "A1", _orders(raw), at=AT
    )
    assert reduced.clearing_price is None
    assert (reduced.buy_price, reduced.sell_price, reduced.volume) == (60, 40, 1000)
    (trade,) = reduced.trades
    assert (trade.buy_order_id, trade.sell_order_id) == ("o0", "o3")
    assert (trade.value, trade.seller_receives, reduced.surplus) == (60, 40, 20)


def test_uniform_tie_breaks_least_imbalance_then_nearest_previous_price() -> None:
    # volume 1000 at every price in [10, 20]; imbalance is least on [10, 20] too
    raw = [(Side.BUY, 20, 1000), (Side.SELL, 10, 1000)]
    auction = CallAuction("gold", tick_size=5)
    assert auction.clear("A", _orders(raw), at=AT).clearing_price == 10
    assert auction.clear("A", _orders(raw), at=AT, previous_price=15).clearing_price == 15
    assert auction.clear("A", _orders(raw), at=AT, previous_price=40).clearing_price == 20
    # least imbalance: at 10 demand is 3000 vs supply 1000; at 15 demand 1000 = supply 1000
    raw = [(Side.BUY, 15, 1000), (Side.BUY, 10, 2000), (Side.SELL, 10, 1000)]
    result = auction.clear("A", _orders(raw), at=AT, previous_price=10)
    assert (result.clearing_price, result.volume, result.demand, result.supply) == (
        15,
        1000,
        1000,
        1000,
    )


def test_rationing_fills_the_earliest_order_at_the_margin_first() -> None:
    raw = [(Side.BUY, 10, 600), (Side.BUY, 10, 600), (Side.SELL, 10, 1000)]
    result = CallAuction("gold", tick_size=5).clear("A", _orders(raw), at=AT)
    assert {f.order_id: f.quantity for f in result.fills if f.side is Side.BUY} == {
        "o0": 600,
        "o1": 400,
    }
    assert result.unmatched_bid_quantity == 200


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([(Side.BUY, 0, 100)], "price must be a positive integer"),
        ([(Side.BUY, 10, -5)], "quantity must be a positive integer"),
        ([(Side.BUY, 12, 100)], "off the tick 5"),
    ],
)
def test_bad_auction_orders_are_rejected(raw, match) -> None:
    with pytest.raises(InvalidAuction, match=match):
        CallAuction("gold", tick_size=5).clear("A", _orders(raw), at=AT)


def _reference_legs(result, lefts: list[int]) -> set[tuple[str, str, int]]:
    """The auction entry's legs, trade by trade and order by order, without arrays."""
    funds_out: Counter[str] = Counter()
    credits_out: Counter[str] = Counter()
    funds_in: Counter[str] = Counter()
    credits_in: Counter[str] = Counter()
    used: Counter[str] = Counter()
    fees = 0
    for t in result.trades:
        used[t.buy_order_id] += t.value + t.fee
        used[t.sell_order_id] += t.quantity
        funds_out[t.seller] += t.seller_receives
        credits_out[t.buyer] += t.quantity
        fees += t.fee + t.value - t.seller_receives
    for o, left in zip(result.allocation.orders, lefts, strict=True):
        assert left >= used[o.order_id]
        if o.side is Side.BUY:
            funds_in[o.owner] += left
            funds_out[o.owner] += left - used[o.order_id]
        else:
            credits_in[o.owner] += left
            credits_out[o.owner] += left - used[o.order_id]
    legs = {(escrow_funds(o), "clear:funds", a) for o, a in funds_in.items() if a}
    legs |= {(escrow_credits(o), "clear:credits", a) for o, a in credits_in.items() if a}
    legs |= {("clear:funds", instance_funds(o), a) for o, a in funds_out.items() if a}
    legs |= {("clear:credits", instance_credits(o), a) for o, a in credits_out.items() if a}
    if fees:
        legs.add(("clear:funds", FEES_ACCOUNT, fees))
    return legs


@settings(max_examples=200, deadline=None)
@given(
    raw=order_lists,
    mode=st.sampled_from(list(AuctionMode)),
    fee_bps=st.sampled_from([0, 25, 300]),
    extra=st.lists(st.integers(0, 50), min_size=25, max_size=25),
)
def test_auction_settlement_matches_the_trade_by_trade_reference(raw, mode, fee_bps, extra) -> None:
    orders = _orders(raw)
    result = CallAuction("gold", tick_size=TICK, fee_bps=fee_bps, mode=mode).clear(
        "a1", orders, at=AT
    )
    lefts = [
        required_escrow(o.side, o.price, o.quantity, fee_bps) + bonus
        for o, bonus in zip(orders, extra, strict=False)
    ]
    request = auction_request(
        result, lefts, funds_clearing="clear:funds", credits_clearing="clear:credits", actor="t"
    )
    expected = _reference_legs(result, lefts)
    if request is None:
        assert expected == set()
        return
    legs = [(t.source, t.destination, t.amount) for t in request.transfers]
    assert len(legs) == len(set(legs))
    assert set(legs) == expected
    assert request.metadata["trades"] == len(result.trades)
    event(f"trades: {bool(result.trades)}")
    # a share smaller than what the trades draw is refused
    if result.trades:
        buy_id = result.trades[0].buy_order_id
        drawn = sum(t.value + t.fee for t in result.trades if t.buy_order_id == buy_id)
        short = [
            drawn - 1 if o.order_id == buy_id else left
            for o, left in zip(orders, lefts, strict=True)
        ]
        if drawn:
            with pytest.raises(ValueError, match=f"order '{buy_id}' was drawn beyond its escrow"):
                auction_request(result, short, funds_clearing="f", credits_clearing="c", actor="t")


def test_trade_amounts_stay_exact_beyond_int64() -> None:
    orders = [
        AuctionOrder("b", "i1", Side.BUY, 5_000_000, 10**12 + 7),
        AuctionOrder("s", "i2", Side.SELL, 5_000_000, 10**12 + 7),
    ]
    result = CallAuction("gold", fee_bps=300).clear("big", orders, at=AT)
    (trade,) = result.trades
    value = (10**12 + 7) * 5_000_000 // 1000
    assert (trade.value, trade.fee) == (value, value * 300 // 10_000)
    assert type(trade.value) is int
