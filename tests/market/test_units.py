"""The market's value types: credits, money and prices that validate and never mix."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.errors import InvalidPrice, InvalidQuantity, UnitMismatch
from market.ledger import MAX_AMOUNT, InvalidAmount
from market.units import Credits, Money, Price, trade_fee, trade_value
from market.venue.orders import check_price, check_quantity

amounts = st.integers(0, 10**9)


@pytest.mark.parametrize("unit", [Credits, Money, Price])
@pytest.mark.parametrize("bad", [True, 1.0, math.nan, math.inf, -1, MAX_AMOUNT + 1, "5", None])
def test_a_value_type_refuses_what_is_not_an_amount(unit: type, bad: object) -> None:
    with pytest.raises(InvalidAmount):
        unit(bad)


def test_a_price_is_positive_and_amounts_may_be_zero() -> None:
    assert Credits(0) == 0
    assert Money(0) == 0
    with pytest.raises(InvalidAmount, match="at least 1"):
        Price(0)


@given(amounts, amounts)
def test_arithmetic_keeps_the_unit(a: int, b: int) -> None:
    for unit in (Credits, Money):
        total = unit(a) + unit(b)
        assert type(total) is unit
        assert total == a + b
        assert type(unit(a) + b) is unit
        assert type(3 * unit(a)) is unit
        if a >= b:
            assert unit(a) - unit(b) == a - b
        else:
            with pytest.raises(InvalidAmount):
                unit(a) - unit(b)  # a negative amount is not an amount


@given(st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 9_999))
def test_a_price_values_credits_by_the_one_fee_rule(price: int, quantity: int, bps: int) -> None:
    value = Price(price).value_of(Credits(quantity))
    assert type(value) is Money
    assert value == trade_value(quantity, price) == quantity * price // 1_000
    fee = value.fee(bps)
    assert type(fee) is Money
    assert fee == trade_fee(int(value), bps) == int(value) * bps // 10_000


@pytest.mark.parametrize(
    "mix",
    [
        lambda: Credits(1) + Money(1),
        lambda: Money(1) - Credits(1),
        lambda: Price(1) + Money(1),
        lambda: Credits(2) * Credits(2),
        lambda: Money(Credits(5)),
        lambda: Price(5).value_of(Money(5)),  # type: ignore[arg-type]
    ],
)
def test_two_units_never_mix(mix: object) -> None:
    with pytest.raises(UnitMismatch, match="different units"):
        mix()  # type: ignore[operator]


def test_the_venue_takes_its_own_units_and_refuses_the_others() -> None:
    assert check_price(Price(120)) == 120
    assert check_quantity(Credits(5_000)) == 5_000
    with pytest.raises(InvalidPrice):
        check_price(Credits(120))
    with pytest.raises(InvalidQuantity):
        check_quantity(Money(5_000))
    with pytest.raises(InvalidQuantity):
        check_quantity(Credits(0))
