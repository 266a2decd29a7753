"""Simple forecasters: the last value (naive), the value one season earlier (seasonal
naive), and the recent level plus the typical daily shape (seasonal median).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from models.base import SEASON, Forecaster, nan_median


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


class SeasonalMedian(Forecaster):
    """Forecast the recent level plus the median daily shape of the last days.

    The level is the median of the last ``level_hours`` hours; the shape at an hour
    of the day is the median, over the last ``days`` days, of that hour's value less
    its day's median. Medians make both robust to a burst, and a level read from the
    last hours follows a shift that a seasonal naive forecast repeats for a day only.

    Parameters
    ----------
    level_hours
        Hours whose median is the level.
    days
        Days whose hourly deviations from their median give the daily shape.
    **kwargs
        Calibration options of :class:`~models.base.Forecaster`.
    """

    name: ClassVar[str] = "seasonal_median"
    min_history: ClassVar[int] = SEASON

    def __init__(self, *, level_hours: int = 12, days: int = 7, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.level_hours = level_hours
        self.days = days

    def __repr__(self) -> str:
        return f"SeasonalMedian(level_hours={self.level_hours}, days={self.days})"

    @property
    def window(self) -> int:  # type: ignore[override]
        return max(self.days * SEASON, self.level_hours)

    def _fit(self, y: np.ndarray, first_hour: int) -> None:
        self.fitted_ = True

    def _point(self, y: np.ndarray, first_hour: int, h: int) -> np.ndarray:
        return self._point_at(y, first_hour, np.array([y.shape[1]]), h)[:, 0, :]

    def _point_at(self, y: np.ndarray, first_hour: int, origins: np.ndarray, h: int) -> np.ndarray:
        def before(idx: np.ndarray) -> np.ndarray:
            # y at column origin + idx per origin, NaN before the first column.
            cols = origins.reshape(-1, *([1] * idx.ndim)) + idx[None]
            return np.where(cols >= 0, y[:, np.maximum(cols, 0)], np.nan)

        level = nan_median(before(-np.arange(1, self.level_hours + 1)))  # (n, o)
        back = -SEASON * np.arange(self.days, 0, -1)[:, None] + np.arange(SEASON)[None, :]
        days = before(back)  # (n, o, days, 24): whole days ending at the origin
        deviation = days - nan_median(days)[..., None]
        shape = nan_median(np.moveaxis(deviation, -1, -2))  # (n, o, 24), by hour
        point = level[:, :, None] + shape[:, :, np.arange(h) % SEASON]
        return point  # NaN where the series had not started: the caller repairs it
