"""CEM automation: bounded, smoothed, monotone rate steps; manual rates; swaps within bounds."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.cem.automation import (
    CemAutomation,
    CemPolicy,
    TierState,
    apply_decision,
    instance_pool_demand,
    pinned_rates,
    plan_swaps,
    pool_demands,
    rate_step,
    release_manual_rate,
    releases_of,
)
from market.cem.exchange import CreditExchange
from market.cem.tiers import load_config
from market.clock import ManualClock
from market.decisions import (
    DecisionQuery,
    MemoryDecisionLog,
)
from market.errors import InvalidAgentInput, InvalidPolicy
from market.ledger import EntryRequest, Ledger, MemoryStore, Transfer, mint_account, pool_account

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
POLICY = CemPolicy()

excess = st.fractions(-1, 1, max_denominator=1000)
rates = st.integers(POLICY.min_rate, POLICY.max_rate)
bases = st.integers(500_000, 5_000_000)
policies = st.builds(
    CemPolicy,
    gain_bps=st.integers(1, 20_000),
    max_step_bps=st.integers(1, 9_999),
    smoothing=st.fractions(Fraction(1, 100), 1, max_denominator=100),
    deadband=st.fractions(0, Fraction(1, 2), max_denominator=100),
    restore_bps=st.integers(0, 9_999),
    band_low=st.fractions(Fraction(1, 2), 1, max_denominator=100),
    band_high=st.fractions(1, 2, max_denominator=100),
)


def _in_band(rate: int, base: int, policy: CemPolicy) -> bool:
    low, high = policy.band(base)
    return low <= rate <= high


# rates


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a shared machine
@given(rates, bases, excess, excess, st.fractions(-1, 1, max_denominator=100), policies)
def test_rate_adjustment_is_monotone_in_excess_demand(
    old: int, base: int, a: Fraction, b: Fraction, previous: Fraction, policy: CemPolicy
) -> None:
    low, high = min(a, b), max(a, b)
    assert (
        rate_step(old, base, low, previous, policy)[0]
        <= rate_step(old, base, high, previous, policy)[0]
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a shared machine
@given(rates, bases, excess, st.fractions(-1, 1, max_denominator=100), policies)
def test_rate_adjustment_is_bounded_per_step_and_follows_its_forces(
    old: int, base: int, e: Fraction, previous: Fraction, policy: CemPolicy
) -> None:
    new, smoothed, step = rate_step(old, base, e, previous, policy)
    assert abs(new - old) * 10_000 <= old * policy.max_step_bps
    assert abs(step) <= policy.max_step_bps
    assert policy.min_rate <= new <= policy.max_rate
    assert smoothed == policy.smoothing * e + (1 - policy.smoothing) * previous
    low, high = policy.band(base)
    if low <= old <= high:
        # inside the band the rate moves the way demand and the restoring force push it
        if step > 0:
            assert old <= new <= high
        if step < 0:
            assert low <= new <= old
        if step == 0:
            assert new == old
    elif old > high:
        # above it (a released manual rate) the rate heads down into it, never away
        assert low <= new <= old
    else:
        assert old <= new <= high


@given(
    bases,
    st.fractions(0, 1, max_denominator=100),
    st.fractions(-1, 1, max_denominator=100),
)
def test_without_restoring_force_the_rate_follows_excess_demand(
    base: int, e: Fraction, previous: Fraction
) -> None:
    policy = CemPolicy(restore_bps=0, deadband=Fraction(0))
    for old in policy.band(base):
        new, smoothed, _step = rate_step(old, base, e, previous, policy)
        if smoothed > 0:
            assert new >= old
        if smoothed < 0:
            assert new <= old


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    policies,
    bases,
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), min_size=150, max_size=300),
)
def test_the_rate_never_leaves_its_band_over_long_demand_sequences(
    policy: CemPolicy, base: int, demand: list[tuple[int, int]]
) -> None:
    automation = CemAutomation(policy)
    rate = base
    for hour, (wanted, available) in enumerate(demand):
        state = TierState("bronze", rate, wanted, available, 2 * 10**7)
        (step,) = automation.step([state], NOW + timedelta(hours=hour)).rates
        assert step.base_rate == base
        assert _in_band(step.new_rate, base, policy)
        assert abs(step.new_rate - rate) * 10_000 <= rate * policy.max_step_bps
        rate = step.new_rate


def test_a_saturated_tier_saturates_its_band_not_the_whole_range() -> None:
    # one tier short of credits for a month, the others idle: the rates part only as
    # far as their bands allow, so a swap still converts near the hardware's value
    automation = CemAutomation()
    rates_now = {"bronze": 1_000_000, "silver": 1_500_000, "gold": 2_200_000}
    for hour in range(24 * 30):
        states = [
            TierState(
                name,
                rate,
                500_000 if name == "bronze" else 0,
                0 if name == "bronze" else 900_000,
                10**7,
            )
            for name, rate in rates_now.items()
        ]
        decision = automation.step(states, NOW + timedelta(hours=hour))
        rates_now = {r.tier: r.new_rate for r in decision.rates}
    assert rates_now == {"bronze": 1_250_000, "silver": 1_200_000, "gold": 1_760_000}


@settings(max_examples=30, deadline=None)
@given(
    st.builds(
        CemPolicy,
        gain_bps=st.integers(1, 20_000),
        max_step_bps=st.integers(50, 9_999),
        smoothing=st.fractions(Fraction(1, 10), 1, max_denominator=100),
        deadband=st.fractions(Fraction(1, 100), Fraction(1, 2), max_denominator=100),
        restore_bps=st.integers(100, 9_999),
        band_low=st.fractions(Fraction(1, 2), 1, max_denominator=100),
        band_high=st.fractions(1, 2, max_denominator=100),
    ),
    bases,
    st.integers(1, 200),
)
def test_the_rate_returns_toward_its_base_when_demand_subsides(
    policy: CemPolicy, base: int, busy_hours: int
) -> None:
    automation = CemAutomation(policy)
    rate, at = base, NOW
    for _ in range(busy_hours):
        (step,) = automation.step([TierState("gold", rate, 10**6, 0, 10**7)], at).rates
        rate, at = step.new_rate, at + timedelta(hours=1)
    gap = abs(rate - base)
    # demand met from here on: once the smoothed excess has decayed the rate only
    # ever closes on its base, and never overshoots it
    settled = False
    for _ in range(400):
        (step,) = automation.step([TierState("gold", rate, 10**6, 10**6, 10**7)], at).rates
        at += timedelta(hours=1)
        if abs(step.smoothed) < policy.deadband or step.smoothed == 0:
            settled = True
        if settled:
            assert abs(step.new_rate - base) <= abs(rate - base)
            assert (step.new_rate - base) * (rate - base) >= 0
        rate = step.new_rate
    assert settled
    assert abs(rate - base) <= max(gap // 2, base // 1_000 + 1)


def test_a_tier_relaxes_to_its_base_after_a_burst() -> None:
    automation = CemAutomation()
    rate, at = 2_200_000, NOW
    for _ in range(48):
        (step,) = automation.step([TierState("gold", rate, 10**6, 0, 10**7)], at).rates
        rate, at = step.new_rate, at + timedelta(hours=1)
    assert rate == 2_750_000  # the top of the band: 1.25 x the base
    for _ in range(24 * 7):
        (step,) = automation.step([TierState("gold", rate, 10**6, 10**6, 10**7)], at).rates
        rate, at = step.new_rate, at + timedelta(hours=1)
    assert 2_200_000 <= rate <= 2_200_000 * 1_001 // 1_000


def test_a_sustained_excess_moves_the_rate_further_than_a_spike() -> None:
    automation = CemAutomation()
    spike = [TierState("gold", 2_000_000, 100_000, 0, 1_000_000)]
    calm = [TierState("gold", 2_000_000, 0, 0, 1_000_000)]
    first = automation.step(spike, NOW).rates[0]
    after_spike = automation.step(calm, NOW + timedelta(hours=1)).rates[0]
    assert first.new_rate == 2_000_000 * 10_500 // 10_000  # 1/2 * 1 * 1000 bps, capped at 500
    assert after_spike.smoothed == Fraction(1, 4)
    assert after_spike.step_bps == 250  # the state still shows the base rate: no pull back
    quiet = CemAutomation().step([TierState("gold", 2_000_000, 1_020, 1_000, 10**6)], NOW)
    assert quiet.rates[0].new_rate == 2_000_000  # inside the dead band


def test_a_manual_rate_is_respected_until_released() -> None:
    automation = CemAutomation()
    saturated = [TierState("gold", 3_000_000, 500_000, 0, 10**7)]
    pinned = automation.step(saturated, NOW, manual_rates={"gold": 3_000_000}).rates[0]
    assert pinned.manual
    assert pinned.new_rate == 3_000_000
    assert pinned.step_bps == 0
    freed = automation.step(saturated, NOW + timedelta(hours=1)).rates[0]
    assert freed.new_rate > 3_000_000


# swaps


tier_states = st.lists(
    st.builds(
        TierState,
        tier=st.sampled_from(["bronze", "silver", "gold", "platinum", "iron"]),
        exchange_rate=st.integers(100_000, 10_000_000),
        demand=st.integers(0, 10**7),
        available=st.integers(0, 10**7),
        capacity=st.integers(0, 2 * 10**7),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t.tier,
)


@settings(max_examples=150)
@given(tier_states, st.integers(0, 5_000))
def test_swaps_never_exceed_source_availability_or_destination_capacity(
    tiers: list[TierState], reserve_bps: int
) -> None:
    policy = CemPolicy(reserve_bps=reserve_bps)
    plans = plan_swaps(tiers, policy)
    taken: dict[str, int] = defaultdict(int)
    given_: dict[str, int] = defaultdict(int)
    for p in plans:
        assert p.source_tier != p.destination_tier
        assert p.amount_in >= policy.min_swap
        assert p.amount_out > 0
        # value in covers value out: nothing is created by conversion
        assert p.amount_in * p.source_rate >= p.amount_out * p.destination_rate
        assert (
            p.amount_in * p.source_rate - p.amount_out * p.destination_rate
        ) < p.destination_rate
        taken[p.source_tier] += p.amount_in
        given_[p.destination_tier] += p.amount_out
    for t in tiers:
        keep = t.demand + t.demand * reserve_bps // 10_000
        assert taken[t.tier] <= max(0, t.available - keep) <= t.available
        assert given_[t.tier] <= t.headroom
        assert given_[t.tier] <= max(0, t.demand - t.available)
        assert not (taken[t.tier] and given_[t.tier])


def test_swaps_go_from_the_idle_tier_to_the_saturated_one() -> None:
    tiers = [
        TierState("silver", 1_500_000, 0, 900_000, 10**7),
        TierState("gold", 2_200_000, 400_000, 100_000, 10**7),
    ]
    (plan,) = plan_swaps(tiers, POLICY)
    assert (plan.source_tier, plan.destination_tier) == ("silver", "gold")
    assert plan.amount_in == 300_000 * 2_200_000 // 1_500_000
    assert 300_000 - 2 <= plan.amount_out <= 300_000


def test_instance_pool_demand_counts_every_credit_short() -> None:
    assert instance_pool_demand(10_000, 6_000, 144_000, [20_000, 20_000]) == 18_000
    assert instance_pool_demand(10_000, 6_000, 144_000, [1_000] * 24) == 0
    # after a shortfall the balance restarts from empty, as burstable accounting does
    assert instance_pool_demand(0, 6_000, 144_000, [10_000, 0, 10_000]) == 4_000 + 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 300),
            st.integers(1, 40),
            st.integers(1, 300),
            st.lists(st.integers(0, 90), min_size=5, max_size=5),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_pool_demands_step_every_instance_as_a_credit_by_credit_run(
    rows: list[tuple[int, int, int, list[int]]],
) -> None:
    drawn = pool_demands(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
    )
    for (credits, earn, cap, need), got in zip(rows, drawn.tolist(), strict=True):
        # one milli-credit at a time: earn, spend or borrow, then clip at the cap
        balance, borrowed = credits, 0
        for hour in need:
            balance += earn
            for _ in range(hour):
                if balance > 0:
                    balance -= 1
                else:
                    borrowed += 1
            balance = min(cap, balance)
        assert got == borrowed == instance_pool_demand(credits, earn, cap, need)


# booking through the CEM


def _exchange(clock: ManualClock) -> CreditExchange:
    tiers = load_config()
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    for name, amount in (("silver", 900_000), ("gold", 100_000)):
        asset = tiers.tier(name).asset
        ledger.post(
            EntryRequest((Transfer(mint_account(asset), pool_account(name), amount),), "seed", "t")
        )
    return CreditExchange(ledger, tiers, clock)


def _states(exchange: CreditExchange, demand: dict[str, int]) -> list[TierState]:
    return [
        TierState(p.tier, p.exchange_rate, demand.get(p.tier, 0), p.available, p.capacity)
        for p in exchange.tiers.pools(exchange.ledger)
    ]


def test_a_decision_is_booked_and_recorded_with_its_inputs() -> None:
    clock = ManualClock(NOW)
    exchange = _exchange(clock)
    log = MemoryDecisionLog()
    automation = CemAutomation()
    decision = automation.step(_states(exchange, {"gold": 400_000}), clock())
    (plan,) = decision.swaps
    apply_decision(exchange, decision, automation.policy, log)
    pools = {p.tier: p for p in exchange.tiers.pools(exchange.ledger)}
    assert pools["silver"].available == 900_000 - plan.amount_in
    assert pools["gold"].available == 100_000 + plan.amount_out
    assert exchange.tiers.tier("gold").exchange_rate > 2_200_000
    assert exchange.tiers.tier("bronze").exchange_rate == 1_000_000  # no demand, no supply
    (gold_rate,) = exchange.rate_changes("gold")
    assert gold_rate.reason.startswith("cem-auto:")
    (swap,) = log.query(DecisionQuery(kind="cem", outcome="swap"))
    assert swap.detail["amount_in"] == plan.amount_in
    assert swap.detail["destination"] == {
        "demand": 400_000,
        "available": 100_000,
        "capacity": pools["gold"].capacity,
    }
    (rate,) = log.query(DecisionQuery(kind="cem", subject="gold", outcome="rate"))
    assert rate.detail["excess_demand"] == "3/4"
    assert exchange.ledger.verify().ok


def test_a_refused_swap_is_recorded_and_books_nothing() -> None:
    clock = ManualClock(NOW)
    exchange = _exchange(clock)
    log = MemoryDecisionLog()
    decision = CemAutomation().step(_states(exchange, {"gold": 400_000}), clock())
    # the source pool is drained between the plan and the booking
    silver = exchange.tiers.tier("silver").asset
    exchange.ledger.post(
        EntryRequest((Transfer(pool_account("silver"), mint_account(silver), 900_000),), "t", "t")
    )
    apply_decision(exchange, decision, CemPolicy(), log)
    (failed,) = log.query(DecisionQuery(kind="cem", outcome="swap_failed"))
    assert "silver" in failed.detail["error"]
    assert exchange.tiers.pool(exchange.ledger, "gold").available == 100_000
    assert exchange.ledger.verify().ok


def test_an_administrators_rate_pins_the_tier_until_released() -> None:
    clock = ManualClock(NOW)
    exchange = _exchange(clock)
    log = MemoryDecisionLog()
    policy = CemPolicy()
    exchange.set_exchange_rate("gold", "3", actor="admin", reason="gold hardware refresh")
    names = [t.name for t in exchange.tiers.tiers()]
    pins = pinned_rates(exchange.rate_changes(), releases_of(log, names), policy)
    assert pins == {"gold": 3_000_000}
    automation = CemAutomation(policy)
    decision = automation.step(_states(exchange, {"gold": 400_000}), clock(), pins)
    apply_decision(exchange, decision, policy, log)
    assert exchange.tiers.tier("gold").exchange_rate == 3_000_000
    assert log.query(DecisionQuery(subject="gold", outcome="manual_rate"))
    clock.advance(timedelta(hours=1))
    release_manual_rate(log, "gold", "admin", clock())
    assert pinned_rates(exchange.rate_changes(), releases_of(log, names), policy) == {}
    decision = automation.step(_states(exchange, {"gold": 400_000}), clock())
    apply_decision(exchange, decision, policy, log)
    assert exchange.tiers.tier("gold").exchange_rate > 3_000_000
    # the automation's own change is not a pin
    assert pinned_rates(exchange.rate_changes(), releases_of(log, names), policy) == {}
    resumed = CemAutomation.resume(policy, log, names)
    assert resumed.smoothed["gold"] == automation.smoothed["gold"]
    assert resumed.base_rates["gold"] == automation.base_rates["gold"] == 3_000_000


# bad input


def test_bad_input_is_refused_and_remembers_nothing() -> None:
    automation = CemAutomation()
    with pytest.raises(InvalidAgentInput, match="demand"):
        TierState("gold", 1, -1, 0, 0)
    with pytest.raises(InvalidAgentInput, match="more than once"):
        automation.step([TierState("gold", 1_000_000, 5, 0, 9)] * 2, NOW)
    with pytest.raises(InvalidAgentInput, match="timezone"):
        automation.step([TierState("gold", 1_000_000, 5, 0, 9)], datetime(2026, 1, 1))  # noqa: DTZ001
    assert automation.smoothed == {}
    with pytest.raises(InvalidPolicy, match="max_step_bps"):
        CemPolicy(max_step_bps=0)
    with pytest.raises(InvalidPolicy, match="smoothing"):
        CemPolicy(smoothing=Fraction(0))
    with pytest.raises(InvalidPolicy, match="restore_bps"):
        CemPolicy(restore_bps=10_000)
    with pytest.raises(InvalidPolicy, match="band_low"):
        CemPolicy(band_low=Fraction(0))
    with pytest.raises(InvalidPolicy, match="band_high"):
        CemPolicy(band_high=Fraction(9, 10))
    with pytest.raises(InvalidAgentInput, match="base_rate"):
        rate_step(1_000_000, 0, Fraction(0), Fraction(0), POLICY)
    with pytest.raises(InvalidAgentInput, match="base rate of gold"):
        CemAutomation(base_rates={"gold": -1})


@settings(max_examples=25, deadline=None)
@given(
    available=st.lists(st.integers(0, 3_000_000), min_size=4, max_size=4),
    demand=st.lists(st.integers(0, 3_000_000), min_size=4, max_size=4),
)
def test_booked_swaps_keep_every_pool_within_its_capacity_and_lose_nothing(
    available: list[int], demand: list[int]
) -> None:
    clock = ManualClock(NOW)
    tiers = load_config()
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    names = [t.name for t in tiers.tiers()]
    seed = [
        Transfer(mint_account(tiers.tier(n).asset), pool_account(n), a)
        for n, a in zip(names, available, strict=True)
        if a
    ]
    if seed:
        ledger.post(EntryRequest(tuple(seed), "seed", "t"))
    exchange = CreditExchange(ledger, tiers, clock)
    value_before = sum(p.available * p.exchange_rate for p in tiers.pools(ledger))
    decision = CemAutomation().step(_states(exchange, dict(zip(names, demand, strict=True))), NOW)
    records = apply_decision(exchange, decision, CemPolicy(), None)
    assert not [r for r in records if r.outcome == "swap_failed"]
    pools = {p.tier: p for p in tiers.pools(ledger)}
    for n, a in zip(names, available, strict=True):
        assert 0 <= pools[n].available <= max(a, pools[n].capacity)
    remainders = sum(s.remainder for s in exchange.swaps())
    value_after = sum(
        pools[s.tier].available * rate for s, rate in ((p, p.exchange_rate) for p in decision.tiers)
    )
    assert value_after + remainders == value_before
    assert ledger.verify().ok
