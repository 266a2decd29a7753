"""Baselines: the last value (naive) and the value one season earlier (seasonal naive)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from models.base import SEASON, Forecaster


class Naive(Forecaster):
    """Forecast every future hour as the last observed hour."""

    name: ClassVar[str] = "naive"
    min_history: ClassVar[int] = 1
    window: ClassVar[int] = 1

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        self.fitted_ = True

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        return np.repeat(y[:, -1:], h, axis=1)

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        return np.repeat(y[:, origins - 1][:, :, None], h, axis=2)


class SeasonalNaive(Forecaster):
    """Forecast each hour as the same hour one season (24 h by default) earlier.

    Parameters
    ----------
    season
        Season length in hours.
    **kwargs
        Calibration options of :class:`~models.base.Forecaster`.
    """

    name: ClassVar[str] = "seasonal_naive"
    min_history: ClassVar[int] = SEASON

    def __init__(self, season: int = SEASON, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.season = season

    def __repr__(self) -> str:
        return f"SeasonalNaive(season={self.season})"

    @property
    def window(self) -> int:  # type: ignore[override]
        return self.season

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        self.fitted_ = True

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        t = y.shape[1]
        if t < self.season:
            return np.full((y.shape[0], h), np.nan)
        return y[:, t - self.season + np.arange(h) % self.season]

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        idx = origins[:, None] - self.season + np.arange(h)[None, :] % self.season
        return np.where(idx >= 0, y[:, np.maximum(idx, 0)], np.nan)
