"""User-defined forecasts: an instance owner's own demand forecast, overriding the learned one.

An override is a fixed daily profile (24 hourly values by UTC hour of day), a fixed
weekly profile (168 values from Monday 00:00 UTC) or an explicit series of hourly
values. Where it gives a value, every quantile equals it and the forecast's
``source`` column says ``"user"``; hours an explicit series does not cover keep the
learned forecast (``source == "learned"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.errors import InvalidInputError


def _finite_values(values: Sequence[float], length: int | None, what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if length is not None and len(out) != length:
        raise InvalidInputError(what, f"needs {length} hourly values, got {len(out)}")
    if not out or not all(math.isfinite(v) for v in out):
        raise InvalidInputError(what, "values must be finite numbers")
    return out


@dataclass(frozen=True, slots=True)
class DailyProfile:
    """The same demand every day: ``values[k]`` is the demand at UTC hour ``k``."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _finite_values(self.values, 24, "daily profile"))

    def values_at(self, ds: pd.DatetimeIndex) -> np.ndarray:
        """Return the demand at each hour of ``ds``."""
        return np.asarray(self.values)[np.asarray(ds.hour)]


@dataclass(frozen=True, slots=True)
class WeeklyProfile:
    """The same demand every week: ``values[24 * weekday + hour]``, Monday 00:00 UTC first."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _finite_values(self.values, 168, "weekly profile"))

    def values_at(self, ds: pd.DatetimeIndex) -> np.ndarray:
        """Return the demand at each hour of ``ds``."""
        return np.asarray(self.values)[24 * np.asarray(ds.dayofweek) + np.asarray(ds.hour)]


@dataclass(frozen=True, slots=True)
class ExplicitForecast:
    """Demand given hour by hour; hours it does not name keep the learned forecast."""

    hours: tuple[pd.Timestamp, ...]
    values: tuple[float, ...]

    @classmethod
    def from_mapping(cls, values: Mapping[pd.Timestamp, float] | pd.Series) -> ExplicitForecast:
        """Build from ``{hour: demand}`` or a Series indexed by UTC hours."""
        series = pd.Series(values, dtype="float64")
        index = pd.DatetimeIndex(series.index)
        if index.tz is None:
            raise InvalidInputError("explicit forecast", "hours must be timezone-aware (UTC)")
        index = index.tz_convert("UTC")
        if (index != index.floor("h")).any():
            raise InvalidInputError("explicit forecast", "hours must start on the hour")
        if index.has_duplicates:
            raise InvalidInputError("explicit forecast", "names an hour twice")
        return cls(tuple(index), _finite_values(series.to_list(), None, "explicit forecast"))

    def values_at(self, ds: pd.DatetimeIndex) -> np.ndarray:
        """Return the demand at each hour of ``ds``, NaN where this forecast is silent."""
        series = pd.Series(self.values, index=pd.DatetimeIndex(self.hours), dtype="float64")
        return series.reindex(ds).to_numpy(dtype=np.float64)


UserForecast = DailyProfile | WeeklyProfile | ExplicitForecast


def override_forecast(
    user: UserForecast,
    ds: pd.DatetimeIndex,
    columns: Mapping[str, np.ndarray],
    sources: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Put an owner's forecast in force: the one rule the model and the API both apply.

    Wherever ``user`` gives a demand for an hour of ``ds``, every column (the point
    forecast and each quantile) takes it and the source becomes ``"user"``; elsewhere
    the learned values and sources stay. Returns new arrays.
    """
    given = user.values_at(ds)
    mask = ~np.isnan(given)
    out = {
        name: np.where(mask, given, np.asarray(values, np.float64))
        for name, values in columns.items()
    }
    return out, np.where(mask, "user", np.asarray(sources, dtype=object)).astype(object)
