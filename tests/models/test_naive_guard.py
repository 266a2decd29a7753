"""The naive guard: a point forecast other than naive must beat naive's back-test clearly."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import FleetForecaster, ForecastConfig
from models.base import HORIZON_EDGES, LEVEL_GRID, _widen_unreached, horizon_bucket
from models.fleet import beats_reference, to_panel
from models.metrics import score_backtest

CANDIDATES = ("naive", "seasonal_naive", "seasonal_median", "lightgbm", "lightgbm_recent")


def _random_walks(n: int, days: int, seed: int) -> pd.DataFrame:
    # Noise with no daily cycle: the last value is the best forecast of the next hours.
    rng = np.random.default_rng(seed)
    hours = days * 24
    ds = pd.date_range("2024-01-01", periods=hours, freq="h", tz="UTC")
    walk = 50 + np.cumsum(rng.normal(0, 1.5, (n, hours)), axis=1)
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"rw-{i:02d}" for i in range(n)], hours),
            "ds": np.tile(ds, n),
            "y": np.clip(walk, 0, 100).reshape(-1),
        }
    )


@pytest.fixture(scope="module")
def walks() -> pd.DataFrame:
    return _random_walks(12, 14, seed=5)


def test_on_random_walks_the_forecast_is_no_worse_than_naive(walks: pd.DataFrame) -> None:
    config = ForecastConfig(candidates=CANDIDATES, calibration_hours=120, horizon_max=24)
    end = walks["ds"].max()
    origins = [end - pd.Timedelta(hours=167 - 24 * d) for d in range(7)]
    guarded = FleetForecaster(config).backtest(walks, origins, 24, quantiles=(0.5, 0.9))
    naive = FleetForecaster(config.model_copy(update={"candidates": ("naive",)})).backtest(
        walks, origins, 24, quantiles=(0.5, 0.9)
    )
    ours = score_backtest(walks, guarded).mase
    bar = score_backtest(walks, naive).mase
    # The guard leaves a model in force only where it beat naive clearly; on a
    # random walk that is seldom, and never by luck over the whole fleet.
    assert (guarded["model"] == "naive").mean() > 0.8
    assert ours <= bar * 1.01


def test_guarded_buckets_serve_naive_and_others_beat_it(walks: pd.DataFrame) -> None:
    config = ForecastConfig(candidates=CANDIDATES, calibration_hours=120, horizon_max=48)
    fleet = FleetForecaster(config).fit(walks)
    guarded = fleet.naive_guarded_
    assert guarded.shape == fleet.choice_.shape
    assert guarded.any()
    assert (fleet.point_count_[guarded] == 1).all()
    assert (fleet.point_choice_[..., 0][guarded] == 0).all()
    out = fleet.predict(48)
    served = out["model"].to_numpy().reshape(len(fleet.unique_ids_), 48)
    buckets = horizon_bucket(np.arange(1, 49))
    assert (served[guarded[:, buckets]] == "naive").all()
    # Without the guard the same fleet serves other models in those buckets.
    free = FleetForecaster(config.model_copy(update={"naive_guard": None})).fit(walks)
    assert not free.naive_guarded_.any()
    assert (free.point_choice_[..., 0][guarded] != 0).any() or (
        free.point_count_[guarded] > 1
    ).any()


def test_a_clearly_better_model_survives_the_guard(hourly_fleet: pd.DataFrame) -> None:
    # The synthetic fleet has a strong daily cycle: a day ahead, naive is far behind.
    config = ForecastConfig(candidates=CANDIDATES, calibration_hours=120, horizon_max=48)
    fleet = FleetForecaster(config).fit(hourly_fleet)
    day = int(horizon_bucket(np.array([24]))[0])
    assert (~fleet.naive_guarded_[:, day]).mean() >= 0.5


def test_pickled_models_leave_the_backtest_errors_out(walks: pd.DataFrame) -> None:
    config = ForecastConfig(candidates=("naive", "seasonal_naive"), calibration_hours=72)
    fleet = FleetForecaster(config).fit(walks)
    assert fleet.models_[1].backtest_errors_.signed.shape[0] == len(fleet.unique_ids_)
    again = pickle.loads(pickle.dumps(fleet))
    assert not hasattr(again.models_[1], "backtest_errors_")
    pd.testing.assert_frame_equal(again.predict(24), fleet.predict(24))


_errors = st.integers(min_value=2, max_value=6).flatmap(
    lambda n: st.lists(
        st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=n * 30, max_size=n * 30
    ).map(lambda v: np.asarray(v).reshape(n, 30))
)


@settings(max_examples=40, deadline=None)
@given(errors=_errors, z=st.floats(min_value=0.0, max_value=3.0), gain=st.floats(0.5, 5.0))
def test_beats_reference_properties(errors: np.ndarray, z: float, gain: float) -> None:
    steps = np.tile(np.arange(1, 4), 10)
    # The same errors never beat themselves.
    assert not beats_reference(errors, errors, steps, 30, 24.0, z).any()
    # Errors smaller everywhere by a fixed amount beat the reference in every bucket
    # the back-test reached (and those after it, which borrow its verdict).
    better = beats_reference(errors - gain, errors, steps, 30, 24.0, z)
    assert better[:, horizon_bucket(steps).min() :].all()
    # A stricter z keeps a subset of what a laxer one keeps.
    noisy = errors + np.sin(np.arange(30))[None, :] * gain - 0.2 * gain
    strict = beats_reference(noisy, errors, steps, 30, 24.0, z + 1.0)
    lax = beats_reference(noisy, errors, steps, 30, 24.0, z)
    assert not (strict & ~lax).any()
    assert better.shape == (errors.shape[0], len(HORIZON_EDGES))


def test_after_a_level_shift_the_forecast_tracks_the_new_level(
    hourly_fleet: pd.DataFrame,
) -> None:
    ds = pd.DatetimeIndex(hourly_fleet["ds"].unique())
    rng = np.random.default_rng(1)
    t = len(ds)
    daily = 10 + 3 * np.sin(2 * np.pi * np.arange(t) / 24) + rng.normal(0, 0.8, t)
    # The level rises by 30 two and a half days before the end and stays there.
    shifted = np.where(np.arange(t) >= t - 60, daily + 30, daily)
    frame = pd.concat(
        [hourly_fleet, pd.DataFrame({"unique_id": "shifted", "ds": ds, "y": shifted})],
        ignore_index=True,
    )
    fleet = FleetForecaster(ForecastConfig(calibration_hours=168, horizon_max=168)).fit(frame)
    out = fleet.predict(168).query("unique_id == 'shifted'")
    week_mean = shifted[-168:].mean()  # what a model of the week's level would say
    assert abs(out["yhat"].iloc[:24].mean() - 40) < 3
    assert abs(out["yhat"].mean() - 40) < 0.25 * abs(week_mean - 40)
    assert (out["q90"] >= out["yhat"]).all()


def test_far_buckets_reached_only_at_short_steps_widen(walks: pd.DataFrame) -> None:
    from models.baselines import Naive

    _, y, first_hour = to_panel(walks)
    # A week-long history: the back-test reaches the week bucket only at its first steps.
    short = Naive(calibration_hours=120, horizon_max=168).fit(y[:, -168:], first_hour)
    table = short.quantile_table_
    week = int(horizon_bucket(np.array([168]))[0])
    upper = LEVEL_GRID > 0.5
    assert (table[:, week, upper] >= table[:, week - 1, upper]).all()
    # Errors from steps short of a far bucket's middle grow in proportion to the step;
    # near buckets and far ones borrowed from the next hour keep theirs.
    grown = np.ones((2, len(HORIZON_EDGES), len(LEVEL_GRID)), dtype=np.float32)
    reached = np.array([1.0, 2.5, 5.0, 9.5, 18.5, 36.5, 72.5, 110.0])
    _widen_unreached(grown, reached)
    np.testing.assert_allclose(grown[:, week], 132.5 / 110.0, rtol=1e-6)
    np.testing.assert_array_equal(grown[:, :week], 1.0)
    kept = np.ones_like(grown)
    _widen_unreached(kept, np.ones(len(HORIZON_EDGES)))
    np.testing.assert_array_equal(kept, 1.0)


def test_one_burst_neither_decides_nor_hides_the_verdict() -> None:
    rng = np.random.default_rng(2)
    steps = np.ones(200, dtype=np.int64)
    reference = rng.gamma(2.0, 0.5, (4, 200))
    better = reference - 0.3 + rng.normal(0, 0.05, (4, 200))
    hidden = better.copy()
    hidden[:, 17] += 200.0  # one burst the candidate missed badly
    assert beats_reference(hidden, reference, steps, 200, 24.0, 2.0).all()
    lucky = reference.copy()
    lucky[:, 17] -= 200.0  # one burst the candidate caught, otherwise no better
    assert not beats_reference(lucky, reference, steps, 200, 24.0, 2.0).any()
