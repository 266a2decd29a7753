"""What an agent reads of a forecast: horizons of points and quantiles per instance.

:func:`horizon_forecast` is the one adapter from a horizon's forecast columns (the
contract in :mod:`data.forecasts`: ``yhat`` and quantile columns) to what an agent
reads. Every hand-off goes through it: :func:`forecasts_from_frame` for the ``predict``
flow's frame (in-process agents), the HTTP agent for the API's points, and the replay
for its forecast table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING

from data.forecasts import HORIZON_COL, POINT_COL
from market.errors import InvalidAgentInput

if TYPE_CHECKING:
    import pandas as pd


_QUANTILE_COLUMN = re.compile(r"q\d+(\.\d+)?")


def quantile_level(column: str) -> Fraction:
    """Return the level of a quantile column name: ``"q90" -> 9/10``, ``"q97.5" -> 39/40``.

    Raises
    ------
    InvalidAgentInput
        For a name that is not ``q`` followed by a percentage strictly in ``(0, 100)``.
    """
    if not isinstance(column, str):
        raise InvalidAgentInput("quantile column", column, "must read like 'q50' or 'q90'")
    return _quantile_level(column)


@functools.lru_cache(maxsize=256)
def _quantile_level(column: str) -> Fraction:
    # every decision reads the same few column names: parse each once
    try:
        level = Fraction(column[1:]) / 100 if column.startswith("q") else None
    except ValueError:
        level = None
    if level is None or not 0 < level < 1:
        raise InvalidAgentInput("quantile column", column, "must read like 'q50' or 'q90'")
    return level


@dataclass(frozen=True, slots=True)
class HorizonForecast:
    """One horizon's hourly demand forecast, in percent of the instance's vCPUs.

    ``quantiles`` maps quantile columns (``"q50"``, ``"q90"``) to as many values as
    ``point``.
    """

    point: tuple[float, ...]
    quantiles: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class InstanceForecast:
    """An instance's forecasts for the next hour, day and week (any subset)."""

    generated_at: datetime
    horizons: Mapping[str, HorizonForecast]
    model_version: str = ""


def horizon_forecast(columns: Mapping[str, Sequence[float]]) -> HorizonForecast:
    """Return one horizon's forecast from its columns, hour by hour.

    ``columns`` maps ``yhat`` (the point forecast) and quantile columns (``q50``,
    ``q90``, ...) to as many values each; other columns are ignored.

    Raises
    ------
    InvalidAgentInput
        Without a ``yhat`` column, or for quantile columns not as long as it.
    """
    if POINT_COL not in columns:
        raise InvalidAgentInput("forecast", sorted(columns), f"has no {POINT_COL} column")
    point = tuple(float(v) for v in columns[POINT_COL])
    quantiles = {
        str(name): tuple(float(v) for v in values)
        for name, values in columns.items()
        if _QUANTILE_COLUMN.fullmatch(str(name))
    }
    for name, values in quantiles.items():
        if len(values) != len(point):
            raise InvalidAgentInput(name, len(values), f"must hold {len(point)} hours")
    return HorizonForecast(point, quantiles)


def forecasts_from_frame(frame: pd.DataFrame) -> dict[str, InstanceForecast]:
    """Return each instance's forecast from the ``predict`` flow's frame.

    ``frame`` has ``unique_id, horizon, ds, yhat`` and quantile columns (``q50``,
    ``q90``), with ``generated_at`` and ``model_version`` where known.
    """
    columns = [POINT_COL, *(c for c in frame.columns if _QUANTILE_COLUMN.fullmatch(str(c)))]
    out: dict[str, InstanceForecast] = {}
    ordered = frame.sort_values(["unique_id", HORIZON_COL, "ds"])
    for unique_id, rows in ordered.groupby("unique_id", sort=True, observed=True):
        horizons = {
            str(name): horizon_forecast({c: part[c].tolist() for c in columns})
            for name, part in rows.groupby(HORIZON_COL, sort=True, observed=True)
        }
        generated = (
            rows["generated_at"].iloc[0].to_pydatetime()
            if "generated_at" in rows
            else rows["ds"].iloc[0].to_pydatetime() - timedelta(hours=1)
        )
        version = str(rows["model_version"].iloc[0]) if "model_version" in rows else ""
        out[str(unique_id)] = InstanceForecast(generated, horizons, version)
    return out
