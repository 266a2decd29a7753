"""The replay's fleet-wide CEM tier states and agent decisions against per-instance ones."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.agents.decision import Agent, decide_fleet
from market.agents.runner import VenueAgents
from market.agents.valuation import pool_scarcity
from market.cem.automation import tier_states
from pipelines.replay import ReplayFleet, Scenario, prepare_fleet
from pipelines.replay.engine import _FLAGS, _Books, agent_fleet, cem_tier_states
from pipelines.replay.forecasts import ForecastTable
from pipelines.replay.scenario import scenario_from_mapping

START = datetime(2026, 1, 5, tzinfo=UTC)
TIERS = [
    {"name": "bronze", "baseline_pct": "5", "exchange_rate": "1.0"},
    {"name": "silver", "baseline_pct": "10", "exchange_rate": "1.5"},
    {"name": "gold", "baseline_pct": "20", "exchange_rate": "2.2"},
]
N = 7
HOURS = 2

percent = st.floats(0.0, 100.0, allow_nan=False, width=32)
rows = st.lists(
    st.one_of(st.lists(percent, min_size=24, max_size=24), st.none()),
    min_size=N,
    max_size=N,
)


def _fleet(share: str) -> tuple[ReplayFleet, Scenario]:
    steps = HOURS * 12
    frame = pd.DataFrame(
        [
            (f"i{j}", START + pd.Timedelta(minutes=5 * s), float((7 * j + s) % 100))
            for j in range(N)
            for s in range(steps)
        ],
        columns=["unique_id", "ds", "y"],
    )
    scenario = scenario_from_mapping({"fleet": {"starting_balance_share": share}, "tiers": TIERS})
    return prepare_fleet(frame, scenario), scenario


def _table(values: list[list[float] | None], horizon: int = 24) -> ForecastTable:
    table = np.full((N, HOURS, horizon), np.nan, dtype=np.float32)
    for r, row in enumerate(values):
        if row is not None:
            table[r, :, :] = np.asarray(row[:horizon], dtype=np.float32)
    # the point forecast decides which rows exist; q90 is what the CEM reads
    return ForecastTable(table, table * np.float32(0.5), table, "test")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.sampled_from(["0", "0.1", "0.5", "1"]))
def test_fleet_tier_states_equal_the_cems_per_instance_states(
    values: list[list[float] | None], share: str
) -> None:
    fleet, scenario = _fleet(share)
    books = _Books(fleet, scenario, _FLAGS["pool+swap"])
    table = _table(values)
    credits, _funds, pools = books.read()
    for hour in range(HOURS):
        at = fleet.start + timedelta(hours=hour)
        expected = tier_states(books.tiers, books.ledger, table.at(hour, fleet.ids, at))
        needs = table.needs(hour, fleet.vcpus)
        assert cem_tier_states(books, fleet, needs, credits, pools) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.sampled_from(["0", "0.3", "1"]), st.sampled_from(["q50", "q90"]))
def test_the_replays_fleet_decision_is_each_agents_own(
    values: list[list[float] | None], share: str, risk: str
) -> None:
    fleet, scenario = _fleet(share)
    scenario = dataclasses.replace(scenario, risk_quantile=risk)
    books = _Books(fleet, scenario, _FLAGS["market"])
    assert books.venue is not None
    table = _table(values)
    credits, funds, pools = books.read()
    agents = VenueAgents(
        books.venue,
        [
            (str(i), fleet.tier_names[int(k)], int(v), int(e) * 12, int(c))
            for i, k, v, e, c in zip(
                fleet.ids, fleet.tier_of, fleet.vcpus, fleet.earned, fleet.cap, strict=True
            )
        ],
        books.policy,
        None,
        books.clock,
    )
    at = fleet.start
    together = decide_fleet(
        books.policy,
        agent_fleet(books, fleet, table.needs(0, fleet.vcpus), credits, funds, pools),
    )
    # the replay's agents read each tier's real pool level as its scarcity
    scarcity = {
        t: pool_scarcity(int(pools[k]), int(books.pool_capacity[k]))
        for k, t in enumerate(fleet.tier_names)
    }
    for row, state in enumerate(agents.states(table.at(0, fleet.ids, at), scarcity)):
        alone = Agent(books.policy).decide(state)
        assert (together.spare[row], together.lack[row]) == (alone.spare, alone.lack)
        placed = {(i.side, i.price, i.quantity) for i in alone.intents if i.action == "place"}
        batch = set()
        if together.bid_quantity[row]:
            batch.add(("buy", int(together.bid_price[row]), int(together.bid_quantity[row])))
        if together.ask_quantity[row]:
            batch.add(("sell", int(together.ask_price[row]), int(together.ask_quantity[row])))
        assert batch == placed


def test_a_forecast_not_a_day_long_counts_as_missing() -> None:
    fleet, scenario = _fleet("0")
    books = _Books(fleet, scenario, _FLAGS["pool+swap"])
    table = _table([[90.0] * 24] * N, horizon=12)
    credits, _funds, pools = books.read()
    states = cem_tier_states(books, fleet, table.needs(0, fleet.vcpus), credits, pools)
    expected = tier_states(books.tiers, books.ledger, table.at(0, fleet.ids, fleet.start))
    assert states == expected
    assert sum(s.missing_forecasts for s in states) == N
    assert all(s.demand == 0 for s in states)
    # A day of q90 at 90 % on an empty balance draws from the pool in every tier.
    full = cem_tier_states(
        books, fleet, _table([[90.0] * 24] * N).needs(0, fleet.vcpus), credits, pools
    )
    assert all(s.demand > 0 and s.missing_forecasts == 0 for s in full)
