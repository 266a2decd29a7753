"""Allocation by owner value: the optimum against an independent LP, no policy beating it,
value-ordered and pro-rata pools, agents within their values, money that reconciles."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from market.agents.decision import FleetState, MarketView, OwnerPolicy, decide_fleet
from market.agents.valuation import NEED_SHARE, band_share, tail_share
from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.units import BPS
from pipelines.replay import POLICIES, ScenarioError, load_scenario, prepare_fleet, run_policy
from pipelines.replay.forecasts import oracle_forecasts
from pipelines.replay.optimum import solve_optimum
from pipelines.replay.run import replay
from pipelines.replay.scenario import scenario_from_mapping

START = datetime(2026, 1, 5, tzinfo=UTC)
TWO_TIERS = [
    {"name": "bronze", "baseline_pct": "5", "exchange_rate": "1.0"},
    {"name": "gold", "baseline_pct": "10", "exchange_rate": "2.5"},
]


def _frame(series: list[list[float]]) -> pd.DataFrame:
    rows = [
        (f"i{j:02d}", START + pd.Timedelta(minutes=5 * s), y)
        for j, values in enumerate(series)
        for s, y in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def _scenario(physical: str = "0.5", **owners: object) -> object:
    return scenario_from_mapping(
        {
            "fleet": {"starting_balance_share": "0.3", "physical_vcpus_per_vcpu": physical},
            "tiers": TWO_TIERS,
            "owners": owners or {"median": 100, "sigma": "1", "seed": 3},
            "market": {"starting_funds": 10_000_000},
        }
    )


def _reference_lp(fleet, scenario) -> float:
    """The optimum written out step by step on dense matrices: total service per instance
    between its baseline (where the hosts can serve the tier's baselines) and its demand,
    one stock per tier, moves at the rates."""
    n, steps = fleet.demand.shape
    tiers = len(fleet.tier_names)
    manager = fleet.tier_manager(scenario.fee_bps)
    stock_max = [
        sum(int(c) for c, k in zip(fleet.cap, fleet.tier_of, strict=True) if k == t)
        + manager.pool_capacity(fleet.tier_names[t])
        for t in range(tiers)
    ]
    rates = [t.exchange_rate for t in fleet.tiers]
    pairs = [(a, b) for a in range(tiers) for b in range(tiers) if a != b]
    # variables: y[i, s], stock[t, s], move[p, s], waste[t, s]
    ny, ns, nm = n * steps, tiers * steps, len(pairs) * steps
    size = ny + ns + nm + ns

    def y(i: int, s: int) -> int:
        return i * steps + s

    def stock(t: int, s: int) -> int:
        return ny + t * steps + s

    def move(p: int, s: int) -> int:
        return ny + ns + p * steps + s

    def waste(t: int, s: int) -> int:
        return ny + ns + nm + t * steps + s

    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for t in range(tiers):
        members = [i for i in range(n) if fleet.tier_of[i] == t]
        for s in range(steps):
            row = np.zeros(size)
            row[stock(t, s)] = 1
            if s:
                row[stock(t, s - 1)] = -1
            for i in members:
                row[y(i, s)] = 1
            for p, (a, b) in enumerate(pairs):
                if a == t:
                    row[move(p, s)] += 1
                if b == t:
                    row[move(p, s)] -= rates[a] / rates[b]
            row[waste(t, s)] = 1
            earned = sum(int(fleet.earned[i]) for i in members)
            start = sum(int(fleet.start_balance[i]) for i in members) if s == 0 else 0
            a_eq.append(row)
            b_eq.append(earned + start)
            host = np.zeros(size)
            for i in members:
                host[y(i, s)] = 1
            a_ub.append(host)
            b_ub.append(float(fleet.capacity[t]))
    baselines = np.minimum(fleet.demand, fleet.earned[:, None])
    bounds = []
    for i in range(n):
        members = fleet.tier_of == fleet.tier_of[i]
        for s in range(steps):
            d = int(fleet.demand[i, s])
            # a step whose baselines alone exceed the hosts promises none of them
            promised = baselines[members, s].sum() <= fleet.capacity[fleet.tier_of[i]]
            bounds.append((int(baselines[i, s]) if promised else 0, d))
    bounds += [(0, stock_max[t]) for t in range(tiers) for _ in range(steps)]
    bounds += [(0, None)] * (nm + ns)
    cost = np.zeros(size)
    for i in range(n):
        for s in range(steps):
            cost[y(i, s)] = -float(fleet.value[i])
    solved = linprog(
        cost, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds
    )
    assert solved.status == 0, solved.message
    served = solved.x[:ny].reshape(n, steps)
    return float((fleet.value[:, None] * (fleet.demand - served)).sum())


series_strategy = st.lists(
    st.lists(st.sampled_from([0.0, 2.0, 8.0, 30.0, 70.0, 100.0]), min_size=24, max_size=24),
    min_size=2,
    max_size=5,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series_strategy, st.sampled_from(["0.2", "0.5", "2"]))
def test_the_optimum_equals_an_independent_lp_and_bounds_its_hourly_relaxation(
    series: list[list[float]], physical: str
) -> None:
    scenario = _scenario(physical)
    fleet = prepare_fleet(_frame(series), scenario)
    exact = solve_optimum(fleet, scenario, 1)
    assert exact["cost"] == pytest.approx(_reference_lp(fleet, scenario), rel=1e-7, abs=1e-3)
    hourly = solve_optimum(fleet, scenario, 12)
    # an hour pools its steps: a relaxation, never above the exact optimum
    assert hourly["cost"] <= exact["cost"] * (1 + 1e-9) + 1e-3
    assert "exact" in str(exact["method"])
    assert "relaxation" in str(hourly["method"])


def test_no_policy_beats_the_optimum_and_every_policys_money_reconciles() -> None:
    rng = np.random.default_rng(5)
    hours = 72
    base = rng.choice([1.0, 4.0, 12.0, 40.0], size=(10, 1))
    bursts = rng.random((10, hours * 12)) < 0.15
    series = np.clip(base + bursts * rng.uniform(20, 90, (10, hours * 12)), 0, 100)
    scenario = _scenario("0.3")
    run = replay(_frame(series.tolist()), scenario)
    best = run.results["optimum"].value_cost()[0]
    for policy, result in run.results.items():
        assert best <= result.value_cost()[0] * (1 + 1e-9), policy
        assert result.conservation_violations == 0, policy
        if result.ledger is None:
            continue
        report = result.ledger.verify()
        assert report.ok, policy
        assert all(total == 0 for total in report.asset_totals.values()), policy
        summary = result.summary()
        # buyers paid exactly what sellers, the exchange and the provider received
        assert summary["paid"] == (
            summary["seller_receipts"] + summary["fees"] + summary["pool_revenue"]
        ), policy
        assert result.ledger.balance(POOL_REVENUE_ACCOUNT) == summary["pool_revenue"], policy
    closed = run.value_gap_closed()
    assert closed["pool+swap"] is None
    assert closed["optimum"] == pytest.approx(1.0)
    document = run.document()
    for name in POLICIES:
        figures = document["policies"][name]
        for key in (
            "throttled_share",
            "value_cost_share",
            "value_gap_closed",
            "orders_placed",
            "orders_rejected",
            "trades",
            "volume_credits",
            "paid",
            "fees",
            "pool_revenue",
            "conservation_violations",
            "median_clearing_price",
        ):
            assert key in figures, (name, key)
    assert run.results["market"].summary()["orders_placed"] > 0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 200_000),
            st.integers(1, 1_000),
            st.integers(0, 100),
            st.integers(0, 60),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 100),
    st.integers(1, 500),
)
def test_agents_never_bid_above_their_value_nor_sell_below_their_keep_value(
    rows: list[tuple[int, int, int, int]], fee: int, anchor: int
) -> None:
    n, hours = len(rows), 24
    holdings = np.array([r[0] for r in rows], dtype=np.int64)
    value = np.array([r[1] for r in rows], dtype=np.int64)
    mid = np.array([[r[2] * 120] * hours for r in rows], dtype=np.int64)
    upper = mid + np.array([[r[3] * 120] * hours for r in rows], dtype=np.int64)
    fleet = FleetState(
        holdings=holdings,
        money=np.full(n, 10**9, dtype=np.int64),
        vcpus=np.full(n, 2, dtype=np.int64),
        earn_rate=np.full(n, 6_000, dtype=np.int64),
        cap=np.full(n, 144_000, dtype=np.int64),
        usable=np.ones(n, dtype=bool),
        need_upper=upper,
        need_risk=upper,
        need_mid=mid,
        upper_quantile=Fraction(9, 10),
        market=np.zeros(n, dtype=np.int64),
        markets=(MarketView((anchor,), Fraction(1, 2), 1, fee),),
        value=value,
    )
    d = decide_fleet(OwnerPolicy(), fleet)
    for i in range(n):
        v = int(value[i])
        if d.bid_quantity[i]:
            # price plus the buyer's fee within the worth of what it bids for, and the value
            assert d.bid_price[i] * (BPS + fee) <= v * NEED_SHARE * BPS
            assert not d.ask_quantity[i]
        if d.ask_quantity[i]:
            assert d.ask_quantity[i] <= holdings[i]
            worth = {1: NEED_SHARE, 2: band_share(Fraction(9, 10)), 3: tail_share(Fraction(9, 10))}
            keep = (
                0 if d.ask_tranche[i] == 3 and d.overflows_cap[i] else v * worth[d.ask_tranche[i]]
            )
            assert d.ask_price[i] >= keep
            if d.ask_quantity[i] > d.spare[i]:
                # beyond what the upper quantile spares: band or need, never the tail's price
                assert d.ask_tranche[i] in (1, 2)


def test_scenarios_ship_by_name_and_owner_values_are_seeded() -> None:
    values = load_scenario("scarce-values")
    assert values.owner_values.median == 100
    uniform = load_scenario("scarce-uniform")
    one_tier = load_scenario("scarce-values-one-tier")
    assert len(one_tier.tiers) == 1
    assert len(uniform.tiers) == 4
    ids = [f"vm-{i:03d}" for i in range(400)]
    drawn = values.owner_values.of(ids, ["bronze"] * 400)
    assert (drawn == values.owner_values.of(ids, ["bronze"] * 400)).all()
    assert 80 <= np.median(drawn) <= 125
    # an instance keeps its value whatever the order of the fleet
    reordered = values.owner_values.of(ids[::-1], ["bronze"] * 400)
    assert (reordered[::-1] == drawn).all()
    assert (uniform.owner_values.of(ids, ["gold"] * 400) == 100).all()
    with pytest.raises(ScenarioError, match=r"owners\.colour"):
        scenario_from_mapping({"tiers": TWO_TIERS, "owners": {"colour": 1}})
    with pytest.raises(ScenarioError, match=r"owners\.value"):
        scenario_from_mapping({"tiers": TWO_TIERS, "owners": {"value": 0}})
    per_tier = scenario_from_mapping(
        {"tiers": TWO_TIERS, "owners": {"value": 50, "tiers": {"gold": 300}, "instances": {"x": 7}}}
    )
    assert per_tier.owner_values.of(["x", "y", "z"], ["gold", "gold", "bronze"]).tolist() == [
        7,
        300,
        50,
    ]


def test_every_policy_runs_on_an_oracle_and_the_optimum_needs_no_forecast() -> None:
    series = [[50.0] * 48, [2.0] * 48, [90.0] * 24 + [0.0] * 24]
    scenario = _scenario("0.5", value=100)
    fleet = prepare_fleet(_frame(series), scenario)
    oracle = oracle_forecasts(fleet, scenario.horizon_hours)
    best = run_policy(fleet, scenario, "optimum")
    for policy in POLICIES:
        result = run_policy(fleet, scenario, policy, oracle)
        assert best.value_cost()[0] <= result.value_cost()[0], policy
