"""Telemetry: the frame contract, loaders, validation, resampling and the synthetic fleet.

Errors derive from :class:`TelemetryError`; the tree is drawn in :mod:`data.errors`.
Names load on first use, so ``import data`` (and ``creditx --help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from data.errors import TelemetryError
    from data.forecasts import quantile_column
    from data.frame import (
        ID_COL,
        MAX_COL,
        TARGET_COL,
        TIER_COL,
        TIME_COL,
        VCPUS_COL,
        coerce_frame,
        validate_frame,
    )
    from data.loaders import load_telemetry, read_telemetry
    from data.resample import (
        credit_usage,
        drop_partial_first_hours,
        resample,
        to_hourly,
        to_steps,
    )
    from data.synthetic import generate_fleet, iter_fleet
    from data.validation import ValidationPolicy, ValidationResult, validate_telemetry

__all__ = [
    "ID_COL",
    "MAX_COL",
    "TARGET_COL",
    "TIER_COL",
    "TIME_COL",
    "VCPUS_COL",
    "TelemetryError",
    "ValidationPolicy",
    "ValidationResult",
    "coerce_frame",
    "credit_usage",
    "drop_partial_first_hours",
    "generate_fleet",
    "iter_fleet",
    "load_telemetry",
    "quantile_column",
    "read_telemetry",
    "resample",
    "to_hourly",
    "to_steps",
    "validate_frame",
    "validate_telemetry",
]

_HOMES = {
    "TelemetryError": "data.errors",
    "ID_COL": "data.frame",
    "MAX_COL": "data.frame",
    "TARGET_COL": "data.frame",
    "TIER_COL": "data.frame",
    "TIME_COL": "data.frame",
    "VCPUS_COL": "data.frame",
    "coerce_frame": "data.frame",
    "quantile_column": "data.forecasts",
    "validate_frame": "data.frame",
    "load_telemetry": "data.loaders",
    "read_telemetry": "data.loaders",
    "credit_usage": "data.resample",
    "resample": "data.resample",
    "to_hourly": "data.resample",
    "to_steps": "data.resample",
    "drop_partial_first_hours": "data.resample",
    "generate_fleet": "data.synthetic",
    "iter_fleet": "data.synthetic",
    "ValidationPolicy": "data.validation",
    "ValidationResult": "data.validation",
    "validate_telemetry": "data.validation",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
