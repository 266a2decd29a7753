"""The one forecast adapter: a frame and the API's points read alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from data.forecasts import HORIZONS, MEDIAN_COL, POINT_COL, UPPER_COL
from market.agents.forecast import forecasts_from_frame, horizon_forecast
from market.errors import InvalidAgentInput

NOW = datetime(2026, 12, 1, 6, tzinfo=UTC)


def _frame() -> pd.DataFrame:
    rows = []
    for instance, level in (("vm-b", 40.0), ("vm-a", 10.0)):
        for horizon in ("day", "hour"):
            for h in reversed(range(HORIZONS[horizon])):  # unsorted on purpose
                rows.append(
                    {
                        "unique_id": instance,
                        "horizon": horizon,
                        "ds": pd.Timestamp(NOW + timedelta(hours=h + 1)),
                        POINT_COL: level + h,
                        "q10": level + h - 5,
                        MEDIAN_COL: level + h,
                        UPPER_COL: level + h + 7,
                        "generated_at": pd.Timestamp(NOW),
                        "model_version": "3",
                    }
                )
    return pd.DataFrame(rows)


def test_a_frame_and_the_apis_points_give_the_same_forecast() -> None:
    frame = _frame()
    forecasts = forecasts_from_frame(frame)
    assert sorted(forecasts) == ["vm-a", "vm-b"]
    a = forecasts["vm-a"]
    assert (a.generated_at, a.model_version) == (NOW, "3")
    assert a.horizons["day"].point == tuple(10.0 + h for h in range(24))
    assert a.horizons["day"].quantiles["q90"] == tuple(17.0 + h for h in range(24))
    assert set(a.horizons["hour"].quantiles) == {"q10", MEDIAN_COL, UPPER_COL}
    # the API serves the same rows as points, one object per hour
    part = frame[(frame.unique_id == "vm-a") & (frame.horizon == "day")].sort_values("ds")
    points = part.to_dict("records")
    served = horizon_forecast(
        {c: [p[c] for p in points] for c in (POINT_COL, "q10", MEDIAN_COL, UPPER_COL)}
    )
    assert served == a.horizons["day"]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({MEDIAN_COL: [1.0]}, "has no yhat"),
        ({POINT_COL: [1.0, 2.0], UPPER_COL: [3.0]}, "must hold 2 hours"),
    ],
)
def test_a_forecast_without_its_point_or_of_ragged_columns_is_refused(
    columns: dict[str, list[float]], match: str
) -> None:
    with pytest.raises(InvalidAgentInput, match=match):
        horizon_forecast(columns)
