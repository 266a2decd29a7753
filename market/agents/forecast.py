"""What an agent reads of a forecast: horizons of points and quantiles per instance.

:func:`forecasts_from_frame` turns the ``predict`` flow's frame (the contract in
:mod:`data.forecasts`) into the :class:`InstanceForecast` each agent decides on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING

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


def forecasts_from_frame(frame: pd.DataFrame) -> dict[str, InstanceForecast]:
    """Return each instance's forecast from the ``predict`` flow's frame.

    ``frame`` has ``unique_id, horizon, ds, yhat`` and quantile columns (``q50``,
    ``q90``), with ``generated_at`` and ``model_version`` where known.
    """
    quantile_columns = [c for c in frame.columns if _QUANTILE_COLUMN.fullmatch(str(c))]
    out: dict[str, InstanceForecast] = {}
    ordered = frame.sort_values(["unique_id", "horizon", "ds"])
    for unique_id, rows in ordered.groupby("unique_id", sort=True, observed=True):
        horizons = {
            str(name): HorizonForecast(
                tuple(float(v) for v in part["yhat"]),
                {q: tuple(float(v) for v in part[q]) for q in quantile_columns},
            )
            for name, part in rows.groupby("horizon", sort=True, observed=True)
        }
        generated = (
            rows["generated_at"].iloc[0].to_pydatetime()
            if "generated_at" in rows
            else rows["ds"].iloc[0].to_pydatetime() - timedelta(hours=1)
        )
        version = str(rows["model_version"].iloc[0]) if "model_version" in rows else ""
        out[str(unique_id)] = InstanceForecast(generated, horizons, version)
    return out
