"""The forecast contract: the frame the ``predict`` flow writes and every consumer reads.

Forecasts travel as one long-format frame, beside the telemetry contract
(:mod:`data.columns`):

============= ================== =====================================================
column        dtype              meaning
============= ================== =====================================================
unique_id     string             instance id
horizon       string             one of :data:`HORIZONS` (``hour``, ``day``, ``week``)
ds            datetime64[UTC]    the hour forecast
yhat          float64            the point forecast: the median, ``q50``
q10, q50, q90 float64            quantiles of :data:`QUANTILES`, never crossing, 0-100 %
source        string (optional)  ``learned``, ``fallback``, ``prior`` or ``user``
============= ================== =====================================================

Values are percent of the instance's vCPUs, like the telemetry's ``y``. The constants
here are the one definition the models, the pipelines, the agents and the API use.
"""

from __future__ import annotations

from collections.abc import Mapping

HORIZON_COL = "horizon"
POINT_COL = "yhat"
SOURCE_COL = "source"

HORIZONS: Mapping[str, int] = {"hour": 1, "day": 24, "week": 168}
"""Horizons served to the market, in hours ahead: next hour, day and week."""

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
"""Quantile levels every forecast carries."""


def quantile_column(level: float) -> str:
    """Return the forecast column name of a quantile level, e.g. ``0.9 -> "q90"``.

    Levels that are not whole percentages keep their digits: ``0.975 -> "q97.5"``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"quantile level must lie strictly between 0 and 1, got {level!r}")
    pct = round(level * 100, 6)
    return f"q{int(pct)}" if pct == int(pct) else f"q{pct:g}"


QUANTILE_COLUMNS: tuple[str, ...] = tuple(quantile_column(q) for q in QUANTILES)
"""The quantile columns of every forecast frame: ``q10``, ``q50``, ``q90``."""

MEDIAN_COL = quantile_column(0.5)
UPPER_COL = quantile_column(0.9)
"""The quantile agents buy for by default and the CEM reads demand from."""
