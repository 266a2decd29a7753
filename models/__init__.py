"""Demand Prediction Module: hourly, daily and weekly forecasters with quantiles.

:class:`FleetForecaster` is the entry point: ``FleetForecaster(config).fit(frame)``
then ``.predict(h, quantiles)`` or ``.backtest(frame, origins, h)``. The candidate
models (:class:`Forecaster` subclasses) are small and array-shaped; errors derive
from :class:`ForecastError` (tree in :mod:`models.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Names load on first use, so importing a command module (and ``creditx --help``)
# does not load pandas, SQLAlchemy and the forecasters.
_HOMES = {
    "Forecaster": "models.base",
    "PanelForecast": "models.base",
    "DEFAULT_CANDIDATES": "models.config",
    "ForecastConfig": "models.config",
    "ForecastError": "models.errors",
    "InvalidInputError": "models.errors",
    "InvalidQuantileError": "models.errors",
    "NotFittedError": "models.errors",
    "UnknownInstanceError": "models.errors",
    "FleetForecaster": "models.fleet",
    "DailyProfile": "models.user",
    "ExplicitForecast": "models.user",
    "WeeklyProfile": "models.user",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
