"""Telemetry: the frame contract, loaders, validation, resampling and the synthetic fleet.

Errors derive from :class:`TelemetryError`; the tree is drawn in :mod:`data.errors`.
"""

from data.errors import TelemetryError
from data.frame import (
    ID_COL,
    MAX_COL,
    TARGET_COL,
    TIER_COL,
    TIME_COL,
    VCPUS_COL,
    coerce_frame,
    quantile_column,
    validate_frame,
)
from data.resample import credit_usage, resample, to_hourly
from data.synthetic import generate_fleet, iter_fleet

__all__ = [
    "ID_COL",
    "MAX_COL",
    "TARGET_COL",
    "TIER_COL",
    "TIME_COL",
    "VCPUS_COL",
    "TelemetryError",
    "coerce_frame",
    "credit_usage",
    "generate_fleet",
    "iter_fleet",
    "quantile_column",
    "resample",
    "to_hourly",
    "validate_frame",
]
