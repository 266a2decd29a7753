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
