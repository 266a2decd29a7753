"""The order lifecycle table, immutable events and exact fee and escrow arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import InvalidExpiry, InvalidPrice, InvalidQuantity, InvalidTransition
from market.units import trade_fee, trade_value
from market.venue.orders import (
    LIFECYCLE,
    TERMINAL_STATES,
    OrderEvent,
    OrderEventType,
    OrderState,
    Side,
    TimeInForce,
    Trade,
    bid_escrow,
    check_expiry,
    check_price,
    check_quantity,
    transition,
)

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def test_terminal_states_have_no_way_out() -> None:
    for (state, _event), _target in LIFECYCLE.items():
        assert state not in TERMINAL_STATES
    for state in TERMINAL_STATES:
        for event in OrderEventType:
            with pytest.raises(InvalidTransition, match=f"is {state.value} and cannot") as info:
                transition("o1", state, event)
            assert (info.value.order_id, info.value.state, info.value.event) == (
                "o1",
                state.value,
                event.value,
            )


def test_the_table_walks_an_order_through_partial_fills_to_filled() -> None:
    state = transition("o1", OrderState.PENDING, OrderEventType.ACCEPT)
    state = transition("o1", state, OrderEventType.PARTIAL_FILL)
    state = transition("o1", state, OrderEventType.MODIFY)
    assert state is OrderState.PARTIALLY_FILLED
    assert transition("o1", state, OrderEventType.FILL) is OrderState.FILLED
    with pytest.raises(InvalidTransition, match="pending and cannot take event fill"):
        transition("o1", OrderState.PENDING, OrderEventType.FILL)


def test_the_table_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        LIFECYCLE[OrderState.FILLED, OrderEventType.CANCEL] = OrderState.CANCELLED  # type: ignore[index]


def test_events_and_trades_are_immutable() -> None:
    event = OrderEvent("o1", "gold", OrderEventType.ACCEPT, OrderState.OPEN, 5, NOW)
    trade = Trade("t1", "gold", 100, 1_000, "b", "s", "x", "y", 100, 0, NOW, Side.BUY)
    with pytest.raises(AttributeError):
        event.state = OrderState.FILLED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        trade.price = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_quantities_and_prices_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(InvalidQuantity, match="positive integer of milli-credits"):
        check_quantity(bad)
    with pytest.raises(InvalidPrice, match="positive integer of minor units"):
        check_price(bad)


def test_only_good_till_time_orders_carry_a_future_expiry() -> None:
    with pytest.raises(InvalidExpiry, match="needs a timezone-aware expires_at"):
        check_expiry(TimeInForce.GTT, None, NOW)
    with pytest.raises(InvalidExpiry, match="is not after now"):
        check_expiry(TimeInForce.GTT, NOW, NOW)
    with pytest.raises(InvalidExpiry, match="only good-till-time orders take expires_at"):
        check_expiry(TimeInForce.GTC, NOW, NOW)


@given(
    limit=st.integers(1, 10_000),
    fee_bps=st.integers(0, 500),
    fills=st.lists(st.tuples(st.integers(1, 5_000), st.integers(0, 9_999)), min_size=1),
)
def test_fills_at_or_under_the_limit_never_cost_more_than_the_bid_escrow(
    limit: int, fee_bps: int, fills: list[tuple[int, int]]
) -> None:
    quantity = sum(q for q, _ in fills)
    cost = 0
    for q, discount in fills:
        price = max(1, limit - discount % limit)
        value = trade_value(q, price)
        cost += value + trade_fee(value, fee_bps)
    assert cost <= bid_escrow(quantity, limit, fee_bps)
