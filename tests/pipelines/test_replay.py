"""The fleet replay: a hand-computed static trace, a reference built on the accounting
module, physical-limit as the bound, exact conservation in every policy, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.cem.accounting import plan_interval
from market.ledger import burn_account, mint_account
from pipelines.replay import (
    POLICIES,
    ScenarioError,
    TraceError,
    load_scenario,
    prepare_fleet,
    run_policy,
)
from pipelines.replay.forecasts import oracle_forecasts
from pipelines.replay.scenario import Scenario, assign_fleet, scenario_from_mapping

START = datetime(2026, 1, 5, tzinfo=UTC)
TIERS = [
    {"name": "bronze", "baseline_pct": "5", "exchange_rate": "1.0"},
    {"name": "silver", "baseline_pct": "10", "exchange_rate": "1.5"},
    {"name": "gold", "baseline_pct": "20", "exchange_rate": "2.2"},
    {"name": "platinum", "baseline_pct": "40", "exchange_rate": "3.5"},
]


def _frame(utilisation: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        (iid, START + pd.Timedelta(minutes=5 * s), y)
        for iid, series in utilisation.items()
        for s, y in enumerate(series)
    ]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def _scenario(**fleet: str) -> Scenario:
    return scenario_from_mapping({"fleet": fleet, "tiers": TIERS})


def test_the_standard_scenario_is_the_documented_one() -> None:
    scenario = load_scenario()
    assert [t.name for t in scenario.tiers] == ["bronze", "silver", "gold", "platinum"]
    assert [str(t.baseline_pct) for t in scenario.tiers] == ["5", "10", "20", "40"]
    assert [str(t.exchange_rate) for t in scenario.tiers] == ["1.0", "1.5", "2.2", "3.5"]
    assert scenario.vcpus == 2
    assert str(scenario.starting_balance_share) == "0.5"
    assert str(scenario.physical_vcpus_per_vcpu) == "0.6"
    # Sorted by id, then round-robin.
    assert assign_fleet(["e", "b", "a", "d", "c"], scenario) == {
        "a": "bronze",
        "b": "silver",
        "c": "gold",
        "d": "platinum",
        "e": "bronze",
    }


def test_static_matches_a_hand_computed_trace() -> None:
    # Two hours; full balances; hosts as large as the instances (capacity never binds).
    steps = 24
    frame = _frame(
        {
            "a": [100.0] * steps,  # bronze: earns 500, asks 10_000 per step
            "b": [0.0] * steps,  # silver: at its cap, so its 1_000 per step is thrown away
            "c": [20.0] * steps,  # gold: exactly its baseline, 2_000 in and out
            "d": [50.0] * steps,  # platinum: earns 4_000, spends 5_000 per step
        }
    )
    fleet = prepare_fleet(frame, _scenario(starting_balance_share="1", physical_vcpus_per_vcpu="1"))
    assert fleet.cap.tolist() == [144_000, 288_000, 576_000, 1_152_000]
    result = run_policy(fleet, _scenario(), "static")
    # a: 144_000 - 15 * 9_500 = 1_500 left after 15 steps; step 16 serves 2_000 of 10_000
    # (8_000 throttled); steps 17..24 serve the 500 earned (9_500 throttled each).
    assert result.throttled.tolist() == [8_000 + 8 * 9_500, 0, 0, 0]
    assert result.forfeited.tolist() == [0, 24 * 1_000, 0, 0]
    assert result.demand.tolist() == [240_000, 0, 48_000, 120_000]
    assert result.instances_throttled.tolist() == [1, 0, 0, 0]
    assert result.throttled_series[:, 0].tolist() == [0, 84_000]
    assert result.summary()["credits_thrown_away"] == 24.0
    assert result.conservation_violations == 0
    ledger = result.ledger
    assert ledger is not None
    # Burned = credits spent = CPU served; the mint gave the openings and the earnings kept.
    assert ledger.balance(burn_account("credits:bronze")) == 240_000 - 84_000
    assert ledger.balance(mint_account("credits:silver")) == -288_000
    assert ledger.balance("instance:a:credits") == 0
    assert ledger.balance("instance:d:credits") == 1_152_000 - 24 * 1_000
    assert ledger.verify().ok


def test_hosts_bind_every_policy_and_physical_limit_only_by_them() -> None:
    # One bronze instance at 100 % on a host of 0.6 x 2 = 1 whole vCPU: 5_000 per step.
    frame = _frame({"a": [100.0] * 12})
    fleet = prepare_fleet(frame, load_scenario())
    assert fleet.host_vcpus.tolist() == [1]
    limit = run_policy(fleet, load_scenario(), "physical-limit")
    static = run_policy(fleet, load_scenario(), "static")
    assert limit.throttled.tolist() == [12 * 5_000]
    assert static.throttled.tolist() == [12 * 5_000]


def _reference_static_pool(
    demand: np.ndarray, fleet_arrays: dict[str, np.ndarray], pools: bool, pool_cap: list[int]
) -> tuple[list[int], list[int]]:
    # Instance by instance with market.accounting.plan_interval: draws first, in order,
    # then overflows, in order (the engine's documented order within a step).
    tier_of, earned, cap = fleet_arrays["tier_of"], fleet_arrays["earned"], fleet_arrays["cap"]
    balance = fleet_arrays["start"].astype(object).tolist()
    n_tiers = int(tier_of.max()) + 1
    pool = [0] * n_tiers
    throttled = [0] * n_tiers
    forfeited = [0] * n_tiers
    for s in range(demand.shape[1]):
        plans: dict[int, tuple[int, int, int, int, int, int]] = {}
        taken = [0] * n_tiers
        for i in range(len(balance)):
            k = int(tier_of[i])
            if balance[i] + int(earned[i]) - int(demand[i, s]) < 0:
                plans[i] = plan_interval(
                    balance=balance[i],
                    earned=int(earned[i]),
                    demand=int(demand[i, s]),
                    cap=int(cap[i]),
                    pool_available=pool[k] - taken[k],
                    pool_headroom=0,
                    pool_draw=pools,
                )
                taken[k] += plans[i][2]
        added = [0] * n_tiers
        for i in range(len(balance)):
            k = int(tier_of[i])
            if i not in plans:
                headroom = max(0, pool_cap[k] - (pool[k] - taken[k]) - added[k]) if pools else 0
                plans[i] = plan_interval(
                    balance=balance[i],
                    earned=int(earned[i]),
                    demand=int(demand[i, s]),
                    cap=int(cap[i]),
                    pool_available=0,
                    pool_headroom=headroom,
                    pool_draw=pools,
                )
                added[k] += plans[i][1]
        for i, (_, _, _, lost, short, after) in plans.items():
            k = int(tier_of[i])
            throttled[k] += short
            forfeited[k] += lost
            balance[i] = after
        for k in range(n_tiers):
            pool[k] += added[k] - taken[k]
    return throttled, forfeited


utilisations = st.lists(
    st.lists(
        st.sampled_from([0.0, 1.0, 3.3, 5.0, 12.5, 40.0, 77.7, 100.0]), min_size=36, max_size=36
    ),
    min_size=4,
    max_size=9,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(utilisations, st.sampled_from(["0", "0.1", "0.5", "1"]))
def test_static_and_pool_equal_the_accounting_reference(
    series: list[list[float]], share: str
) -> None:
    frame = _frame({f"i{j:02d}": s for j, s in enumerate(series)})
    # Ample hosts, so only credits bind and the reference needs no capacity rule.
    scenario = _scenario(starting_balance_share=share, physical_vcpus_per_vcpu="8")
    fleet = prepare_fleet(frame, scenario)
    arrays = {
        "tier_of": fleet.tier_of,
        "earned": fleet.earned,
        "cap": fleet.cap,
        "start": fleet.start_balance,
    }
    tiers = fleet.tier_manager(scenario.fee_bps)
    pool_cap = [tiers.pool_capacity(t) for t in fleet.tier_names]
    for policy, pools in (("static", False), ("pool", True)):
        result = run_policy(fleet, scenario, policy)
        throttled, forfeited = _reference_static_pool(fleet.demand, arrays, pools, pool_cap)
        assert result.throttled.tolist() == throttled, policy
        assert result.forfeited.tolist() == forfeited, policy


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(utilisations, st.sampled_from(["0.3", "0.6", "1"]))
def test_physical_limit_is_never_beaten_and_every_policy_conserves(
    series: list[list[float]], physical: str
) -> None:
    frame = _frame({f"i{j:02d}": s for j, s in enumerate(series)})
    scenario = _scenario(starting_balance_share="0.2", physical_vcpus_per_vcpu=physical)
    fleet = prepare_fleet(frame, scenario)
    oracle = oracle_forecasts(fleet, scenario.horizon_hours)
    bound = run_policy(fleet, scenario, "physical-limit")
    served_cap = fleet.capacity * fleet.demand.shape[1]
    assert (bound.demand - bound.throttled <= served_cap).all()
    for policy in POLICIES:
        result = run_policy(fleet, scenario, policy, oracle)
        assert (bound.throttled <= result.throttled).all(), policy
        assert result.conservation_violations == 0
        if result.ledger is None:
            continue
        report = result.ledger.verify()
        assert report.ok, policy
        assert all(total == 0 for total in report.asset_totals.values()), policy
        # What each tier burned is exactly the CPU its instances were served.
        for k, tier in enumerate(fleet.tier_names):
            burned = result.ledger.balance(burn_account(f"credits:{tier}"))
            assert burned == result.demand[k] - result.throttled[k], (policy, tier)


def test_bad_traces_are_refused_with_the_reason() -> None:
    scenario = load_scenario()
    with pytest.raises(TraceError, match="finite percentage"):
        prepare_fleet(_frame({"a": [10.0] * 11 + [101.0]}), scenario)
    with pytest.raises(TraceError, match="shorter than one hour"):
        prepare_fleet(_frame({"a": [10.0] * 11}), scenario)
    with pytest.raises(TraceError, match="missing columns"):
        prepare_fleet(_frame({"a": [10.0] * 12}).drop(columns="y"), scenario)
    shifted = _frame({"a": [10.0] * 12})
    shifted.loc[3, "ds"] += pd.Timedelta(minutes=1)
    with pytest.raises(TraceError, match="5-minute grid"):
        prepare_fleet(shifted, scenario)
    twice = pd.concat([_frame({"a": [10.0] * 12}), _frame({"a": [10.0]})])
    with pytest.raises(TraceError, match="two readings"):
        prepare_fleet(twice, scenario)


def test_bad_scenarios_are_refused_with_the_field(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"fleet\.hosts"):
        scenario_from_mapping({"tiers": TIERS, "fleet": {"hosts": 3}})
    with pytest.raises(ScenarioError, match="decimal string"):
        scenario_from_mapping({"tiers": TIERS, "fleet": {"physical_vcpus_per_vcpu": 0.6}})
    with pytest.raises(ScenarioError, match="at least one tier"):
        scenario_from_mapping({"fleet": {}})
    with pytest.raises(ScenarioError, match="unique"):
        scenario_from_mapping({"tiers": TIERS + TIERS[:1]})
    broken = tmp_path / "broken.toml"
    broken.write_text("[fleet\n")
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(broken)
    fleet = prepare_fleet(_frame({"a": [10.0] * 12}), load_scenario())
    with pytest.raises(ScenarioError, match="must be one of"):
        run_policy(fleet, load_scenario(), "lottery")
    with pytest.raises(ScenarioError, match="need forecasts"):
        run_policy(fleet, load_scenario(), "market")
