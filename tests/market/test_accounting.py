"""Burstable accounting: AWS standard-mode earn, spend and cap, overflow into the tier
pool, replenishment from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.cem.accounting import BurstableAccountant, plan_interval
from market.cem.tiers import TierManager, load_config
from market.clock import ManualClock
from market.errors import InstanceNotFound, InvalidParameter
from market.ledger import EntryRequest, Ledger, Transfer


@pytest.fixture
def tiers() -> TierManager:
    return load_config()


@pytest.fixture
def accountant(ledger: Ledger, tiers: TierManager) -> BurstableAccountant:
    tiers.open_accounts(ledger)
    return BurstableAccountant(ledger, tiers)


def credits(ledger: Ledger, instance: str) -> int:
    return ledger.balance(f"instance:{instance}:credits")


def test_t3_micro_earns_12_credits_an_hour(accountant: BurstableAccountant) -> None:
    # vm-silver-1: 2 vCPUs at a 10 % baseline, like a t3.micro.
    idle = accountant.settle("vm-silver-1", 3600, 0.0)
    assert (idle.earned, idle.demand, idle.spent) == (12_000, 0, 0)
    busy = accountant.settle("vm-silver-1", 600, 50.0)
    # 2 vCPUs at 50 % for 10 minutes burn 10 credits and earn 2.
    assert (busy.earned, busy.demand, busy.spent) == (2_000, 10_000, 10_000)
    assert credits(accountant.ledger, "vm-silver-1") == 4_000
    assert accountant.ledger.verify().ok


def test_above_the_cap_flows_into_the_pool(accountant: BurstableAccountant) -> None:
    for _ in range(24):
        accountant.settle("vm-silver-1", 3600, 0.0)
    assert credits(accountant.ledger, "vm-silver-1") == 288_000
    outcome = accountant.settle("vm-silver-1", 3600, 1.0)
    # Earned 12 credits, used 1.2: the 10.8 left above the cap go to the pool, not away.
    assert outcome.to_pool == 10_800
    assert outcome.forfeited == 0
    assert credits(accountant.ledger, "vm-silver-1") == 288_000
    assert accountant.ledger.balance("pool:silver") == 10_800


def test_an_empty_balance_is_replenished_from_the_pool(accountant: BurstableAccountant) -> None:
    ledger = accountant.ledger
    ledger.post(EntryRequest((Transfer("mint:credits:gold", "pool:gold", 30_000),), "grant", "t"))
    outcome = accountant.settle("vm-gold-1", 600, 100.0)
    # 4 vCPUs flat out for 10 minutes want 40 credits, earn 8, draw 30, throttle 2.
    assert (outcome.earned, outcome.demand) == (8_000, 40_000)
    assert (outcome.from_pool, outcome.throttled, outcome.balance) == (30_000, 2_000, 0)
    assert ledger.balance("pool:gold") == 0
    assert ledger.verify().ok


def test_unauthorised_instances_do_not_draw(accountant: BurstableAccountant) -> None:
    ledger = accountant.ledger
    ledger.post(
        EntryRequest((Transfer("mint:credits:platinum", "pool:platinum", 90_000),), "grant", "t")
    )
    outcome = accountant.settle("vm-platinum-1", 600, 100.0)
    assert outcome.from_pool == 0
    assert outcome.throttled == outcome.demand - outcome.earned
    assert ledger.balance("pool:platinum") == 90_000


def test_a_full_pool_forfeits_the_rest(accountant: BurstableAccountant, tiers: TierManager) -> None:
    ledger = accountant.ledger
    room = tiers.pool_capacity("bronze") - 1_000
    ledger.post(EntryRequest((Transfer("mint:credits:bronze", "pool:bronze", room),), "g", "t"))
    for _ in range(24):
        accountant.settle("vm-bronze-1", 3600, 0.0)
    outcome = accountant.settle("vm-bronze-1", 3600, 0.0)
    assert (outcome.to_pool, outcome.forfeited) == (1_000, 5_000)
    assert tiers.pool(ledger, "bronze").headroom == 0
    assert ledger.verify().ok


def test_bought_credits_above_the_cap_are_kept(accountant: BurstableAccountant) -> None:
    ledger = accountant.ledger
    ledger.post(
        EntryRequest(
            (Transfer("mint:credits:silver", "instance:vm-silver-1:credits", 400_000),), "g", "t"
        )
    )
    outcome = accountant.settle("vm-silver-1", 3600, 0.0)
    assert outcome.to_pool == 12_000
    assert credits(ledger, "vm-silver-1") == 400_000


@pytest.mark.parametrize(
    ("seconds", "utilisation", "message"),
    [
        (0, 10.0, "seconds"),
        (-60, 10.0, "seconds"),
        (1.5, 10.0, "must be an int"),
        (60, float("nan"), "cpu_utilisation"),
        (60, float("inf"), "cpu_utilisation"),
        (60, -1.0, "cpu_utilisation"),
        (60, 100.5, "cpu_utilisation"),
        (10**9, 10.0, "seconds"),
    ],
)
def test_bad_measurements_change_nothing(
    accountant: BurstableAccountant, seconds: int, utilisation: float, message: str
) -> None:
    before = accountant.ledger.balances()
    with pytest.raises(InvalidParameter, match=message):
        accountant.settle("vm-gold-1", seconds, utilisation)
    with pytest.raises(InstanceNotFound, match="'ghost'"):
        accountant.settle("ghost", 60, 10.0)
    assert accountant.ledger.balances() == before


def reference(
    balance: int, earned: int, demand: int, cap: int, available: int, headroom: int, draw: bool
) -> tuple[int, int, int, int, int, int]:
    # Milli-credit by milli-credit: earn one at a time (capped), then spend one at a time.
    spent = to_pool = from_pool = forfeited = throttled = 0
    surplus_cap = max(0, earned - demand)
    for _ in range(earned):
        balance += 1
    for _ in range(demand):
        if balance > 0:
            balance -= 1
            spent += 1
        elif draw and from_pool < available:
            from_pool += 1
            spent += 1
        else:
            throttled += 1
    while balance > cap and to_pool + forfeited < surplus_cap:
        balance -= 1
        if to_pool < headroom:
            to_pool += 1
        else:
            forfeited += 1
    return spent, to_pool, from_pool, forfeited, throttled, balance


@given(
    balance=st.integers(0, 400),
    earned=st.integers(0, 300),
    demand=st.integers(0, 300),
    cap=st.integers(0, 300),
    available=st.integers(0, 300),
    headroom=st.integers(0, 300),
    draw=st.booleans(),
)
def test_plan_matches_a_unit_by_unit_reference(
    balance: int, earned: int, demand: int, cap: int, available: int, headroom: int, draw: bool
) -> None:
    planned = plan_interval(
        balance=balance,
        earned=earned,
        demand=demand,
        cap=cap,
        pool_available=available,
        pool_headroom=headroom,
        pool_draw=draw,
    )
    assert planned == reference(balance, earned, demand, cap, available, headroom, draw)
    spent, to_pool, from_pool, forfeited, throttled, after = planned
    assert spent + throttled == demand
    assert after == balance + earned + from_pool - spent - to_pool - forfeited
    assert after >= 0


def test_clock_stamps_each_interval(ledger: Ledger, tiers: TierManager, clock: ManualClock) -> None:
    from datetime import timedelta

    tiers.open_accounts(ledger)
    accountant = BurstableAccountant(ledger, tiers)
    clock.advance(timedelta(hours=3))
    outcome = accountant.settle("vm-gold-2", 300, 5.0, idempotency_key="vm-gold-2@3h")
    assert outcome.entry is not None
    assert outcome.entry.created_at == clock.now
    assert ledger.entries(reason="accrual") == [outcome.entry]
