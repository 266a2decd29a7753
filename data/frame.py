"""The frame contract shared by ``data/``, ``models/`` and ``pipelines/``.

Telemetry travels as one long-format :class:`pandas.DataFrame`:

========== ======================= ==================================================
column     dtype                   meaning
========== ======================= ==================================================
unique_id  string or category        instance id (category of strings for large fleets)
ds         datetime64[ns, UTC]     start of the interval
y          float64 (or float32)    mean CPU utilisation, percent of the instance's vCPUs
y_max      float64 (optional)      maximum CPU utilisation in the interval, percent
tier       string (optional)       the instance's resource tier
vcpus      int64 (optional)        the instance's vCPU count
========== ======================= ==================================================

:func:`validate_frame` checks a frame against this table; :func:`coerce_frame`
converts a frame with the right columns to these dtypes.

Forecasts follow their own contract, :mod:`data.forecasts`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.columns import (
    ID_COL,
    MAX_COL,
    REQUIRED_COLUMNS,
    TARGET_COL,
    TIER_COL,
    TIME_COL,
    VCPUS_COL,
)
from data.errors import FrameContractError, MissingColumnError, TelemetryParseError


def epoch_nanoseconds(ds: pd.Series) -> np.ndarray:
    """Return the ``ds`` column as int64 nanoseconds since the epoch, without copying."""
    values = ds.array
    if not isinstance(values, pd.arrays.DatetimeArray):
        values = pd.DatetimeIndex(ds).array
    if values.unit != "ns":
        values = values.as_unit("ns")
    return pd.DatetimeIndex(values, copy=False).asi8


def is_sorted_by_id_time(frame: pd.DataFrame) -> bool:
    """Return whether ``frame`` is sorted by ``unique_id`` (categories in order), then ``ds``."""
    ids = frame[ID_COL]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        if not ids.cat.categories.is_monotonic_increasing:
            return False
        codes = ids.cat.codes.to_numpy()
    else:
        codes = pd.factorize(ids, sort=True)[0]
    ds = epoch_nanoseconds(frame[TIME_COL])
    step_up = codes[1:] > codes[:-1]
    return bool(np.all(step_up | ((codes[1:] == codes[:-1]) & (ds[1:] >= ds[:-1]))))


def _is_string_ids(ids: pd.Series) -> bool:
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return pd.api.types.is_string_dtype(ids.cat.categories.dtype)
    return pd.api.types.is_string_dtype(ids.dtype)


def validate_frame(frame: pd.DataFrame) -> None:
    """Check that ``frame`` meets the frame contract, without changing it.

    Parameters
    ----------
    frame
        A telemetry or forecast frame.

    Raises
    ------
    MissingColumnError
        If ``unique_id``, ``ds`` or ``y`` is absent.
    FrameContractError
        If a column has the wrong dtype, ``ds`` is not UTC or ``y`` holds infinities.
    """
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise MissingColumnError(None, column, [str(c) for c in frame.columns])
    if not _is_string_ids(frame[ID_COL]):
        raise FrameContractError(
            ID_COL, "string or category of strings", f"got {frame[ID_COL].dtype}"
        )
    ds_dtype = frame[TIME_COL].dtype
    if not isinstance(ds_dtype, pd.DatetimeTZDtype) or str(ds_dtype.tz) != "UTC":
        raise FrameContractError(TIME_COL, "datetime64[ns, UTC]", f"got {ds_dtype}")
    if ds_dtype.unit != "ns":
        raise FrameContractError(TIME_COL, "datetime64[ns, UTC]", f"got unit {ds_dtype.unit!r}")
    for column in (TARGET_COL, MAX_COL):
        if column not in frame.columns:
            continue
        dtype = frame[column].dtype
        if dtype not in (np.float64, np.float32):
            raise FrameContractError(column, "float64 or float32", f"got {dtype}")
        values = frame[column].to_numpy()
        if np.isinf(values).any():
            raise FrameContractError(column, "finite values or NaN", "found an infinity")
    if VCPUS_COL in frame.columns and not pd.api.types.is_integer_dtype(frame[VCPUS_COL].dtype):
        raise FrameContractError(VCPUS_COL, "integer vCPU counts", f"got {frame[VCPUS_COL].dtype}")
    if TIER_COL in frame.columns and not _is_string_ids(frame[TIER_COL]):
        raise FrameContractError(
            TIER_COL, "string or category of strings", f"got {frame[TIER_COL].dtype}"
        )


def coerce_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` converted to the dtypes of the frame contract.

    Naive timestamps are read as UTC, aware ones are converted to UTC; ids become
    strings unless they are already categorical; ``y`` and ``y_max`` become float64
    unless they are float32. Columns outside the contract are kept unchanged.

    Parameters
    ----------
    frame
        A long-format frame with at least ``unique_id``, ``ds`` and ``y``.

    Returns
    -------
    pandas.DataFrame
        A new frame that passes :func:`validate_frame`; the input is not modified.

    Raises
    ------
    MissingColumnError
        If a required column is absent.
    TelemetryParseError
        If a timestamp or a value does not parse; the message names the first bad row.
    FrameContractError
        If a value is infinite.
    """
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise MissingColumnError(None, column, [str(c) for c in frame.columns])
    out = frame.copy(deep=False)
    if not _is_string_ids(out[ID_COL]):
        out[ID_COL] = out[ID_COL].astype("str")
    out[TIME_COL] = _coerce_timestamps(out[TIME_COL])
    for column in (TARGET_COL, MAX_COL):
        if column in out.columns and out[column].dtype not in (np.float64, np.float32):
            out[column] = _coerce_numbers(out[column], column)
    if VCPUS_COL in out.columns and not pd.api.types.is_integer_dtype(out[VCPUS_COL].dtype):
        vcpus = _coerce_numbers(out[VCPUS_COL], VCPUS_COL)
        bad = vcpus.isna() | (vcpus != np.round(vcpus)) | (vcpus < 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TelemetryParseError(
                None, VCPUS_COL, row, out[VCPUS_COL].iloc[row], "a whole vCPU count >= 1"
            )
        out[VCPUS_COL] = vcpus.astype(np.int64)
    if TIER_COL in out.columns and not _is_string_ids(out[TIER_COL]):
        out[TIER_COL] = out[TIER_COL].astype("str")
    validate_frame(out)
    return out


def _coerce_timestamps(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        if str(values.dtype.tz) == "UTC" and values.dtype.unit == "ns":
            return values
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & values.notna()
        if values.isna().any() or bad.any():
            row = int(np.flatnonzero((bad | values.isna()).to_numpy())[0])
            raise TelemetryParseError(None, TIME_COL, row, values.iloc[row], "a timestamp")
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise TelemetryParseError(None, TIME_COL, row, values.iloc[row], "a timestamp")
    return parsed.dt.as_unit("ns")


def _coerce_numbers(values: pd.Series, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TelemetryParseError(None, column, row, values.iloc[row], "a number")
    return numbers
