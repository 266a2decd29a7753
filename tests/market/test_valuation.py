"""Limit prices from the owner's value: tranche worths, fees, ticks and the owner's limits."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.agents.valuation import (
    BPS,
    NEED_SHARE,
    ask_prices,
    band_share,
    bid_prices,
    clearing_anchor,
    expected_price,
    forecast_uncertainty,
    pool_scarcity,
    tail_share,
    value_credit,
)
from market.errors import InvalidAgentInput

Q90 = Fraction(9, 10)
shares = st.sampled_from([NEED_SHARE, band_share(Q90), tail_share(Q90)])


def test_tranche_worths_fall_from_need_to_band_to_tail() -> None:
    assert Fraction(3, 4) == NEED_SHARE
    assert band_share(Q90) == Fraction(3, 10)
    assert tail_share(Q90) == Fraction(1, 10)


def test_the_anchor_is_the_lower_median_or_half_the_value() -> None:
    assert clearing_anchor([30, 10, 20, 40], 500) == 20
    assert clearing_anchor([], 501) == Fraction(501, 2)
    assert expected_price([], 100, Fraction(1, 2)) == 50
    assert expected_price([80], 100, Fraction(1)) == 120
    with pytest.raises(InvalidAgentInput, match="clearing price"):
        clearing_anchor([10, 0], 100)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    value=st.integers(1, 10**7),
    share=shares,
    fee=st.integers(0, 999),
    tick=st.integers(1, 50),
    max_bid=st.none() | st.integers(0, 10**7),
)
def test_a_bid_plus_its_fee_never_exceeds_the_worth_and_is_the_highest_that_fits(
    value: int, share: Fraction, fee: int, tick: int, max_bid: int | None
) -> None:
    bid = int(bid_prices(np.array([value]), share, fee_bps=fee, tick_size=tick, max_bid=max_bid)[0])
    worth = value * share
    assert bid % tick == 0
    assert bid >= 0
    # price plus fee within the worth, and never above the owner's value itself
    assert Fraction(bid * (BPS + fee), BPS) <= worth <= value
    if max_bid is not None:
        assert bid <= max_bid
    # one tick more would pay more than the worth (or break the owner's limit)
    higher = bid + tick
    assert Fraction(higher * (BPS + fee), BPS) > worth or (max_bid is not None and higher > max_bid)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    value=st.integers(1, 10**7),
    share=shares,
    tick=st.integers(1, 50),
    min_ask=st.none() | st.integers(0, 10**7),
    worthless=st.booleans(),
)
def test_an_ask_is_never_below_the_keep_value_and_is_the_lowest_on_the_tick(
    value: int, share: Fraction, tick: int, min_ask: int | None, worthless: bool
) -> None:
    ask = int(
        ask_prices(
            np.array([value]),
            share,
            tick_size=tick,
            min_ask=min_ask,
            worthless=np.array([worthless]),
        )[0]
    )
    keep = Fraction(0) if worthless else value * share
    assert ask % tick == 0
    assert ask >= tick
    assert ask >= keep
    assert ask >= (min_ask or 0)
    if ask - tick >= max(tick, min_ask or 0):
        assert ask - tick < keep


def test_value_credit_reports_the_worths_behind_its_prices() -> None:
    v = value_credit(
        value=200,
        upper_quantile=Q90,
        recent_prices=(90, 110, 100),
        scarcity=Fraction(1, 2),
        bid_share=NEED_SHARE,
        keep_share=band_share(Q90),
        fee_bps=0,
    )
    assert (v.bid_value, v.keep_value, v.bid_price, v.ask_price) == (150, 60, 150, 60)
    assert v.expected_price == 100
    tail = value_credit(
        value=200,
        upper_quantile=Q90,
        recent_prices=(),
        scarcity=Fraction(1, 2),
        bid_share=NEED_SHARE,
        keep_share=tail_share(Q90),
        overflows_cap=True,
    )
    assert (tail.keep_value, tail.ask_price) == (0, 1)


def test_uncertainty_and_scarcity_helpers() -> None:
    assert forecast_uncertainty(50, 100) == Fraction(1, 2)
    assert forecast_uncertainty(0, 0) == 0
    assert pool_scarcity(0, 0) == 1
    assert pool_scarcity(100, 400) == Fraction(3, 4)
    assert pool_scarcity(500, 400) == 0
    with pytest.raises(InvalidAgentInput, match="pool"):
        pool_scarcity(-1, 2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bid_prices(np.array([0]), NEED_SHARE, fee_bps=0), "value"),
        (lambda: bid_prices(np.array([5]), NEED_SHARE, fee_bps=-1), "fee_bps"),
        (lambda: bid_prices(np.array([5]), NEED_SHARE, fee_bps=0, tick_size=0), "tick_size"),
        (lambda: ask_prices(np.array([5]), Fraction(3, 2)), "share"),
        (lambda: ask_prices(np.array([5.0]), NEED_SHARE), "value"),
    ],
)
def test_bad_input_is_refused(call: object, match: str) -> None:
    with pytest.raises(InvalidAgentInput, match=match):
        call()  # type: ignore[operator]
