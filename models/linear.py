"""A global ridge regression on lags and Fourier terms (scikit-learn).

It reads the same origin features as :mod:`models.gbm` (centred and scaled per
instance), replaces the raw calendar by Fourier terms of the target's hour of day and
hour of week, and fits one ridge model per horizon bucket across all instances.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.linear_model import Ridge

from models.base import HORIZON_EDGES, SEASON, WEEK, Forecaster, horizon_bucket
from models.gbm import build_features


def _design(x: np.ndarray) -> np.ndarray:
    # The last three columns are hour of day, day of week and step (see build_features).
    hour, dow, step = x[..., -3], x[..., -2], x[..., -1]
    week_hour = dow * SEASON + hour
    fourier = []
    for k in (1, 2, 3):
        fourier += [np.sin(2 * np.pi * k * hour / SEASON), np.cos(2 * np.pi * k * hour / SEASON)]
    for k in (1, 2):
        fourier += [
            np.sin(2 * np.pi * k * week_hour / WEEK),
            np.cos(2 * np.pi * k * week_hour / WEEK),
        ]
    extra = [*fourier, np.log(step)]
    n_body = x.shape[-1] - 3
    # One output array, cleaned in place: the design is the largest array of a fit.
    out = np.empty((*x.shape[:-1], n_body + len(extra)))
    body = out[..., :n_body]
    body[...] = x[..., :n_body]
    np.nan_to_num(body, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    for j, column in enumerate(extra):
        out[..., n_body + j] = column
    return out


class LinearLags(Forecaster):
    """Ridge regression on scaled lags, window statistics and Fourier terms.

    Parameters
    ----------
    alpha
        Ridge penalty.
    origin_stride
        Hours between training origins.
    **kwargs
        Calibration options of :class:`~models.base.Forecaster`.
    """

    name: ClassVar[str] = "linear"
    min_history: ClassVar[int] = 2 * SEASON
    window: ClassVar[int] = 2 * WEEK + SEASON

    def __init__(self, *, alpha: float = 10.0, origin_stride: int = 3, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.alpha = alpha
        self.origin_stride = origin_stride

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        t = y.shape[1]
        steps = np.concatenate(
            [
                np.arange(1, min(self.horizon_max, SEASON) + 1),
                np.arange(SEASON + 6, self.horizon_max + 1, 12),
            ]
        )
        origins = np.arange(t - 1, SEASON, -self.origin_stride)[::-1]
        x, centre, scale = build_features(y, first_hour, origins, steps)
        target_col = origins[:, None] + steps[None, :] - 1
        target = y[:, np.minimum(target_col, t - 1)]
        target = (target - centre[:, :, None]) / scale[:, :, None]
        ok = np.isfinite(target) & (target_col < t)[None]
        design = _design(x)
        buckets = horizon_bucket(steps)
        self.models_: dict[int, Ridge] = {}
        for b in range(len(HORIZON_EDGES)):
            mask = ok & (buckets == b)[None, None, :]
            if mask.sum() < 10:
                continue
            # Clip the scaled target: a rare spike should not tilt a least-squares fit.
            self.models_[b] = Ridge(alpha=self.alpha).fit(
                design[mask], np.clip(target[mask], -20.0, 20.0)
            )

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        return self._point_at(y, first_hour, np.array([y.shape[1]]), h)[:, 0, :]

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        steps = np.arange(1, h + 1)
        x, centre, scale = build_features(y, first_hour, origins, steps)
        design = _design(x)
        raw = np.full(x.shape[:3], np.nan)
        buckets = horizon_bucket(steps)
        fitted = sorted(self.models_)
        for b in np.unique(buckets):
            if not fitted:
                break
            # A bucket without training rows borrows the nearest fitted one.
            model = self.models_[min(fitted, key=lambda f: abs(f - b))]
            cols = buckets == b
            part = design[:, :, cols, :]
            raw[:, :, cols] = model.predict(part.reshape(-1, part.shape[-1])).reshape(
                part.shape[:3]
            )
        return centre[:, :, None] + scale[:, :, None] * raw
