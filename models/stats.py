"""Exponential smoothing with an additive daily season (statsmodels Holt-Winters).

Each instance's smoothing weights are estimated by statsmodels on its recent history;
the states are then run forward over any panel in one vectorised pass, so forecasts
from many origins (or from newer observations) need no refit.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from models.base import SEASON, WEEK, Forecaster

_DEFAULT_WEIGHTS = (0.2, 0.05)  # level, season: used when estimation fails


class ETS(Forecaster):
    """Additive Holt-Winters without trend, season 24 h, weights per instance.

    Parameters
    ----------
    estimation_hours
        Hours at the end of each series the weights are estimated on.
    **kwargs
        Calibration options of :class:`~models.base.Forecaster`.
    """

    name: ClassVar[str] = "ets"
    min_history: ClassVar[int] = 2 * SEASON
    window: ClassVar[int] = 2 * WEEK

    def __init__(self, *, estimation_hours: int = 240, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.estimation_hours = estimation_hours

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        n = y.shape[0]
        weights = np.tile(np.asarray(_DEFAULT_WEIGHTS), (n, 1))
        self.estimated_ = np.zeros(n, dtype=bool)
        for i in range(n):
            row = y[i, -self.estimation_hours :]
            row = row[~np.isnan(row)]
            if len(row) < 2 * SEASON or np.ptp(row) < 1e-9:
                continue  # too short or flat: the default weights track it exactly
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    fitted = ExponentialSmoothing(
                        row,
                        seasonal="add",
                        seasonal_periods=SEASON,
                        initialization_method="heuristic"
                        if len(row) >= 10 * SEASON
                        else "estimated",
                    ).fit()
            except (ValueError, np.linalg.LinAlgError):
                continue
            alpha = fitted.params["smoothing_level"]
            gamma = fitted.params["smoothing_seasonal"]
            if np.isfinite(alpha) and np.isfinite(gamma):
                weights[i] = (alpha, gamma)
                self.estimated_[i] = True
        self.weights_ = weights

    def _states(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # level[:, t] and season[:, t] after observing column t.
        n, t = y.shape
        filled = y.copy()
        first = np.argmax(~np.isnan(filled), axis=1)
        start_value = filled[np.arange(n), first]
        filled = np.where(np.isnan(filled), start_value[:, None], filled)  # a late start looks flat
        alpha, gamma = self.weights_[:, 0], self.weights_[:, 1]
        level = np.empty((n, t))
        season = np.empty((n, t))
        init = min(SEASON, t)
        base = filled[:, :init].mean(axis=1)
        level[:, :init] = base[:, None]
        season[:, :init] = filled[:, :init] - base[:, None]
        prev = base
        for c in range(init, t):
            s_old = season[:, c - SEASON]
            new_level = alpha * (filled[:, c] - s_old) + (1 - alpha) * prev
            season[:, c] = gamma * (filled[:, c] - prev) + (1 - gamma) * s_old
            level[:, c] = new_level
            prev = new_level
        return level, season

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        return self._point_at(y, first_hour, np.array([y.shape[1]]), h)[:, 0, :]

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        level, season = self._states(y)
        target = origins[:, None] + np.arange(h)[None, :]  # column of each forecast hour
        last = origins - 1
        # The newest seasonal state at the target's hour of day, before the origin.
        back = SEASON * -(-(target - last[:, None]) // SEASON)
        source = target - back
        point = level[:, last][:, :, None] + np.where(
            source >= 0, season[:, np.maximum(source, 0)], 0.0
        )
        return point
