"""One interval of a fleet at once (market.cem.accrual): the same numbers as
``plan_interval`` where they overlap, fair pool shares, and credits conserved."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.cem.accounting import plan_interval
from market.cem.accrual import (
    TierSegments,
    accrue_interval,
    cpu_micro_of,
    interval_demand,
    interval_earnings,
)
from market.cem.pool_rules import draw_in_order, draw_pro_rata
from market.errors import InvalidParameter

amounts = st.integers(min_value=0, max_value=10**9)


def one(**values: int) -> dict[str, np.ndarray]:
    return {name: np.array([value], dtype=np.int64) for name, value in values.items()}


@settings(max_examples=300, deadline=None)
@given(
    balance=amounts,
    earned=amounts,
    demand=amounts,
    cap=amounts,
    available=amounts,
    headroom=amounts,
    pool_draw=st.booleans(),
)
def test_one_instance_books_what_plan_interval_plans(
    balance: int,
    earned: int,
    demand: int,
    cap: int,
    available: int,
    headroom: int,
    pool_draw: bool,
) -> None:
    planned = plan_interval(
        balance=balance,
        earned=earned,
        demand=demand,
        cap=cap,
        pool_available=available,
        pool_headroom=headroom,
        pool_draw=pool_draw,
    )
    booked = accrue_interval(
        **one(balance=balance, earned=earned, demand=demand, cap=cap),
        pool_draw=np.array([pool_draw]),
        segments=TierSegments.of(np.array([0]), 1),
        pool=np.array([available], dtype=np.int64),
        pool_capacity=np.array([available + headroom], dtype=np.int64),
    )
    got = (booked.spent, booked.to_pool, booked.from_pool, booked.forfeited)
    got += (booked.throttled, booked.balance)
    assert tuple(int(a[0]) for a in got) == planned
    assert int(booked.pool[0]) == available - planned[2] + planned[1]


fleet_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # tier
        st.integers(0, 300_000),  # balance
        st.integers(0, 5_000),  # earned
        st.integers(0, 60_000),  # demand
        st.integers(0, 300_000),  # cap
        st.booleans(),  # pool_draw
    ),
    min_size=1,
    max_size=40,
)


def fleet(rows: list[tuple[int, int, int, int, int, bool]]) -> dict[str, np.ndarray]:
    rows = sorted(rows, key=lambda r: r[0])
    columns = list(zip(*rows, strict=True))
    return {
        "tier_of": np.array(columns[0], dtype=np.int64),
        "balance": np.array(columns[1], dtype=np.int64),
        "earned": np.array(columns[2], dtype=np.int64),
        "demand": np.array(columns[3], dtype=np.int64),
        "cap": np.array(columns[4], dtype=np.int64),
        "pool_draw": np.array(columns[5], dtype=bool),
    }


@settings(max_examples=200, deadline=None)
@given(rows=fleet_rows, pools=st.lists(st.integers(0, 10**7), min_size=4, max_size=4))
def test_an_ample_pool_books_each_instance_as_plan_interval_does(
    rows: list[tuple[int, int, int, int, int, bool]], pools: list[int]
) -> None:
    # where no pool runs short and none fills up, no instance's result depends on another's
    f = fleet(rows)
    pool = np.array(pools, dtype=np.int64) + 10**9
    capacity = pool + 10**9
    booked = accrue_interval(
        balance=f["balance"],
        earned=f["earned"],
        demand=f["demand"],
        cap=f["cap"],
        pool_draw=f["pool_draw"],
        segments=TierSegments.of(f["tier_of"], 4),
        pool=pool,
        pool_capacity=capacity,
    )
    for i, k in enumerate(f["tier_of"].tolist()):
        planned = plan_interval(
            balance=int(f["balance"][i]),
            earned=int(f["earned"][i]),
            demand=int(f["demand"][i]),
            cap=int(f["cap"][i]),
            pool_available=int(pool[k]),
            pool_headroom=int(capacity[k] - pool[k]),
            pool_draw=bool(f["pool_draw"][i]),
        )
        got = (booked.spent, booked.to_pool, booked.from_pool, booked.forfeited)
        got += (booked.throttled, booked.balance)
        assert tuple(int(a[i]) for a in got) == planned


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # a shared machine
@given(
    rows=fleet_rows,
    pools=st.lists(st.integers(0, 200_000), min_size=4, max_size=4),
    room=st.lists(st.integers(0, 200_000), min_size=4, max_size=4),
    in_order=st.booleans(),
)
def test_credits_are_conserved_and_no_balance_or_pool_breaks_its_bounds(
    rows: list[tuple[int, int, int, int, int, bool]],
    pools: list[int],
    room: list[int],
    in_order: bool,
) -> None:
    f = fleet(rows)
    pool = np.array(pools, dtype=np.int64)
    capacity = pool + np.array(room, dtype=np.int64)
    segments = TierSegments.of(f["tier_of"], 4)
    booked = accrue_interval(
        balance=f["balance"],
        earned=f["earned"],
        demand=f["demand"],
        cap=f["cap"],
        pool_draw=f["pool_draw"],
        segments=segments,
        pool=pool,
        pool_capacity=capacity,
        draw=draw_in_order if in_order else draw_pro_rata,
    )
    # per tier: earned = spent + (held after - held before) + pooled + forfeited
    held = segments.total(booked.balance) - segments.total(f["balance"])
    pooled = booked.pool - pool
    assert np.array_equal(
        segments.total(booked.earned),
        segments.total(booked.spent) + held + pooled + segments.total(booked.forfeited),
    )
    assert np.array_equal(booked.balance - f["balance"], booked.change)
    assert (booked.balance >= 0).all()
    assert (booked.pool >= 0).all()
    assert (booked.pool <= np.maximum(capacity, pool)).all()
    assert np.array_equal(booked.spent + booked.throttled, f["demand"])
    # nobody forfeits while its pool has room, nobody not allowed to draw draws
    assert not ((booked.forfeited > 0) & (booked.pool[f["tier_of"]] < capacity[f["tier_of"]])).any()
    assert (booked.from_pool[~f["pool_draw"]] == 0).all()
    # a throttled instance that may draw found its pool empty
    short = (booked.throttled > 0) & f["pool_draw"]
    assert (
        booked.pool[f["tier_of"][short]] - segments.total(booked.to_pool)[f["tier_of"][short]] == 0
    ).all()


def test_a_short_pool_is_shared_pro_rata_and_its_remainder_one_each() -> None:
    segments = TierSegments.of(np.array([0, 0, 0, 1]), 2)
    want = np.array([10, 20, 30, 5], dtype=np.int64)
    got = draw_pro_rata(want, np.array([31, 100], dtype=np.int64), segments)
    # 31 of 60 wanted: 5, 10, 15 by share; one milli-credit left goes to the first short
    assert got.tolist() == [6, 10, 15, 5]
    assert draw_in_order(want, np.array([31, 100]), segments).tolist() == [10, 20, 1, 5]


def test_a_tier_without_instances_keeps_its_pool() -> None:
    segments = TierSegments.of(np.array([0, 2]), 3)
    assert segments.starts.tolist() == [0, 1, 1]
    assert segments.ends.tolist() == [1, 1, 2]
    booked = accrue_interval(
        balance=np.array([0, 0]),
        earned=np.array([1_000, 1_000]),
        demand=np.array([5_000, 0]),
        cap=np.array([288_000, 288_000]),
        pool_draw=np.array([True, True]),
        segments=segments,
        pool=np.array([10_000, 7, 0]),
        pool_capacity=np.array([20_000, 7, 500]),
    )
    assert booked.pool.tolist() == [6_000, 7, 0]
    assert booked.from_pool.tolist() == [4_000, 0]
    assert booked.balance.tolist() == [0, 1_000]


def test_the_pool_rule_is_a_parameter_and_is_held_to_what_it_may_serve() -> None:
    kwargs = {
        "balance": np.array([0, 0]),
        "earned": np.array([0, 0]),
        "demand": np.array([100, 100]),
        "cap": np.array([0, 0]),
        "pool_draw": np.array([True, True]),
        "segments": TierSegments.of(np.array([0, 0]), 1),
        "pool": np.array([100]),
        "pool_capacity": np.array([100]),
    }
    last_first = accrue_interval(**kwargs, draw=lambda want, level, s: np.array([0, 100]))
    assert last_first.from_pool.tolist() == [0, 100]
    assert last_first.throttled.tolist() == [100, 0]
    with pytest.raises(InvalidParameter, match="draw"):
        accrue_interval(**kwargs, draw=lambda want, level, s: np.array([100, 100]))


def test_ungrouped_tiers_and_negative_balances_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="grouped by tier"):
        TierSegments.of(np.array([1, 0]), 2)
    with pytest.raises(InvalidParameter, match="must not be negative"):
        accrue_interval(
            balance=np.array([-1]),
            earned=np.array([0]),
            demand=np.array([0]),
            cap=np.array([0]),
            pool_draw=np.array([False]),
            segments=TierSegments.of(np.array([0]), 1),
            pool=np.array([0]),
            pool_capacity=np.array([0]),
        )


@settings(max_examples=300, deadline=None)
@given(
    vcpus=st.integers(1, 4096),
    cpu=st.decimals(min_value=0, max_value=100, places=6, allow_nan=False),
    seconds=st.sampled_from([60, 300, 600, 3600]),
)
def test_demand_rounds_the_exact_decimal_half_up(vcpus: int, cpu: Decimal, seconds: int) -> None:
    # as BurstableAccountant rounds Decimal(repr(cpu)), from the float a reading arrives as
    as_float = float(cpu)
    exact = Decimal(vcpus) * Decimal(repr(as_float)) * seconds / 6
    expected = int(exact.quantize(Decimal(1), ROUND_HALF_UP))
    micro = cpu_micro_of(np.array([as_float]))
    assert int(interval_demand(np.array([vcpus]), micro, seconds)[0]) == expected


def test_a_t3_micro_earns_one_credit_per_five_minutes() -> None:
    assert interval_earnings(np.array([2]), np.array([1000]), 300).tolist() == [1_000]
