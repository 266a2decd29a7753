"""Telemetry: the frame contract, loaders, validation, resampling and the synthetic fleet."""

from data.frame import (
    ID_COL,
    MAX_COL,
    TARGET_COL,
    TIER_COL,
    TIME_COL,
    VCPUS_COL,
    quantile_column,
)

__all__ = [
    "ID_COL",
    "MAX_COL",
    "TARGET_COL",
    "TIER_COL",
    "TIME_COL",
    "VCPUS_COL",
    "quantile_column",
]
