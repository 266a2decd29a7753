"""The replay's fleet-wide CEM tier states against the CEM's own per-instance ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.cem_auto import tier_states
from pipelines.replay import ReplayFleet, Scenario, prepare_fleet
from pipelines.replay.engine import _FLAGS, _Books, fleet_tier_states
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
    credits, _pools = books.read()
    for hour in range(HOURS):
        at = fleet.start + timedelta(hours=hour)
        expected = tier_states(books.tiers, books.ledger, table.at(hour, fleet.ids, at))
        assert fleet_tier_states(books, fleet, table, hour, credits) == expected


def test_a_forecast_not_a_day_long_counts_as_missing() -> None:
    fleet, scenario = _fleet("0")
    books = _Books(fleet, scenario, _FLAGS["pool+swap"])
    table = _table([[90.0] * 24] * N, horizon=12)
    credits, _pools = books.read()
    states = fleet_tier_states(books, fleet, table, 0, credits)
    expected = tier_states(books.tiers, books.ledger, table.at(0, fleet.ids, fleet.start))
    assert states == expected
    assert sum(s.missing_forecasts for s in states) == N
    assert all(s.demand == 0 for s in states)
    # A day of q90 at 90 % on an empty balance draws from the pool in every tier.
    full = fleet_tier_states(books, fleet, _table([[90.0] * 24] * N), 0, credits)
    assert all(s.demand > 0 and s.missing_forecasts == 0 for s in full)
