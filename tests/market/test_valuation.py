"""The valuation: bounds, ticks, and prices that rise with scarcity and uncertainty."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.decisions import InvalidAgentInput
from market.valuation import (
    clearing_anchor,
    credit_prices,
    forecast_uncertainty,
    pool_scarcity,
    value_credit,
)

fractions01 = st.fractions(min_value=0, max_value=1, max_denominator=1000)
prices = st.lists(st.integers(1, 10_000), max_size=8)


def _value(**overrides: object):
    arguments: dict[str, object] = {
        "throttle_cost": 200,
        "quantile": Fraction(9, 10),
        "recent_prices": [100],
        "scarcity": Fraction(1, 2),
        "uncertainty": Fraction(0),
        "overflows_cap": False,
    }
    arguments.update(overrides)
    return value_credit(**arguments)  # type: ignore[arg-type]


def test_balanced_market_prices_at_the_anchor() -> None:
    v = _value()
    assert v.anchor == 100
    assert v.market_value == 100
    assert (v.bid_price, v.ask_price) == (100, 100)
    assert v.keep_value == 20  # 200 * (1 - 0.9)


def test_anchor_is_the_lower_median_or_half_the_throttle_cost() -> None:
    assert clearing_anchor([30, 10, 20, 40], 500) == 20
    assert clearing_anchor([], 501) == Fraction(501, 2)
    with pytest.raises(InvalidAgentInput, match="clearing price"):
        clearing_anchor([10, 0], 100)


def test_bid_is_capped_by_throttle_cost_and_max_bid() -> None:
    assert _value(scarcity=Fraction(1), uncertainty=Fraction(1)).bid_price == 200
    assert _value(max_bid=70).bid_price == 70
    assert _value(max_bid=3, tick_size=5).bid_price is None


def test_ask_respects_min_ask_keep_value_and_overflow() -> None:
    assert _value(min_ask=150).ask_price == 150
    cheap = _value(recent_prices=[5])
    assert cheap.ask_price == 20  # the keep value of a q90 surplus credit
    assert _value(recent_prices=[5], overflows_cap=True).ask_price == 5


def test_prices_sit_on_the_tick() -> None:
    v = _value(recent_prices=[103], tick_size=10)
    assert v.bid_price == 100  # rounded down
    assert v.ask_price == 110  # rounded up


@given(prices, fractions01, fractions01, fractions01, st.integers(1, 20))
def test_bids_and_asks_rise_with_scarcity(
    recent: list[int], low: Fraction, high: Fraction, uncertainty: Fraction, tick: int
) -> None:
    low, high = min(low, high), max(low, high)
    calm = _value(recent_prices=recent, scarcity=low, uncertainty=uncertainty, tick_size=tick)
    tight = _value(recent_prices=recent, scarcity=high, uncertainty=uncertainty, tick_size=tick)
    assert tight.market_value >= calm.market_value
    assert (tight.bid_price or 0) >= (calm.bid_price or 0)
    assert tight.ask_price >= calm.ask_price


@given(prices, fractions01, fractions01, fractions01)
def test_bids_and_asks_rise_with_uncertainty(
    recent: list[int], scarcity: Fraction, low: Fraction, high: Fraction
) -> None:
    low, high = min(low, high), max(low, high)
    sure = _value(recent_prices=recent, scarcity=scarcity, uncertainty=low)
    unsure = _value(recent_prices=recent, scarcity=scarcity, uncertainty=high)
    assert (unsure.bid_price or 0) >= (sure.bid_price or 0)
    assert unsure.ask_price >= sure.ask_price


@given(
    prices,
    fractions01,
    fractions01,
    st.integers(1, 1000),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.integers(1, 25),
    st.booleans(),
)
def test_prices_stay_within_the_owner_limits(
    recent: list[int],
    scarcity: Fraction,
    uncertainty: Fraction,
    throttle_cost: int,
    max_bid: int | None,
    min_ask: int | None,
    tick: int,
    overflows: bool,
) -> None:
    v = _value(
        recent_prices=recent,
        scarcity=scarcity,
        uncertainty=uncertainty,
        throttle_cost=throttle_cost,
        max_bid=max_bid,
        min_ask=min_ask,
        tick_size=tick,
        overflows_cap=overflows,
    )
    if v.bid_price is not None:
        assert tick <= v.bid_price <= throttle_cost
        assert max_bid is None or v.bid_price <= max_bid
        assert v.bid_price % tick == 0
    assert v.ask_price >= max(min_ask or 0, v.keep_value, tick)
    assert v.ask_price % tick == 0


def test_a_scarcer_tier_strictly_raises_both_prices_below_the_ceiling() -> None:
    calm = _value(scarcity=Fraction(1, 4))
    tight = _value(scarcity=Fraction(3, 4))
    assert calm.bid_price is not None
    assert tight.bid_price is not None
    assert tight.bid_price > calm.bid_price
    assert tight.ask_price > calm.ask_price


def test_uncertainty_and_scarcity_helpers() -> None:
    assert forecast_uncertainty(50, 100) == Fraction(1, 2)
    assert forecast_uncertainty(0, 0) == 0
    assert forecast_uncertainty(120, 100) == 0
    assert pool_scarcity(0, 0) == 1
    assert pool_scarcity(0, 400) == 1
    assert pool_scarcity(100, 400) == Fraction(3, 4)
    assert pool_scarcity(500, 400) == 0
    with pytest.raises(InvalidAgentInput, match="negative"):
        pool_scarcity(-1, 2)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"throttle_cost": 0}, "throttle_cost"),
        ({"throttle_cost": 1.5}, "throttle_cost"),
        ({"scarcity": Fraction(3, 2)}, "scarcity"),
        ({"uncertainty": 0.5}, "uncertainty"),
        ({"tick_size": 0}, "tick_size"),
    ],
)
def test_bad_input_is_refused(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidAgentInput, match=match):
        _value(**overrides)


def _reference_prices(
    *,
    throttle_cost: int,
    quantile: Fraction,
    recent_prices: list[int],
    scarcity: Fraction,
    uncertainty: Fraction,
    overflows_cap: bool,
    tick_size: int,
    max_bid: int | None,
    min_ask: int | None,
) -> tuple[int | None, int]:
    """The module docstring's formulas, one Fraction at a time."""
    anchor = (
        Fraction(sorted(recent_prices)[(len(recent_prices) - 1) // 2])
        if recent_prices
        else Fraction(throttle_cost, 2)
    )
    market = anchor * (scarcity + Fraction(1, 2))
    bid_value = market + anchor * uncertainty / 2
    keep = 0 if overflows_cap else throttle_cost * (1 - quantile) * (1 + uncertainty)
    ceiling = throttle_cost if max_bid is None else min(throttle_cost, max_bid)
    bid = math.floor(min(bid_value, ceiling) / tick_size) * tick_size
    ask = math.ceil(max(market, keep, min_ask or 0, tick_size) / tick_size) * tick_size
    return (bid if bid >= tick_size else None), ask


needs = st.lists(
    st.tuples(st.integers(0, 10**7), st.integers(0, 10**7), st.booleans()), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    needs,
    prices,
    fractions01,
    st.fractions(Fraction(1, 100), Fraction(99, 100), max_denominator=100),
    st.integers(1, 1000),
    st.integers(1, 25),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.one_of(st.none(), st.integers(0, 2000)),
)
def test_fleet_prices_equal_each_agents_and_a_fraction_reference(
    rows: list[tuple[int, int, bool]],
    recent: list[int],
    scarcity: Fraction,
    quantile: Fraction,
    throttle_cost: int,
    tick: int,
    max_bid: int | None,
    min_ask: int | None,
) -> None:
    shared = {
        "throttle_cost": throttle_cost,
        "quantile": quantile,
        "recent_prices": recent,
        "scarcity": scarcity,
        "tick_size": tick,
        "max_bid": max_bid,
        "min_ask": min_ask,
    }
    bids, asks = credit_prices(
        need_mid=np.array([r[0] for r in rows]),
        need_high=np.array([r[1] for r in rows]),
        overflows_cap=np.array([r[2] for r in rows]),
        **shared,  # type: ignore[arg-type]
    )
    for (mid, high, overflows), bid, ask in zip(rows, bids.tolist(), asks.tolist(), strict=True):
        uncertainty = forecast_uncertainty(mid, high)
        one = value_credit(uncertainty=uncertainty, overflows_cap=overflows, **shared)  # type: ignore[arg-type]
        assert (one.bid_price, one.ask_price) == (bid or None, ask)
        reference = _reference_prices(uncertainty=uncertainty, overflows_cap=overflows, **shared)  # type: ignore[arg-type]
        assert reference == (bid or None, ask)


def test_fleet_prices_land_exactly_on_tick_boundaries() -> None:
    # an anchor of 100 with no spread prices exactly at 100: no rounding may move it
    bids, asks = credit_prices(
        throttle_cost=200,
        quantile=Fraction(9, 10),
        recent_prices=[100],
        scarcity=Fraction(1, 2),
        need_mid=np.array([5, 0, 3]),
        need_high=np.array([5, 0, 6]),
        overflows_cap=np.array([True, False, False]),
        tick_size=10,
    )
    # the third: uncertainty 1/2 adds 25 to the bid value and half again to the keep value
    assert bids.tolist() == [100, 100, 120]
    assert asks.tolist() == [100, 100, 100]


def test_fleet_prices_refuse_arrays_of_different_lengths() -> None:
    with pytest.raises(InvalidAgentInput, match="need arrays"):
        credit_prices(
            throttle_cost=100,
            quantile=Fraction(9, 10),
            recent_prices=[],
            scarcity=Fraction(1, 2),
            need_mid=np.array([1, 2]),
            need_high=np.array([1]),
            overflows_cap=np.array([False, False]),
        )
