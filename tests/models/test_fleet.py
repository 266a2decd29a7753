"""The fleet orchestrator: frames, selection, fallback, overrides, back-tests."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from models import (
    DailyProfile,
    ExplicitForecast,
    FleetForecaster,
    ForecastConfig,
    InvalidInputError,
    InvalidQuantileError,
    NotFittedError,
    UnknownInstanceError,
    WeeklyProfile,
)
from models.config import CANDIDATES

# every known candidate, ETS included, so that each one's fallback is exercised
CONFIG = ForecastConfig(candidates=CANDIDATES, calibration_hours=72, horizon_max=48)


@pytest.fixture(scope="module")
def fleet_frame(hourly_fleet: pd.DataFrame) -> pd.DataFrame:
    """The synthetic fleet plus a newcomer with 30 hours of history, a flat and an idle VM."""
    end = hourly_fleet["ds"].max()
    recent = pd.date_range(end - pd.Timedelta(hours=29), end, freq="h")
    full = pd.DatetimeIndex(hourly_fleet["ds"].unique())
    extra = pd.concat(
        [
            pd.DataFrame({"unique_id": "newcomer", "ds": recent, "y": np.linspace(5, 9, 30)}),
            pd.DataFrame({"unique_id": "flat", "ds": full, "y": 12.0}),
            pd.DataFrame({"unique_id": "idle", "ds": full, "y": 0.0}),
        ]
    )
    return pd.concat([hourly_fleet, extra], ignore_index=True)


@pytest.fixture(scope="module")
def fitted(fleet_frame: pd.DataFrame) -> FleetForecaster:
    return FleetForecaster(CONFIG).fit(fleet_frame)


def test_predict_frame_shape(fitted: FleetForecaster, fleet_frame: pd.DataFrame) -> None:
    out = fitted.predict(24)
    assert list(out.columns) == ["unique_id", "ds", "yhat", "q10", "q50", "q90", "model", "source"]
    np.testing.assert_array_equal(out["yhat"], out["q50"])
    assert (out["q10"] <= out["q50"]).all()
    assert len(out) == 11 * 24
    assert out.groupby("unique_id").size().eq(24).all()
    first = out.groupby("unique_id")["ds"].min()
    assert (first == fleet_frame["ds"].max() + pd.Timedelta(hours=1)).all()
    assert (out["q90"] >= out["q50"]).all()
    assert set(out["model"]) <= set(CONFIG.candidates)
    assert (out["source"] == "learned").all()


def test_short_history_falls_back_and_says_so(fitted: FleetForecaster) -> None:
    said = fitted.fallbacks_[fitted.fallbacks_["unique_id"] == "newcomer"]
    assert set(said["model"]) == {"ets", "linear", "lightgbm", "lightgbm_recent"}
    assert (said["history_hours"] == 30).all()
    used = fitted.predict(48).query("unique_id == 'newcomer'")["model"]
    assert set(used) <= {"naive", "seasonal_naive", "seasonal_median"}


def test_flat_and_idle_series(fitted: FleetForecaster) -> None:
    out = fitted.predict(24).set_index("unique_id")
    np.testing.assert_allclose(out.loc["flat", ["yhat", "q50", "q90"]].to_numpy(), 12.0, atol=1e-6)
    np.testing.assert_allclose(out.loc["idle", ["yhat", "q50", "q90"]].to_numpy(), 0.0, atol=1e-6)


def test_nan_readings_are_interpolated(hourly_fleet: pd.DataFrame) -> None:
    holed = hourly_fleet.copy()
    gap = holed.index[(holed["unique_id"] == holed["unique_id"].iloc[0])][100:104]
    holed.loc[gap, "y"] = np.nan
    filled = holed.copy()
    filled["y"] = filled.groupby("unique_id")["y"].transform(lambda s: s.interpolate())
    config = ForecastConfig(candidates=("naive", "seasonal_naive"), calibration_hours=72)
    a = FleetForecaster(config).fit(holed).predict(24)
    b = FleetForecaster(config).fit(filled).predict(24)
    pd.testing.assert_frame_equal(a, b)


def test_bad_requests(fitted: FleetForecaster, fleet_frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError, match=r"call fit\(\.\.\.\)"):
        FleetForecaster(CONFIG).predict(24)
    with pytest.raises(InvalidQuantileError, match="strictly between 0 and 1"):
        fitted.predict(24, quantiles=(0.9, 1.2))
    ghost = fleet_frame[fleet_frame["unique_id"] == "flat"].assign(unique_id="ghost")
    with pytest.raises(UnknownInstanceError, match="ghost"):
        fitted.predict(24, frame=ghost)
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) \['y'\]"):
        FleetForecaster(CONFIG).fit(fleet_frame.drop(columns="y"))
    shifted = fleet_frame.assign(ds=fleet_frame["ds"] + pd.Timedelta(minutes=5))
    with pytest.raises(InvalidInputError, match="on the hour"):
        FleetForecaster(CONFIG).fit(shifted)
    with pytest.raises(InvalidInputError, match="twice"):
        FleetForecaster(CONFIG).fit(pd.concat([fleet_frame, fleet_frame.head(3)]))
    with pytest.raises(InvalidInputError, match="no observed value"):
        FleetForecaster(CONFIG).fit(
            fleet_frame.assign(
                y=np.where(fleet_frame["unique_id"] == "flat", np.nan, fleet_frame["y"])
            )
        )


def test_user_forecasts_override_and_say_so(fitted: FleetForecaster) -> None:
    fleet = pickle.loads(pickle.dumps(fitted))
    start = fleet.predict(1)["ds"].iloc[0]
    fleet.override("flat", DailyProfile(tuple(float(h) for h in range(24))))
    fleet.override(
        "idle", ExplicitForecast.from_mapping({start: 3.0, start + pd.Timedelta(hours=1): 4.0})
    )
    out = fleet.predict(6).set_index("unique_id")
    flat = out.loc["flat"]
    assert (flat["source"] == "user").all()
    assert (flat["model"] == "user").all()
    np.testing.assert_array_equal(flat["yhat"], flat["ds"].dt.hour.astype(float))
    np.testing.assert_array_equal(flat["q90"], flat["yhat"])
    idle = out.loc["idle"]
    assert list(idle["source"]) == ["user", "user"] + ["learned"] * 4
    assert list(idle["yhat"].iloc[:2]) == [3.0, 4.0]
    assert (out.drop(index=["flat", "idle"])["source"] == "learned").all()
    fleet.override("flat", None)
    assert (fleet.predict(2).query("unique_id == 'flat'")["source"] == "learned").all()
    with pytest.raises(InvalidInputError, match="needs 168 hourly values"):
        WeeklyProfile((1.0,) * 24)
    with pytest.raises(InvalidInputError, match="finite"):
        DailyProfile((float("nan"),) * 24)


def test_pickles_small_and_same(fitted: FleetForecaster) -> None:
    blob = pickle.dumps(fitted)
    again = pickle.loads(blob)
    pd.testing.assert_frame_equal(again.predict(24), fitted.predict(24))
    # The fitted state is a short window per instance plus the models, not the history.
    assert len(blob) < 3_000_000


def test_backtest_does_not_see_the_future(fleet_frame: pd.DataFrame) -> None:
    config = ForecastConfig(
        candidates=("naive", "seasonal_naive", "linear"), calibration_hours=72, horizon_max=48
    )
    origin = fleet_frame["ds"].max() - pd.Timedelta(hours=47)
    changed = fleet_frame.copy()
    after = changed["ds"] >= origin
    changed.loc[after, "y"] = changed.loc[after, "y"] * 2 + 40
    a = FleetForecaster(config).backtest(fleet_frame, [origin], 24)
    b = FleetForecaster(config).backtest(changed, [origin], 24)
    cols = ["unique_id", "origin", "ds", "yhat", "q50", "q90", "model"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not np.allclose(a["y"], b["y"])
    assert (a["origin"] == origin).all()
    assert a["ds"].min() == origin


def test_quantiles_average_the_best_sources_around_the_point(fleet_frame: pd.DataFrame) -> None:
    from models.base import horizon_bucket

    config = ForecastConfig(
        candidates=("naive", "seasonal_naive", "linear"), calibration_hours=72, horizon_max=48
    )
    blended = FleetForecaster(config).fit(fleet_frame)
    single = FleetForecaster(config.model_copy(update={"quantile_sources": 1})).fit(fleet_frame)
    choice = blended.quantile_choice_
    assert choice.shape == (len(blended.unique_ids_), 8, 2)
    # Best first, and the single-source fleet keeps exactly that best one.
    np.testing.assert_array_equal(choice[..., 0], single.quantile_choice_[..., 0])
    out = blended.predict(24).sort_values(["unique_id", "ds"])
    parts = [m.predict(24, (0.5, 0.9)).quantiles for m in blended.models_]
    bucket = horizon_bucket(np.arange(1, 25))
    rows = np.arange(len(blended.unique_ids_))[:, None]
    steps = np.arange(24)[None, :]
    blend = np.mean(
        [np.stack(parts)[choice[rows, bucket, j], rows, steps] for j in range(2)], axis=0
    )  # brute force: (n, 24, levels) from each source's own forecast
    # One distribution: the blend's shape moved so that its median is the point
    # forecast, its upper quantile widened to the blend's where that lies higher.
    yhat = out["yhat"].to_numpy().reshape(-1, 24)
    shifted = blend[..., 1] - blend[..., 0] + yhat
    reference = np.clip(np.stack([yhat, np.maximum(shifted, blend[..., 1])], axis=-1), 0, 100)
    np.testing.assert_allclose(out[["q50", "q90"]].to_numpy(), reference.reshape(-1, 2))
    np.testing.assert_allclose(out["q50"], out["yhat"])
    assert (out["q90"] >= out["q50"]).all()
    with pytest.raises(ValueError, match="quantile_sources"):
        ForecastConfig(quantile_sources=0)


def test_point_is_the_median_of_the_best_candidates(fleet_frame: pd.DataFrame) -> None:
    from models.base import horizon_bucket

    config = ForecastConfig(
        candidates=("naive", "seasonal_naive", "linear", "lightgbm"),
        calibration_hours=72,
        horizon_max=48,
        point_sources=3,
        point_tolerance=None,
        naive_guard=None,
    )
    fleet = FleetForecaster(config).fit(fleet_frame)
    single = FleetForecaster(config.model_copy(update={"point_sources": 1})).fit(fleet_frame)
    even = FleetForecaster(config.model_copy(update={"point_sources": 4})).fit(fleet_frame)
    choice = fleet.point_choice_
    assert choice.shape == (len(fleet.unique_ids_), 8, 3)
    assert even.point_choice_.shape[-1] == 3  # odd, so the median is one candidate's
    np.testing.assert_array_equal(choice[..., 0], fleet.choice_)
    np.testing.assert_array_equal(single.point_choice_[..., 0], fleet.choice_)
    out = fleet.predict(48).sort_values(["unique_id", "ds"])
    points = np.stack([m.predict(48, (0.5,)).point for m in fleet.models_])  # (m, n, 48)
    bucket = horizon_bucket(np.arange(1, 49))
    rows = np.arange(len(fleet.unique_ids_))[:, None]
    steps = np.arange(48)[None, :]
    sources = np.stack([points[choice[rows, bucket, j], rows, steps] for j in range(3)])
    learned = (out["source"] == "learned").to_numpy().reshape(-1, 48)
    median = np.clip(np.median(sources, axis=0), 0, 100)
    yhat = out["yhat"].to_numpy().reshape(-1, 48)
    np.testing.assert_allclose(yhat[learned], median[learned])
    # The model column names the candidate whose forecast is the median.
    names = out["model"].to_numpy().reshape(-1, 48)
    index = {name: i for i, name in enumerate(config.candidates)}
    named = np.vectorize(index.get)(np.where(learned, names, "naive"))
    np.testing.assert_allclose(
        np.clip(points[named, rows, steps], 0, 100)[learned], median[learned]
    )
    with pytest.raises(ValueError, match="point_sources"):
        ForecastConfig(point_sources=0)


def test_forecast_origins_equals_a_backtest_fitted_once(fleet_frame: pd.DataFrame) -> None:
    config = ForecastConfig(
        candidates=("naive", "seasonal_naive", "linear"), calibration_hours=72, horizon_max=48
    )
    end = fleet_frame["ds"].max()
    origins = [end - pd.Timedelta(hours=47), end - pd.Timedelta(hours=23)]
    expected = FleetForecaster(config).backtest(fleet_frame, origins, 24)
    fleet = FleetForecaster(config).fit(fleet_frame[fleet_frame["ds"] < origins[0]])
    got = fleet.forecast_origins(fleet_frame, origins, 24)
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(InvalidInputError, match="after the fitted history"):
        fleet.forecast_origins(fleet_frame, [origins[0] - pd.Timedelta(hours=1)], 24)
    with pytest.raises(InvalidInputError, match="lacks fitted instances"):
        fleet.forecast_origins(fleet_frame[fleet_frame["unique_id"] != "flat"], origins, 24)
    with pytest.raises(NotFittedError, match=r"call fit\(\.\.\.\)"):
        FleetForecaster(config).forecast_origins(fleet_frame, origins, 24)


def test_only_candidates_close_to_the_best_make_the_point_forecast(
    fleet_frame: pd.DataFrame,
) -> None:
    from models.base import horizon_bucket

    config = ForecastConfig(
        candidates=("naive", "seasonal_naive", "seasonal_median", "linear", "lightgbm"),
        calibration_hours=72,
        horizon_max=48,
        point_tolerance=0.3,
        naive_guard=None,
    )
    fleet = FleetForecaster(config).fit(fleet_frame)
    count = fleet.point_count_
    assert set(np.unique(count)) <= {1, 3, 5}
    scores = np.stack(
        [
            fleet._shrunk(m.backtest_mae_, fleet.lengths_ < m.min_history, m.calibration_used_)
            for m in fleet.models_
        ]
    )
    rows = np.arange(len(fleet.unique_ids_))[:, None]
    ranked = scores[fleet.point_choice_[..., 0], rows, np.arange(8)[None, :]]
    # The best candidate alone where no other is within 30 % of its back-test error.
    second = np.sort(scores, axis=0)[1]
    alone = (second > ranked * 1.3 + 1e-12) & np.isfinite(ranked)
    assert (count[alone] == 1).all()
    # Beyond a day every candidate in force is within 30 % of the best: none joins
    # to make the count odd.
    in_force = np.arange(fleet.point_choice_.shape[-1]) < count[..., None]
    in_force[:, : horizon_bucket(np.array([24]))[0] + 1] = False
    assert in_force.any()
    chosen = scores[fleet.point_choice_, rows[..., None], np.arange(8)[None, :, None]]
    assert (chosen <= ranked[..., None] * 1.3 + 1e-9)[in_force].all()
    out = fleet.predict(48).sort_values(["unique_id", "ds"])
    points = np.stack([m.predict(48, (0.5,)).point for m in fleet.models_])
    bucket = horizon_bucket(np.arange(1, 49))
    steps = np.arange(48)[None, :]
    sources = np.stack(
        [points[fleet.point_choice_[rows, bucket, j], rows, steps] for j in range(5)]
    )
    used = np.arange(5)[:, None, None] < count[rows, bucket][None]
    median = np.clip(np.nanmedian(np.where(used, sources, np.nan), axis=0), 0, 100)
    learned = (out["source"] == "learned").to_numpy().reshape(-1, 48)
    yhat = out["yhat"].to_numpy().reshape(-1, 48)
    np.testing.assert_allclose(yhat[learned], median[learned])
