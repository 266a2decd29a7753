"""Training one shard: the window's back-test, held to the forecaster's own back-test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.forecasts import HORIZONS, QUANTILES
from data.frame import ID_COL, TIME_COL
from models import FleetForecaster, ForecastConfig
from pipelines.params import DEFAULT_CANDIDATES, TrainParams
from pipelines.scoring import BacktestWindow, score_horizons
from pipelines.tasks import train_shard

BASELINES = ForecastConfig(candidates=("naive", "seasonal_naive"), quantiles=QUANTILES)


def _window(frame: pd.DataFrame, days: int) -> BacktestWindow:
    start = frame[TIME_COL].max() + pd.Timedelta(hours=1) - pd.Timedelta(days=days)
    return BacktestWindow("0" * 24, start, days)


@pytest.fixture(scope="module")
def small_fleet(hourly_fleet: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(hourly_fleet[ID_COL].astype(str).unique())[:4]
    return hourly_fleet.loc[hourly_fleet[ID_COL].isin(ids)].reset_index(drop=True)


def test_the_default_candidates_are_the_forecast_benchmarks() -> None:
    from benchmarks.forecast import CANDIDATES

    assert DEFAULT_CANDIDATES == CANDIDATES
    tracking = {"tracking_uri": "sqlite:///x.db", "artifact_root": "file:///x"}
    params = TrainParams.model_validate({"tracking": tracking, "snapshot": "s.parquet"})
    assert params.candidates == DEFAULT_CANDIDATES


@pytest.mark.parametrize("config", [ForecastConfig(candidates=DEFAULT_CANDIDATES), BASELINES])
def test_one_fit_per_window_scores_as_the_forecasters_own_backtest(
    small_fleet: pd.DataFrame, config: ForecastConfig
) -> None:
    window = _window(small_fleet, 2)
    [result] = train_shard.fn(small_fleet, config, window, [], False)
    assert result.fleet is None
    reference = score_horizons(
        small_fleet,
        {
            horizon: FleetForecaster(config).backtest(
                small_fleet, window.origins(horizon), hours, quantiles=QUANTILES
            )
            for horizon, hours in HORIZONS.items()
        },
    )
    key = [ID_COL, "horizon"]
    got = result.metrics.sort_values(key, ignore_index=True)
    want = reference.sort_values(key, ignore_index=True)
    assert len(got) == 4 * len(HORIZONS)
    pd.testing.assert_frame_equal(got[list(want.columns)], want, rtol=1e-9)
    # Beside them, each baseline on its own, scored on the same origins.
    for name in ("naive", "seasonal_naive"):
        alone = config.model_copy(update={"candidates": (name,)})
        baseline = score_horizons(
            small_fleet,
            {
                horizon: FleetForecaster(alone).backtest(
                    small_fleet, window.origins(horizon), hours, quantiles=QUANTILES
                )
                for horizon, hours in HORIZONS.items()
            },
        ).sort_values(key, ignore_index=True)
        np.testing.assert_allclose(got[f"mase_{name}"], baseline["mase"], rtol=1e-9)


def test_an_instance_starting_inside_the_window_is_fitted_but_not_scored(
    small_fleet: pd.DataFrame,
) -> None:
    window = _window(small_fleet, 3)
    late = small_fleet[ID_COL].astype(str) == "vm-000003"
    frame = small_fleet.loc[~late | (small_fleet[TIME_COL] >= window.start + pd.Timedelta(days=1))]
    [result] = train_shard.fn(frame, BASELINES, window, ["vm-000003"], True)
    assert result.failed == []
    assert "vm-000003" not in set(result.metrics[ID_COL])
    assert result.metrics[ID_COL].nunique() == 3
    assert result.sample.empty
    assert result.fleet is not None
    assert "vm-000003" in set(result.fleet.unique_ids_)
