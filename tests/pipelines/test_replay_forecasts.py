"""The replay's forecast table hands its forecasts to agents through the one adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from data.forecasts import UPPER_COL
from pipelines.replay.forecasts import ForecastTable

NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)


def test_the_replays_table_reads_through_the_same_adapter() -> None:
    day = np.arange(24, dtype=np.float32)[None, None, :] + 10
    table = ForecastTable(day, day, day + 7, "oracle")
    got = table.at(0, np.array(["vm-a"]), NOW)["vm-a"]
    assert got.horizons["hour"].point == (10.0,)
    assert got.horizons["day"].quantiles[UPPER_COL] == tuple(17.0 + h for h in range(24))


def test_the_oracle_needs_exactly_what_each_hour_ahead_demands() -> None:
    from data.synthetic import generate_fleet
    from pipelines.replay import load_scenario, prepare_fleet
    from pipelines.replay.fleet import STEPS_PER_HOUR
    from pipelines.replay.forecasts import oracle_forecasts

    scenario = load_scenario()
    fleet = prepare_fleet(generate_fleet(6, 3, seed=5, attributes=False), scenario)
    oracle = oracle_forecasts(fleet, scenario.horizon_hours)
    n, hours = len(fleet.ids), fleet.hours
    demanded = fleet.demand[:, : hours * STEPS_PER_HOUR].reshape(n, hours, STEPS_PER_HOUR)
    demanded = demanded.sum(axis=2)
    for origin in (0, 1, 17, hours - 24):
        needs = oracle.needs(origin, fleet.vcpus)
        assert needs.agents.all()
        assert needs.cem.all()
        ahead = demanded[:, origin : origin + 24]
        # the hour's need is its mean rounded up once; the steps round half up each
        assert np.abs(needs.q50 - ahead).max() <= STEPS_PER_HOUR
        # a perfect forecast is certain: the upper quantile is the median
        assert np.array_equal(needs.q90, needs.q50)
    # one hour off would miss by far more than the rounding
    shifted = oracle.needs(1, fleet.vcpus).q50[:, :-1] - demanded[:, :23]
    assert np.abs(shifted).max() > 100 * STEPS_PER_HOUR
