"""The pool rules the live accrual and the replay share: the free pool pro rata and by
value, the priced pool within values and funds and across tiers at the exchange rates,
and an interval with host capacity and lenders that conserves every credit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from market.cem.accrual import TierSegments, accrue_interval, serve_hosts
from market.cem.pool_rules import (
    PricedPool,
    ValueOrder,
    draw_pro_rata,
    value_order,
)

RATES = np.array([1_000_000, 2_500_000], dtype=np.int64)

pool_case = st.integers(2, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 500), min_size=n, max_size=n),
        st.lists(st.integers(0, 5_000), min_size=n, max_size=n),
        st.lists(st.integers(0, 10**6), min_size=n, max_size=n),
        st.integers(1, n - 1),
        st.lists(st.integers(0, 8_000), min_size=2, max_size=2),
        st.lists(st.integers(0, 300), min_size=2, max_size=2),
    )
)


@settings(max_examples=150, deadline=None)
@given(pool_case, st.sampled_from(["value", "priced"]))
def test_the_pool_never_serves_a_lower_value_ahead_of_a_higher_one(case, rule: str) -> None:
    values, want, funds, split, levels, prices = case
    tier_of = np.array([0] * split + [1] * (len(values) - split), dtype=np.int64)
    segments = TierSegments.of(tier_of, 2)
    value = np.array(values, dtype=np.int64)
    order, inverse = value_order(value, tier_of)
    want_a, level = np.array(want, dtype=np.int64), np.array(levels, dtype=np.int64)
    if rule == "value":
        got, shift = ValueOrder(order, inverse)(want_a, level, segments), np.zeros(2, np.int64)
    else:
        priced = PricedPool(
            value,
            order,
            inverse,
            np.array(prices, dtype=np.int64),
            np.array(funds, dtype=np.int64),
            np.zeros(len(values), np.int64),
            RATES,
        )(want_a, level, segments)
        got, shift = priced.from_pool, priced.conversions.shift
        # value in, value out: what left one pool arrived in the other, less the remainder
        out, into = priced.conversions.out, priced.conversions.into
        assert int((out * RATES).sum()) - int((into * RATES).sum()) == priced.conversions.remainder
        assert priced.conversions.remainder >= 0
    assert (got >= 0).all()
    assert (got <= want_a).all()
    assert (segments.total(got) <= level + np.maximum(shift, 0)).all()
    for i in range(len(values)):
        eligible = rule == "value" or values[i] >= prices[tier_of[i]]
        if prices[tier_of[i]] and rule == "priced":
            eligible = eligible and funds[i] * 1000 // prices[tier_of[i]] > got[i]
            assert values[i] >= prices[tier_of[i]] or got[i] == 0  # never above its value
        if not eligible or got[i] == want[i]:
            continue
        # instance i wanted more and could pay: nobody of lower value in its tier got any
        for j in range(len(values)):
            if tier_of[j] == tier_of[i] and values[j] < values[i]:
                assert got[j] == 0, (i, j)


@given(
    st.lists(st.integers(0, 5_000), min_size=1, max_size=12),
    st.integers(0, 60_000),
)
def test_the_free_pool_is_shared_pro_rata_not_by_id(want: list[int], level: int) -> None:
    w = np.array(want, dtype=np.int64)
    segments = TierSegments.of(np.zeros(len(want), np.int64), 1)
    got = draw_pro_rata(w, np.array([level]), segments)
    total = int(w.sum())
    assert int(got.sum()) == min(total, level)
    if total > level:
        share = w * level // max(total, 1)
        assert (got >= share).all()
        assert (got <= share + 1).all()
    else:
        assert (got == w).all()


@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=10),
    st.integers(0, 100_000),
)
def test_hosts_serve_at_most_their_capacity_and_share_it_evenly(
    allowed: list[int], capacity: int
) -> None:
    a = np.array(allowed, dtype=np.int64)
    segments = TierSegments.of(np.zeros(len(allowed), np.int64), 1)
    served = serve_hosts(a, np.array([capacity]), segments)
    assert int(served.sum()) == min(int(a.sum()), capacity)
    assert (served <= a).all()
    if a.sum() > capacity:
        share = a * capacity // int(a.sum())
        assert ((served >= share) & (served <= share + 1)).all()


interval_case = st.integers(2, 7).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 30_000), min_size=n, max_size=n),  # balance
        st.lists(st.integers(0, 3_000), min_size=n, max_size=n),  # earned
        st.lists(st.integers(0, 9_000), min_size=n, max_size=n),  # demand
        st.lists(st.booleans(), min_size=n, max_size=n),  # lends
        st.lists(st.integers(1, 500), min_size=n, max_size=n),  # value
        st.integers(1, n - 1),  # tier split
        st.lists(st.integers(0, 40_000), min_size=2, max_size=2),  # pools
        st.lists(st.integers(0, 20_000), min_size=2, max_size=2),  # host capacity
        st.lists(st.integers(0, 300), min_size=2, max_size=2),  # draw price
    )
)


@settings(max_examples=200, deadline=None)
@given(interval_case)
def test_an_interval_with_hosts_lenders_and_a_priced_pool_conserves_credits(case) -> None:
    balance, earned, demand, lends, values, split, pools, hosts, prices = case
    n = len(balance)
    tier_of = np.array([0] * split + [1] * (n - split), dtype=np.int64)
    segments = TierSegments.of(tier_of, 2)
    value = np.array(values, dtype=np.int64)
    order, inverse = value_order(value, tier_of)
    capacity = np.array([50_000, 50_000], dtype=np.int64)
    pool = np.minimum(np.array(pools, dtype=np.int64), capacity)
    before = np.array(balance, dtype=np.int64)
    booked = accrue_interval(
        balance=before,
        earned=np.array(earned, dtype=np.int64),
        demand=np.array(demand, dtype=np.int64),
        cap=np.full(n, 25_000, dtype=np.int64),
        pool_draw=np.ones(n, dtype=bool),
        segments=segments,
        pool=pool,
        pool_capacity=capacity,
        draw=PricedPool(
            value,
            order,
            inverse,
            np.array(prices, dtype=np.int64),
            np.full(n, 10**6, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            RATES,
        ),
        host_capacity=np.array(hosts, dtype=np.int64),
        lend=np.array(lends),
    )
    shift = booked.conversions.shift
    held = segments.total(booked.balance) + booked.pool
    assert np.array_equal(
        held - (segments.total(before) + pool), segments.total(booked.minted - booked.spent) + shift
    )
    assert np.array_equal(booked.balance, before + booked.change)
    assert (booked.balance >= 0).all()
    assert (booked.pool >= 0).all()
    assert (booked.pool <= np.maximum(capacity, pool + np.maximum(shift, 0))).all()
    assert (segments.total(booked.spent) <= np.array(hosts)).all()
    assert (booked.throttled == booked.demand - booked.spent).all()
    assert (booked.lent[~np.array(lends)] == 0).all()
