"""Resampling to hourly and daily intervals, and the CPU-credit usage of each interval.

All functions work on whole columns with numpy, so a fleet of 80 M five-minute rows
resamples in seconds. Bins are aligned to the UTC epoch: hours start on the hour,
days at midnight UTC, as ``pandas.DataFrame.resample`` does.

A credit is one vCPU at 100 % for one minute, so an interval of ``minutes`` at ``y``
percent on ``vcpus`` vCPUs uses ``y / 100 * vcpus * minutes`` credits, and an instance
with a baseline of ``baseline`` (a share of each vCPU, e.g. ``0.10``) earns
``baseline * vcpus * minutes`` credits.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from data.errors import InvalidParameterError, MissingColumnError
from data.frame import (
    ID_COL,
    MAX_COL,
    TARGET_COL,
    TIER_COL,
    TIME_COL,
    VCPUS_COL,
    epoch_nanoseconds,
)

__all__ = [
    "AGGREGATES",
    "credit_usage",
    "drop_partial_first_hours",
    "resample",
    "to_hourly",
    "to_steps",
]

#: Aggregates :func:`resample` computes, and the column each one is written to.
AGGREGATES: dict[str, str] = {"mean": TARGET_COL, "max": MAX_COL, "p95": "y_p95"}

_NS_PER_MINUTE = 60_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_STATIC = (TIER_COL, VCPUS_COL)


def resample(
    frame: pd.DataFrame,
    freq: str = "1h",
    aggregates: Sequence[str] = ("mean", "max", "p95"),
) -> pd.DataFrame:
    """Resample each instance to ``freq`` intervals.

    Only intervals holding at least one reading appear; :func:`to_hourly` fills the
    gaps. NaN readings are ignored; an interval of only NaN readings gives NaN.
    ``max`` takes the maximum of ``y_max`` where the frame has it (the true peak),
    else of ``y``; ``p95`` is the 95th percentile of ``y`` with linear interpolation,
    as :meth:`pandas.Series.quantile` computes it.

    Parameters
    ----------
    frame
        A frame in the contract.
    freq
        The new interval, e.g. ``"1h"`` or ``"1D"``; at most one day and a whole
        number of minutes.
    aggregates
        Any of ``"mean"``, ``"max"``, ``"p95"``, written to ``y``, ``y_max`` and
        ``y_p95``.

    Returns
    -------
    pandas.DataFrame
        ``unique_id``, ``ds`` (interval start), the aggregates and the per-instance
        ``tier`` and ``vcpus`` where the frame has them, sorted by id then time.

    Raises
    ------
    InvalidParameterError
        If ``freq`` or an aggregate is not supported.
    MissingColumnError
        If a required column is absent.
    """
    step = _step_ns(freq)
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown or not aggregates:
        raise InvalidParameterError("aggregates", list(aggregates), f"some of {list(AGGREGATES)}")
    _require(frame, (ID_COL, TIME_COL, TARGET_COL))

    codes, categories = _codes(frame[ID_COL])
    bins = _epoch_ns(frame[TIME_COL]) // step
    order = _sort_order(codes, bins)
    if order is not None:
        codes, bins = codes[order], bins[order]
    starts = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]) | (bins[1:] != bins[:-1])])

    columns: dict[str, object] = {
        ID_COL: pd.Categorical.from_codes(codes[starts], dtype=pd.CategoricalDtype(categories)),
        TIME_COL: _timestamps(bins[starts] * step),
        **_aggregated(frame, aggregates, starts, order),
    }
    for column in _STATIC:
        if column in frame.columns:
            rows = starts if order is None else order[starts]
            columns[column] = frame[column].iloc[rows].to_numpy()
    return _restore_id_dtype(pd.DataFrame(columns), frame)


def _aggregated(
    frame: pd.DataFrame, aggregates: Sequence[str], starts: np.ndarray, order: np.ndarray | None
) -> dict[str, object]:
    # each asked aggregate of the sorted readings, per group starting at ``starts``
    y = _column(frame, TARGET_COL, order)
    columns: dict[str, object] = {}
    if "mean" in aggregates:
        columns[TARGET_COL] = _group_mean(y, starts)
    if "max" in aggregates:
        peak = _column(frame, MAX_COL, order) if MAX_COL in frame.columns else y
        columns[MAX_COL] = _group_max(peak, starts)
    if "p95" in aggregates:
        columns[AGGREGATES["p95"]] = _group_quantile(y, starts, 0.95)
    return columns


def to_hourly(frame: pd.DataFrame) -> pd.DataFrame:
    """Prepare hourly data exactly as the demand-forecast task does.

    Average each instance's ``y`` per hour, add the hours with no readings between an
    instance's first and last hour, fill them by linear interpolation, and fill any
    leading or trailing NaN with the nearest value (``interpolate().bfill().ffill()``
    per instance).

    Parameters
    ----------
    frame
        A frame in the contract at any interval that divides an hour.

    Returns
    -------
    pandas.DataFrame
        ``unique_id``, ``ds`` (UTC, on the hour), ``y``, plus ``tier`` and ``vcpus``
        where the frame has them; one row per instance and hour, without gaps.

    Raises
    ------
    MissingColumnError
        If a required column is absent.
    """
    hourly = resample(frame, "1h", ("mean",))
    step = 3_600_000_000_000
    codes, categories = _codes(hourly[ID_COL])
    hours = _epoch_ns(hourly[TIME_COL]) // step

    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    last = np.r_[first[1:], len(codes)] - 1
    lengths = hours[last] - hours[first] + 1
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    group_of_row = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(codes)]))
    position = offsets[group_of_row] + hours - hours[first][group_of_row]

    total = int(lengths.sum())
    group = np.repeat(np.arange(len(first)), lengths)
    grid_hours = hours[first][group] + (np.arange(total) - offsets[group])
    y = np.full(total, np.nan)
    y[position] = hourly[TARGET_COL].to_numpy(dtype=np.float64)
    columns: dict[str, object] = {
        ID_COL: pd.Categorical.from_codes(
            codes[first][group], dtype=pd.CategoricalDtype(categories)
        ),
        TIME_COL: _timestamps(grid_hours * step),
        TARGET_COL: _fill_within_groups(y, group),
    }
    for column in _STATIC:
        if column in hourly.columns:
            columns[column] = hourly[column].iloc[first[group]].to_numpy()
    return _restore_id_dtype(pd.DataFrame(columns), frame)


def drop_partial_first_hours(frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Drop each instance's readings before its first whole UTC hour.

    An instance whose telemetry starts at 10:07 keeps its readings from 11:00 on, so
    every instance's first hour is a full one and hourly series start on the hour.

    Parameters
    ----------
    frame
        A frame in the contract.

    Returns
    -------
    tuple[pandas.DataFrame, str | None]
        The kept rows in their order, and a one-line note of what was dropped (``None``
        when every instance already starts on the hour).

    Raises
    ------
    MissingColumnError
        If ``unique_id`` or ``ds`` is absent.
    """
    _require(frame, (ID_COL, TIME_COL))
    if frame.empty:
        return frame, None
    codes, _ = _codes(frame[ID_COL])
    ns = _epoch_ns(frame[TIME_COL])
    first = np.full(int(codes.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, codes, ns)
    boundary = -(-first // _NS_PER_HOUR) * _NS_PER_HOUR
    keep = ns >= boundary[codes]
    if keep.all():
        return frame, None
    partial = np.unique(codes[~keep])
    note = (
        f"dropped the partial first hour of {len(partial):,} instance(s) "
        f"({int((~keep).sum()):,} readings before their first whole hour)"
    )
    return frame.loc[keep].reset_index(drop=True), note


def to_steps(frame: pd.DataFrame, step: str = "5min") -> tuple[pd.DataFrame, list[str]]:
    """Put each instance's readings on one UTC grid of ``step``, starting on the hour.

    Readings closer together than ``step`` (or off its grid) are averaged into the
    step that holds them; readings further apart (an interval that is a multiple of
    ``step`` and divides an hour, or whole hours) are repeated over every step of their
    interval from the step they fall in; then each instance's partial first hour is
    dropped (:func:`drop_partial_first_hours`).

    Parameters
    ----------
    frame
        A frame in the contract, e.g. validated CloudWatch or Azure telemetry.
    step
        The grid's interval; it divides an hour.

    Returns
    -------
    tuple[pandas.DataFrame, list[str]]
        ``unique_id``, ``ds``, ``y`` (plus ``y_max``, ``tier`` and ``vcpus`` where the
        frame has them) on the grid, sorted by id then time; and one note per change.

    Raises
    ------
    InvalidParameterError
        If ``step`` does not divide an hour, or the readings' interval is coarser than
        ``step`` but not a multiple of it.
    MissingColumnError
        If a required column is absent.
    """
    step_ns = _step_ns(step)
    if _NS_PER_HOUR % step_ns:
        raise InvalidParameterError("step", step, "an interval that divides an hour")
    _require(frame, (ID_COL, TIME_COL, TARGET_COL))
    notes: list[str] = []
    if frame.empty:
        return frame, notes
    ns = _epoch_ns(frame[TIME_COL])
    try:
        spacing = _interval_minutes(frame, None) * _NS_PER_MINUTE
    except InvalidParameterError:
        spacing = step_ns  # single readings: nothing tells their interval
    label = _duration(spacing)
    if spacing > step_ns:
        if spacing % step_ns or (_NS_PER_HOUR % spacing and spacing % _NS_PER_HOUR):
            raise InvalidParameterError(
                "interval", label, f"a multiple of {step} that divides an hour or whole hours"
            )
        repeat = spacing // step_ns
        frame = _repeated(frame, ns, step_ns, repeat)
        notes.append(f"repeated each reading every {label} over its {int(repeat)} {step} steps")
    elif spacing < step_ns or (ns % step_ns).any():
        aggregates = ("mean", "max") if MAX_COL in frame.columns else ("mean",)
        frame = resample(frame, step, aggregates)
        notes.append(f"averaged readings every {label} onto a {step} grid aligned to the hour")
    frame, note = drop_partial_first_hours(frame)
    if note is not None:
        notes.append(note)
    return frame, notes


def _repeated(frame: pd.DataFrame, ns: np.ndarray, step_ns: int, repeat: int) -> pd.DataFrame:
    # Each reading covers its interval from the grid step it falls in.
    rows = np.repeat(np.arange(len(frame)), repeat)
    out = frame.iloc[rows].reset_index(drop=True)
    shift = np.tile(np.arange(repeat, dtype=np.int64) * step_ns, len(rows) // repeat)
    out[TIME_COL] = _timestamps(np.repeat(ns - ns % step_ns, repeat) + shift)
    return out


def credit_usage(
    frame: pd.DataFrame,
    baseline: float | Decimal | str,
    vcpus: int | None = None,
    interval: str | None = None,
) -> pd.DataFrame:
    """Return the credits each interval uses and earns.

    Parameters
    ----------
    frame
        A frame in the contract with regularly spaced ``ds``.
    baseline
        The baseline share of each vCPU, from 0 to 1 (``0.10`` for a t3.micro); a
        ``Decimal`` or a string keeps it exact.
    vcpus
        The vCPU count of every instance; ``None`` takes the frame's ``vcpus`` column.
    interval
        The interval length, e.g. ``"5min"``; ``None`` infers the most common spacing.

    Returns
    -------
    pandas.DataFrame
        The frame plus ``credits_used`` and ``credits_earned`` (float credits), and
        ``millicredits_used`` and ``millicredits_earned`` (int64, rounded to the
        nearest milli-credit; earnings are exact for a decimal baseline).

    Raises
    ------
    InvalidParameterError
        If the baseline, the vCPU count or the interval is invalid.
    MissingColumnError
        If ``vcpus`` is ``None`` and the frame has no ``vcpus`` column.
    """
    share = _baseline(baseline)
    _require(frame, (ID_COL, TIME_COL, TARGET_COL))
    if vcpus is None:
        _require(frame, (VCPUS_COL,))
        counts = frame[VCPUS_COL].to_numpy(dtype=np.int64)
    else:
        if isinstance(vcpus, bool) or not isinstance(vcpus, int | np.integer) or vcpus < 1:
            raise InvalidParameterError("vcpus", vcpus, "a whole vCPU count >= 1")
        counts = np.full(len(frame), int(vcpus), dtype=np.int64)
    minutes = _interval_minutes(frame, interval)

    out = frame.copy(deep=False)
    used = frame[TARGET_COL].to_numpy(dtype=np.float64) / 100.0 * counts * minutes
    out["credits_used"] = used
    out["credits_earned"] = float(share) * counts * minutes
    out["millicredits_used"] = np.rint(used * 1000.0).astype(np.int64)
    # An exact integer rate per vCPU keeps earnings free of float rounding.
    per_vcpu = int((share * minutes * 1000).to_integral_value())
    if share * minutes * 1000 != per_vcpu:
        raise InvalidParameterError(
            "baseline", baseline, "a share whose earnings are whole milli-credits per interval"
        )
    out["millicredits_earned"] = counts * per_vcpu
    return out


def _baseline(baseline: float | Decimal | str) -> Decimal:
    if isinstance(baseline, bool):
        raise InvalidParameterError("baseline", baseline, "a share between 0 and 1")
    try:
        share = Decimal(str(baseline)) if not isinstance(baseline, Decimal) else baseline
    except InvalidOperation as exc:
        raise InvalidParameterError("baseline", baseline, "a share between 0 and 1") from exc
    if not share.is_finite() or not 0 <= share <= 1:
        raise InvalidParameterError("baseline", baseline, "a share between 0 and 1")
    return share


def _interval_minutes(frame: pd.DataFrame, interval: str | None) -> int:
    if interval is not None:
        return _step_ns(interval) // _NS_PER_MINUTE
    ds = _epoch_ns(frame[TIME_COL])
    same = frame[ID_COL].to_numpy()[1:] == frame[ID_COL].to_numpy()[:-1]
    spacing = np.diff(ds)[same]
    spacing = spacing[spacing > 0]
    if len(spacing) == 0:
        raise InvalidParameterError("interval", None, "an interval for a frame of single rows")
    values, counts = np.unique(spacing, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step % _NS_PER_MINUTE:
        raise InvalidParameterError("interval", pd.Timedelta(step), "a whole number of minutes")
    return step // _NS_PER_MINUTE


def _duration(ns: int) -> str:
    minutes = ns // _NS_PER_MINUTE
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _step_ns(freq: str) -> int:
    try:
        step = pd.Timedelta(freq)
    except ValueError as exc:
        raise InvalidParameterError("freq", freq, "a pandas offset such as '1h'") from exc
    ns = int(step.value)
    if ns <= 0 or ns % _NS_PER_MINUTE or step > pd.Timedelta("1D"):
        raise InvalidParameterError("freq", freq, "a whole number of minutes up to 1D")
    return ns


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise MissingColumnError(None, column, [str(c) for c in frame.columns])


def _codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids.cat.codes.to_numpy(), ids.cat.categories
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def _restore_id_dtype(out: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    # Ids keep the caller's dtype: categorical stays categorical, strings stay strings.
    if not isinstance(source[ID_COL].dtype, pd.CategoricalDtype):
        out[ID_COL] = out[ID_COL].astype(source[ID_COL].dtype)
    return out


def _sort_order(codes: np.ndarray, bins: np.ndarray) -> np.ndarray | None:
    sorted_already = len(codes) < 2 or bool(
        np.all((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (bins[1:] >= bins[:-1])))
    )
    return None if sorted_already else np.lexsort((bins, codes))


def _column(frame: pd.DataFrame, column: str, order: np.ndarray | None) -> np.ndarray:
    values = frame[column].to_numpy(dtype=np.float64)
    return values if order is None else values[order]


def _epoch_ns(ds: pd.Series) -> np.ndarray:
    return epoch_nanoseconds(ds)


def _timestamps(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ns.astype(np.int64).view("M8[ns]")).tz_localize("UTC")


def _group_mean(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    sums = np.add.reduceat(np.where(valid, values, 0.0), starts)
    counts = np.add.reduceat(valid.astype(np.int64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _group_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.fmax.reduceat(values, starts)


def _group_quantile(values: np.ndarray, starts: np.ndarray, q: float) -> np.ndarray:
    sizes = np.diff(np.r_[starts, len(values)])
    if len(sizes) and np.all(sizes == sizes[0]):
        # Regular data: every group has the same size, so a 2-D view sorts in place.
        block = values.reshape(len(sizes), int(sizes[0]))
        if np.isnan(block).any():
            with np.errstate(invalid="ignore"):
                return np.asarray(_nanquantile_rows(block, q))
        return np.quantile(block, q, axis=1)
    group = np.repeat(np.arange(len(sizes)), sizes)
    series = pd.Series(values)
    result = series.groupby(group).quantile(q)
    return result.to_numpy(dtype=np.float64)


def _nanquantile_rows(block: np.ndarray, q: float) -> np.ndarray:
    out = np.full(block.shape[0], np.nan)
    has_value = ~np.all(np.isnan(block), axis=1)
    if has_value.any():
        out[has_value] = np.nanquantile(block[has_value], q, axis=1)
    return out


def _fill_within_groups(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    # Linear interpolation between the nearest valid neighbours of the same group,
    # then the nearest valid value at the edges; groups with no value stay NaN.
    n = len(values)
    index = np.arange(n)
    valid = ~np.isnan(values)
    if valid.all() or n == 0:
        return values
    prev_idx = np.maximum.accumulate(np.where(valid, index, -1))
    next_idx = np.minimum.accumulate(np.where(valid, index, n)[::-1])[::-1]
    has_prev = (prev_idx >= 0) & (group[np.clip(prev_idx, 0, n - 1)] == group)
    has_next = (next_idx < n) & (group[np.clip(next_idx, 0, n - 1)] == group)
    prev_val = values[np.clip(prev_idx, 0, n - 1)]
    next_val = values[np.clip(next_idx, 0, n - 1)]
    span = np.maximum(next_idx - prev_idx, 1)
    weight = (index - prev_idx) / span
    both = has_prev & has_next
    filled = np.where(both, prev_val + weight * (next_val - prev_val), np.nan)
    filled = np.where(~both & has_prev, prev_val, filled)
    filled = np.where(~both & ~has_prev & has_next, next_val, filled)
    return np.where(valid, values, filled)
