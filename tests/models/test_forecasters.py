"""One shared test suite over every forecaster."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Forecaster, InvalidInputError, InvalidQuantileError, NotFittedError
from models.base import (
    LOCAL_HOURS,
    LOCAL_WEIGHT,
    SEASON,
    check_panel,
    local_scale,
    nan_median,
    predict_origins,
)
from models.baselines import Naive, SeasonalMedian, SeasonalNaive
from models.gbm import GlobalLightGBM, RecentLightGBM, recent_level
from models.linear import LinearLags
from models.stats import ETS

SMALL = {"calibration_hours": 72, "horizon_max": 48}


def _make(cls: type[Forecaster], seed: int = 0) -> Forecaster:
    if issubclass(cls, GlobalLightGBM):
        return cls(n_estimators=25, max_rows=4000, seed=seed, **SMALL)
    return cls(seed=seed, **SMALL)


FORECASTERS: list[type[Forecaster]] = [
    Naive,
    SeasonalNaive,
    SeasonalMedian,
    ETS,
    LinearLags,
    GlobalLightGBM,
    RecentLightGBM,
]


@pytest.fixture(scope="module", params=FORECASTERS, ids=lambda c: c.name)
def fitted(request: pytest.FixtureRequest, panel: tuple[np.ndarray, int]) -> Forecaster:
    y, first_hour = panel
    return _make(request.param).fit(y[:, :400], first_hour)


def test_output_shape_and_levels(fitted: Forecaster, panel: tuple[np.ndarray, int]) -> None:
    fc = fitted.predict(24, quantiles=(0.9, 0.1, 0.5))
    assert fc.levels == (0.1, 0.5, 0.9)
    assert fc.point.shape == (8, 24)
    assert fc.quantiles.shape == (8, 24, 3)
    assert np.isfinite(fc.quantiles).all()
    assert np.isfinite(fc.point).all()


def test_quantiles_non_decreasing(fitted: Forecaster) -> None:
    fc = fitted.predict(168, quantiles=(0.05, 0.5, 0.9, 0.99))
    assert (np.diff(fc.quantiles, axis=2) >= 0).all()
    # Conformal offsets around a sound point forecast bracket it.
    assert (fc.level(0.99) >= fc.level(0.05)).all()
    assert (fc.level(0.99) > fc.level(0.05)).any()


def test_forecasts_do_not_see_the_future(fitted: Forecaster, panel: tuple[np.ndarray, int]) -> None:
    y, first_hour = panel
    origins = np.array([410, 430])
    before, q_before = predict_origins(fitted, y, first_hour, origins, 24, (0.9,))
    changed = y.copy()
    changed[:, 410:] = changed[:, 410:] * 3 + 50
    after, q_after = predict_origins(fitted, changed, first_hour, origins, 24, (0.9,))
    np.testing.assert_array_equal(before[:, 0, :], after[:, 0, :])
    np.testing.assert_array_equal(q_before[:, 0], q_after[:, 0])  # the local scale too
    assert not np.array_equal(before[:, 1, :], after[:, 1, :])  # 430 sees the change
    assert not np.array_equal(q_before[:, 1], q_after[:, 1])


def test_fit_ignores_data_after_its_panel(panel: tuple[np.ndarray, int]) -> None:
    y, first_hour = panel
    for cls in FORECASTERS:
        a = _make(cls).fit(y[:, :300], first_hour).predict(24).point
        b = _make(cls).fit(y[:, :300].copy(), first_hour).predict(24).point
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", FORECASTERS, ids=lambda c: c.name)
def test_deterministic_under_a_seed(cls: type[Forecaster], panel: tuple[np.ndarray, int]) -> None:
    y, first_hour = panel
    runs = [
        _make(cls, seed=7).fit(y[:, :360], first_hour).predict(48, (0.5, 0.9)) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].point, runs[1].point)
    np.testing.assert_array_equal(runs[0].quantiles, runs[1].quantiles)


@pytest.mark.parametrize("cls", FORECASTERS, ids=lambda c: c.name)
def test_predict_before_fit_says_what_to_call(cls: type[Forecaster]) -> None:
    with pytest.raises(NotFittedError, match=r"call fit\(\.\.\.\) before predict"):
        _make(cls).predict(24)


@pytest.mark.parametrize("cls", FORECASTERS, ids=lambda c: c.name)
def test_constant_and_zero_series(cls: type[Forecaster]) -> None:
    y = np.vstack([np.full(300, 7.5), np.zeros(300)])
    fc = _make(cls).fit(y, 0).predict(24, (0.5, 0.9))
    np.testing.assert_allclose(fc.point[0], 7.5, atol=1e-6)
    np.testing.assert_allclose(fc.point[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(fc.level(0.9)[0], 7.5, atol=1e-6)


def test_bad_panels_and_arguments(fitted: Forecaster) -> None:
    with pytest.raises(InvalidInputError, match="gaps"):
        check_panel(np.array([[1.0, np.nan, 2.0]]))
    with pytest.raises(InvalidInputError, match="no observation"):
        check_panel(np.array([[1.0, 2.0], [np.nan, np.nan]]))
    with pytest.raises(InvalidInputError, match="infinite"):
        check_panel(np.array([[1.0, np.inf]]))
    with pytest.raises(InvalidQuantileError, match="strictly between 0 and 1"):
        fitted.predict(24, quantiles=(0.5, 1.0))
    with pytest.raises(InvalidQuantileError, match="strictly between 0 and 1"):
        fitted.predict(24, quantiles=("0.9",))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="positive number of hours"):
        fitted.predict(0)
    with pytest.raises(InvalidInputError, match="expected the 8 fitted series"):
        fitted.predict(24, y=np.ones((3, 50)), first_hour=0)


@settings(max_examples=30, deadline=None)
@given(levels=st.lists(st.floats(0.001, 0.999), min_size=1, max_size=6))
def test_any_levels_give_ordered_quantiles(levels: list[float]) -> None:
    rng = np.random.default_rng(1)
    y = np.abs(rng.normal(10, 3, size=(3, 120)))
    fc = Naive(calibration_hours=48).fit(y, 0).predict(12, levels)
    assert fc.levels == tuple(sorted(set(levels)))
    assert (np.diff(fc.quantiles, axis=2) >= 0).all()
    assert (fc.quantiles >= 0).all()  # demand never forecast below zero


@pytest.mark.parametrize("cls", FORECASTERS, ids=lambda c: c.name)
def test_short_history_calibrates_in_sample(
    cls: type[Forecaster], panel: tuple[np.ndarray, int]
) -> None:
    y, first_hour = panel
    fc = _make(cls).fit(y[:, :60], first_hour).predict(24, (0.5, 0.9))
    assert np.isfinite(fc.quantiles).all()
    assert (fc.level(0.9) >= fc.level(0.5)).all()


def _local_scale_by_hand(y: np.ndarray, origin: int, scale: float) -> float:
    diffs = [
        abs(y[j] - y[j - SEASON])
        for j in range(max(origin - LOCAL_HOURS, SEASON), origin)
        if not np.isnan(y[j] - y[j - SEASON])
    ]
    recent = sum(diffs) / len(diffs) if diffs else scale
    return LOCAL_WEIGHT * scale + (1 - LOCAL_WEIGHT) * recent


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    t=st.integers(2, 90),
    starts=st.lists(st.integers(0, 89), min_size=1, max_size=4),
    picks=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
)
def test_local_scale_matches_a_brute_force_reference(
    seed: int, t: int, starts: list[int], picks: list[float]
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 3.0, size=(len(starts), t))
    for row, start in enumerate(starts):
        y[row, : min(start, t - 1)] = np.nan  # a late start; every row keeps one value
    scale = rng.uniform(0.5, 4.0, size=len(starts))
    origins = np.array([1 + int(p * (t - 1)) for p in picks])
    got = local_scale(y, origins, scale)
    assert got.shape == (len(starts), len(origins))
    for i in range(len(starts)):
        for j, origin in enumerate(origins):
            expected = _local_scale_by_hand(y[i], int(origin), float(scale[i]))
            assert got[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_quantiles_widen_after_a_volatile_day() -> None:
    rng = np.random.default_rng(5)
    hours = np.arange(24 * 20)
    y = 60 + 5 * np.sin(2 * np.pi * hours / SEASON) + rng.normal(0, 1, size=(4, len(hours)))
    model = SeasonalNaive(calibration_hours=120).fit(y, 0)
    calm = model.predict(24, (0.5, 0.9), y=y, first_hour=0)
    stormy_y = y.copy()
    stormy_y[:, -SEASON:] += rng.normal(0, 6, size=(4, SEASON))  # stays above zero
    stormy = model.predict(24, (0.5, 0.9), y=stormy_y, first_hour=0)
    band = calm.level(0.9) - calm.point
    # The same calibrated offsets, in units of a local scale the stormy day has raised.
    assert (stormy.level(0.9) - stormy.point > band + 1e-9).all()
    assert (band > 0).all()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 8)),
    holes=st.floats(0.0, 1.0),
)
def test_nan_median_equals_numpy(seed: int, shape: tuple[int, int, int], holes: float) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape).round(1)  # ties as well
    values[rng.random(shape) < holes] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        expected = np.nanmedian(values, axis=-1)
    np.testing.assert_array_equal(nan_median(values), expected)


@pytest.mark.parametrize("cls", FORECASTERS, ids=lambda c: c.name)
def test_one_step_models_still_forecast_a_day(
    cls: type[Forecaster], panel: tuple[np.ndarray, int]
) -> None:
    y, first_hour = panel
    kwargs = {"calibration_hours": 72, "horizon_max": 1, "seed": 0}
    model = (
        cls(n_estimators=25, max_rows=4000, **kwargs)  # type: ignore[call-arg]
        if issubclass(cls, GlobalLightGBM)
        else cls(**kwargs)
    ).fit(y[:, :300], first_hour)
    fc = model.predict(24, (0.5, 0.9))
    assert np.isfinite(fc.quantiles).all()
    assert (np.diff(fc.quantiles, axis=2) >= 0).all()
    # Every bucket borrows the calibrated one-step offsets.
    np.testing.assert_array_equal(
        model.quantile_table_[:, 1:], model.quantile_table_[:, :1].repeat(7, 1)
    )


def test_recent_level_is_the_median_of_the_last_hours() -> None:
    rng = np.random.default_rng(5)
    y = rng.gamma(2.0, 5.0, size=(6, 60))
    y[2, :20] = np.nan  # a late start
    origins = np.array([1, 3, 10, 25, 60])
    got = recent_level(y, origins, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no observation before column 20
        expected = np.stack(
            [np.nanmedian(y[:, max(o - 6, 0) : o], axis=1) for o in origins], axis=1
        )
    np.testing.assert_allclose(got, expected)
    np.testing.assert_array_equal(recent_level(y, origins, 1), y[:, origins - 1])


@pytest.mark.parametrize("horizon_max", [1, 24])
def test_recent_lightgbm_carries_a_new_level_forward(
    horizon_max: int, panel: tuple[np.ndarray, int]
) -> None:
    y, first_hour = panel
    kwargs = {"calibration_hours": 72, "horizon_max": horizon_max, "seed": 0}
    recent = RecentLightGBM(n_estimators=25, max_rows=4000, **kwargs).fit(y, first_hour)
    level = GlobalLightGBM(n_estimators=25, max_rows=4000, **kwargs).fit(y, first_hour)
    # Every instance moves for good to a level far above the one it usually holds.
    new_level = np.minimum(4.0 * np.nanmean(y, axis=1) + 20.0, 90.0)
    moved = np.concatenate([y, np.repeat(new_level[:, None], 12, axis=1)], axis=1)
    near = recent.predict(1, y=moved, first_hour=first_hour).point[:, 0]
    far = level.predict(1, y=moved, first_hour=first_hour).point[:, 0]
    assert np.abs(near - new_level).mean() < 0.5 * np.abs(far - new_level).mean()


def test_seasonal_median_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(11)
    y = rng.gamma(2.0, 5.0, size=(3, 300))
    y[1, :100] = np.nan  # a late start: fewer days to read at early origins
    model = SeasonalMedian(level_hours=12, days=7)
    origins = np.array([130, 200, 300])
    got = model._point_at(y, 0, origins, 30)
    padded = np.concatenate([np.full((3, 7 * SEASON), np.nan), y], axis=1)
    for i in range(3):
        for j, origin in enumerate(origins):
            level = np.nanmedian(y[i, origin - 12 : origin])
            end = origin + 7 * SEASON
            days = padded[i, end - 7 * SEASON : end].reshape(7, SEASON)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # days before the start
                shape = np.nanmedian(days - np.nanmedian(days, axis=1, keepdims=True), axis=0)
            np.testing.assert_allclose(got[i, j], level + shape[np.arange(30) % SEASON])
