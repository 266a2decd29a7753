"""A global LightGBM forecaster: one direct multi-horizon model across all instances.

Every training row is one (instance, origin, horizon step). Features are read at the
origin only, centred on the instance's mean of the last week and divided by its
seasonal-naive error scale, so one model serves instances of any level:

- the last 24 hourly values, and the values 48, 72 and 168 hours back;
- means over the last 6, 24 and 168 hours, the spread and range of the last day;
- the values at the target's hour of day on each of the last 7 days (mean, median,
  max) and at the target's hour of the week one and two weeks back;
- the target's hour of day, day of week and the horizon step.

The target is scaled the same way and the loss is the absolute error, so the
objective is the mean absolute scaled error the task scores.

:class:`RecentLightGBM` reads the same features but learns the target's departure
from the instance's *recent level* instead of its weekly mean (see
:func:`recent_level`): a tree can only return values it saw in training, so a model
of the level cannot follow an instance that moved to a level it never held, whereas
a model of the change from the recent level carries any level forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import lightgbm as lgb
import numpy as np

from models.base import SEASON, WEEK, Forecaster, nan_median

_LAGS = (*range(1, SEASON + 1), 48, 72, WEEK)
_SCALE_WINDOW = 2 * WEEK
#: Hours whose median is the recent level of a multi-step model.
RECENT_HOURS = 6


def _window_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(values)
    sums = np.zeros((values.shape[0], values.shape[1] + 1))
    counts = np.zeros_like(sums)
    sums[:, 1:] = np.cumsum(np.where(ok, values, 0.0), axis=1)
    counts[:, 1:] = np.cumsum(ok, axis=1)
    return sums, counts


def _window_mean(
    sums: np.ndarray, counts: np.ndarray, origins: np.ndarray, width: int
) -> np.ndarray:
    # Mean over the columns [origin - width, origin) that are observed, per origin.
    lo = np.maximum(origins - width, 0)
    total = sums[:, origins] - sums[:, lo]
    count = counts[:, origins] - counts[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _take(y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # y[:, idx] with NaN where idx falls before the first column.
    out = y[:, np.maximum(idx, 0)]
    return np.where(idx >= 0, out, np.nan)


def _origin_scale(
    y: np.ndarray, origins: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    # Each (series, origin)'s centre (the last week's mean) and unit (the seasonal-naive
    # error of the last two weeks, else the one-step change, else 1), and the running
    # sums of y that the window means read.
    sums, counts = _window_sums(y)
    seasonal = np.full_like(y, np.nan)
    seasonal[:, SEASON:] = np.abs(y[:, SEASON:] - y[:, :-SEASON])
    s_sums, s_counts = _window_sums(seasonal)
    centre = _window_mean(sums, counts, origins, WEEK)
    scale = _window_mean(s_sums, s_counts, origins, _SCALE_WINDOW)
    step_scale = _window_mean(
        *_window_sums(np.abs(np.diff(y, axis=1, prepend=np.nan))), origins, WEEK
    )
    scale = np.where(np.isfinite(scale) & (scale > 1e-6), scale, step_scale)
    scale = np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    return centre, scale, (sums, counts)


def _origin_features(
    y: np.ndarray,
    origins: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    sums: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    # The normalised lags (n, n_o, n_lags) and the summaries of the recent past
    # (n, n_o, 8), both read at the origin whatever the step.
    total, counts = sums
    sq_sums, _ = _window_sums(y * y)

    def norm(values: np.ndarray) -> np.ndarray:
        shape = centre.shape + (1,) * (values.ndim - 2)
        return (values - centre.reshape(shape)) / scale.reshape(shape)

    lags = np.stack([_take(y, origins - lag) for lag in _LAGS], axis=-1)  # (n, n_o, L)
    last_day = lags[:, :, :SEASON]
    with np.errstate(invalid="ignore"), _quiet():
        per_origin = np.stack(
            [
                norm(_window_mean(total, counts, origins, 6)),
                norm(_window_mean(total, counts, origins, SEASON)),
                (np.nanstd(last_day, axis=2)) / scale,
                norm(np.nanmax(last_day, axis=2)),
                norm(np.nanmin(last_day, axis=2)),
                np.sqrt(np.maximum(_window_mean(sq_sums, counts, origins, WEEK) - centre**2, 0.0))
                / scale,
                centre,
                np.log(scale),
            ],
            axis=-1,
        )
    return norm(lags), per_origin


def _target_features(
    y: np.ndarray, first_hour: int, origins: np.ndarray, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # The past values at each target's hour (n, n_o, n_s, 6), not yet normalised, and
    # its calendar (n_o, n_s, 3): hour of day, day of week, step.
    target_col = origins[:, None] + steps[None, :] - 1  # (n_o, n_s)
    days_back = -(-steps // SEASON)  # the latest whole day before the origin
    same_hour = np.stack(
        [_take(y, target_col - SEASON * (days_back[None, :] + j)) for j in range(7)], axis=-1
    )  # (n, n_o, n_s, 7)
    with np.errstate(invalid="ignore"), _quiet():
        profile = np.stack(
            [
                np.nanmean(same_hour, axis=-1),
                nan_median(same_hour),
                np.nanmax(same_hour, axis=-1),
                same_hour[..., 0],
                _take(y, target_col - WEEK),
                _take(y, target_col - 2 * WEEK),
            ],
            axis=-1,
        )
    hour = first_hour + target_col
    n_o, n_s = target_col.shape
    calendar = np.stack(
        [hour % SEASON, (hour // SEASON + 3) % 7, np.broadcast_to(steps[None, :], (n_o, n_s))],
        axis=-1,
    ).astype(np.float64)  # the Unix epoch fell on a Thursday (weekday 3)
    return profile, calendar


def build_features(
    y: np.ndarray, first_hour: int, origins: np.ndarray, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(X, centre, scale)`` for every (series, origin, step).

    ``X`` has shape ``(n, n_origins, n_steps, n_features)``; ``centre`` and ``scale``
    have shape ``(n, n_origins)``. Origin ``o`` forecasts column ``o + step - 1``
    from columns before ``o`` only.
    """
    n = y.shape[0]
    n_o, n_s = len(origins), len(steps)
    centre, scale, sums = _origin_scale(y, origins)
    lags, per_origin = _origin_features(y, origins, centre, scale, sums)
    profile, calendar = _target_features(y, first_hour, origins, steps)
    profile = (profile - centre[:, :, None, None]) / scale[:, :, None, None]
    x = np.concatenate(
        [
            np.broadcast_to(lags[:, :, None, :], (n, n_o, n_s, lags.shape[-1])),
            np.broadcast_to(per_origin[:, :, None, :], (n, n_o, n_s, per_origin.shape[-1])),
            profile,
            np.broadcast_to(calendar[None], (n, n_o, n_s, 3)),
        ],
        axis=-1,
    )
    return x, centre, scale


def recent_level(y: np.ndarray, origins: np.ndarray, hours: int) -> np.ndarray:
    """Return the ``(n, n_origins)`` median of the ``hours`` columns before each origin.

    Columns before the first one or before a series starts are left out; NaN where
    none is observed.
    """
    window = np.stack([_take(y, origins - lag) for lag in range(1, hours + 1)], axis=-1)
    return nan_median(window)


@contextmanager
def _quiet() -> Iterator[None]:
    # All-NaN windows of late-starting series are expected; their features stay NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class GlobalLightGBM(Forecaster):
    """One LightGBM model across all instances, forecasting every step directly.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM's boosting parameters.
    origin_stride
        Hours between training origins.
    max_rows
        Training rows kept, drawn at random (seeded) when there are more.
    n_jobs
        LightGBM threads.
    **kwargs
        Calibration options of :class:`~models.base.Forecaster`.
    """

    name: ClassVar[str] = "lightgbm"
    min_history: ClassVar[int] = 2 * SEASON
    window: ClassVar[int] = _SCALE_WINDOW + SEASON
    threaded: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_estimators: int = 150,
        learning_rate: float = 0.08,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        origin_stride: int = 5,
        max_rows: int = 60_000,
        n_jobs: int = 1,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.origin_stride = origin_stride
        self.max_rows = max_rows
        self.n_jobs = n_jobs

    def _anchor(self, y: np.ndarray, origins: np.ndarray, centre: np.ndarray) -> np.ndarray:
        # The level the scaled target is measured from, (n, n_origins): the week's mean.
        return centre

    def _training_steps(self) -> np.ndarray:
        short = np.arange(1, min(self.horizon_max, SEASON) + 1)
        long = np.arange(SEASON + 6, self.horizon_max + 1, 12)
        return np.concatenate([short, long])

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        t = y.shape[1]
        steps = self._training_steps()
        origins = np.arange(t - 1, SEASON, -self.origin_stride)[::-1]
        x, centre, scale = build_features(y, first_hour, origins, steps)
        anchor = self._anchor(y, origins, centre)
        target_col = origins[:, None] + steps[None, :] - 1
        target = _take(y, np.where(target_col < t, target_col, -1))
        target = (target - anchor[:, :, None]) / scale[:, :, None]
        ok = np.isfinite(target) & (target_col < t)[None]
        rng = np.random.default_rng(self.seed)
        rows = np.flatnonzero(ok.reshape(-1))
        if len(rows) > self.max_rows:
            rows = np.sort(rng.choice(rows, self.max_rows, replace=False))
        features = x.reshape(-1, x.shape[-1])[rows]
        labels = target.reshape(-1)[rows]
        self.booster_ = lgb.train(
            {
                "objective": "l1",
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_data_in_leaf": self.min_child_samples,
                "feature_fraction": 0.8,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "seed": int(rng.integers(2**31 - 1)),
                "deterministic": True,
                "num_threads": self.n_jobs,
                "verbosity": -1,
            },
            lgb.Dataset(features, labels, params={"max_bin": 63}),
            num_boost_round=self.n_estimators,
        )

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        return self._point_at(y, first_hour, np.array([y.shape[1]]), h)[:, 0, :]

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        steps = np.arange(1, h + 1)
        x, centre, scale = build_features(y, first_hour, origins, steps)
        raw = self.booster_.predict(x.reshape(-1, x.shape[-1]), num_threads=self.n_jobs)
        raw = np.asarray(raw).reshape(x.shape[:3])
        return self._anchor(y, origins, centre)[:, :, None] + scale[:, :, None] * raw


class RecentLightGBM(GlobalLightGBM):
    """:class:`GlobalLightGBM` learning the change from each instance's recent level.

    The recent level is the last value for a one-step model (``horizon_max`` 1) and
    the median of the last ``RECENT_HOURS`` hours otherwise, robust to a single burst.
    """

    name: ClassVar[str] = "lightgbm_recent"

    def _anchor(self, y: np.ndarray, origins: np.ndarray, centre: np.ndarray) -> np.ndarray:
        level = recent_level(y, origins, min(self.horizon_max, RECENT_HOURS))
        return np.where(np.isfinite(level), level, centre)
