"""The continuous book, scenario by scenario: priority, modification, IOC, expiry, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from market.clock import ManualClock
from market.errors import DuplicateOrder, InvalidPrice, InvalidQuantity, OffTickPrice
from market.venue.book import BookConfig, OrderBook
from market.venue.orders import OrderEventType, OrderState, Side, TimeInForce, Trade


@pytest.fixture
def book(clock: ManualClock) -> OrderBook:
    return OrderBook(BookConfig(tier="gold", tick_size=5, fee_bps=20), clock)


def _trades(events) -> list[tuple[int, int, str, str]]:
    return [
        (e.price, e.quantity, e.buy_order_id, e.sell_order_id)
        for e in events
        if isinstance(e, Trade)
    ]


def test_trades_happen_at_the_resting_price_in_time_priority(book: OrderBook) -> None:
    book.submit("a1", "x", Side.SELL, 105, 1_000)
    book.submit("a2", "y", Side.SELL, 100, 1_000)
    book.submit("a3", "z", Side.SELL, 100, 1_000)
    events = book.submit("b1", "w", Side.BUY, 110, 2_500)
    assert _trades(events) == [
        (100, 1_000, "b1", "a2"),
        (100, 1_000, "b1", "a3"),
        (105, 500, "b1", "a1"),
    ]
    (fee,) = {e.fee for e in events if isinstance(e, Trade) and e.price == 100}
    assert fee == 100 * 20 // 10_000
    assert book.order("a1").state is OrderState.PARTIALLY_FILLED
    assert book.order("b1").state is OrderState.FILLED


def test_a_smaller_quantity_keeps_priority_a_larger_one_loses_it(book: OrderBook) -> None:
    book.submit("a1", "x", Side.SELL, 100, 2_000)
    book.submit("a2", "y", Side.SELL, 100, 2_000)
    book.modify("a1", quantity=1_000)
    assert _trades(book.submit("b1", "w", Side.BUY, 100, 500)) == [(100, 500, "b1", "a1")]
    book.modify("a1", quantity=3_000)
    assert _trades(book.submit("b2", "w", Side.BUY, 100, 500)) == [(100, 500, "b2", "a2")]


def test_a_new_price_loses_priority_and_can_cross(book: OrderBook) -> None:
    book.submit("a1", "x", Side.SELL, 110, 1_000)
    book.submit("b1", "y", Side.BUY, 100, 1_000)
    events = book.modify("a1", price=100)
    assert _trades(events) == [(100, 1_000, "b1", "a1")]
    assert book.best_bid() is None
    assert book.best_ask() is None


def test_ioc_cancels_what_it_cannot_fill_at_once(book: OrderBook) -> None:
    book.submit("a1", "x", Side.SELL, 100, 1_000)
    events = book.submit("b1", "y", Side.BUY, 100, 3_000, TimeInForce.IOC)
    assert events[-1].event is OrderEventType.CANCEL
    assert events[-1].remaining == 2_000
    assert book.best_bid() is None


def test_good_till_time_orders_expire_on_the_injected_clock(
    book: OrderBook, clock: ManualClock
) -> None:
    book.submit("b1", "x", Side.BUY, 100, 1_000, TimeInForce.GTT, clock.now + timedelta(hours=1))
    clock.advance(timedelta(minutes=59))
    assert book.expire() == []
    clock.advance(timedelta(minutes=1))
    (event,) = book.expire()
    assert (event.order_id, event.state) == ("b1", OrderState.EXPIRED)
    assert book.best_bid() is None


@pytest.mark.parametrize(
    ("price", "quantity", "error", "match"),
    [
        (100, 0, InvalidQuantity, "got 0"),
        (100, -1_000, InvalidQuantity, "got -1000"),
        (0, 1_000, InvalidPrice, "got 0"),
        (-5, 1_000, InvalidPrice, "got -5"),
        (101, 1_000, OffTickPrice, "not a multiple of the tick size 5 of tier 'gold'"),
    ],
)
def test_bad_orders_leave_the_book_as_it_was(
    book: OrderBook, price, quantity, error, match
) -> None:
    book.submit("a1", "x", Side.SELL, 100, 1_000)
    before = (book.depth(Side.BUY), book.depth(Side.SELL))
    with pytest.raises(error, match=match):
        book.submit("b1", "y", Side.BUY, price, quantity)
    with pytest.raises(DuplicateOrder, match="'a1' already exists"):
        book.submit("a1", "y", Side.BUY, 100, 1_000)
    assert (book.depth(Side.BUY), book.depth(Side.SELL)) == before
    assert "b1" not in book
