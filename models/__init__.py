"""Demand Prediction Module: hourly, daily and weekly forecasters with quantiles.

:class:`FleetForecaster` is the entry point: ``FleetForecaster(config).fit(frame)``
then ``.predict(h, quantiles)`` or ``.backtest(frame, origins, h)``. The candidate
models (:class:`Forecaster` subclasses) are small and array-shaped; errors derive
from :class:`ForecastError` (tree in :mod:`models.errors`).
"""

from models.base import Forecaster, PanelForecast
from models.config import DEFAULT_CANDIDATES, ForecastConfig
from models.errors import (
    ForecastError,
    InvalidInputError,
    InvalidQuantileError,
    NotFittedError,
    UnknownInstanceError,
)
from models.fleet import FleetForecaster
from models.user import DailyProfile, ExplicitForecast, WeeklyProfile

__all__ = [
    "DEFAULT_CANDIDATES",
    "DailyProfile",
    "ExplicitForecast",
    "FleetForecaster",
    "ForecastConfig",
    "ForecastError",
    "Forecaster",
    "InvalidInputError",
    "InvalidQuantileError",
    "NotFittedError",
    "PanelForecast",
    "UnknownInstanceError",
    "WeeklyProfile",
]
