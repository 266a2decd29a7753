"""Validation of telemetry: a per-instance report and a policy per problem.

:func:`validate_telemetry` finds, for every instance:

================ =============================================================
problem          meaning
================ =============================================================
duplicates       rows whose timestamp repeats an earlier row of the instance
out_of_range     ``y`` or ``y_max`` outside 0-100
nan              ``y`` missing
out_of_order     rows earlier than the row before them, in input order
irregular        timestamps off the grid of the interval
gaps             runs of missing intervals (count) and the longest, in intervals
================ =============================================================

and applies the :class:`ValidationPolicy`: each problem is repaired (dedupe, clip,
sort, snap to the grid, interpolate short gaps) or rejects the instance. Nothing
happens silently: the report lists every instance with its counts, its ``status``
(``ok``, ``repaired`` or ``rejected``), the ``problems`` that rejected it and the
``actions`` that repaired it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from data.errors import InstancesRejectedError, InvalidParameterError, MissingColumnError
from data.frame import ID_COL, MAX_COL, TARGET_COL, TIME_COL

__all__ = ["REPORT_COLUMNS", "ValidationPolicy", "ValidationResult", "validate_telemetry"]

#: Columns of the validation report, in order.
REPORT_COLUMNS: tuple[str, ...] = (
    ID_COL,
    "rows",
    "duplicates",
    "out_of_range",
    "nan",
    "out_of_order",
    "irregular",
    "gaps",
    "longest_gap",
    "filled",
    "status",
    "problems",
    "actions",
)

_NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidationPolicy:
    """What to do about each problem: repair it or reject the instance.

    Parameters
    ----------
    duplicates
        ``"dedupe"`` keeps the first row of each timestamp; ``"reject"``.
    out_of_range
        ``"clip"`` clips ``y`` and ``y_max`` to 0-100; ``"reject"``.
    nan
        ``"interpolate"`` treats missing ``y`` as missing intervals (filled like
        gaps); ``"reject"``.
    out_of_order
        ``"sort"`` sorts the instance by time; ``"reject"``.
    irregular
        ``"snap"`` moves each timestamp down to the interval grid (then dedupes);
        ``"reject"``.
    max_gap
        Gaps of at most this many missing intervals are filled by linear
        interpolation; ``0`` fills none.
    long_gaps
        ``"keep"`` leaves longer gaps missing; ``"reject"`` rejects the instance.
    """

    duplicates: Literal["dedupe", "reject"] = "dedupe"
    out_of_range: Literal["clip", "reject"] = "clip"
    nan: Literal["interpolate", "reject"] = "interpolate"
    out_of_order: Literal["sort", "reject"] = "sort"
    irregular: Literal["snap", "reject"] = "snap"
    max_gap: int = 12
    long_gaps: Literal["keep", "reject"] = "keep"

    def __post_init__(self) -> None:
        choices = {
            "duplicates": ("dedupe", "reject"),
            "out_of_range": ("clip", "reject"),
            "nan": ("interpolate", "reject"),
            "out_of_order": ("sort", "reject"),
            "irregular": ("snap", "reject"),
            "long_gaps": ("keep", "reject"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidParameterError(name, value, f"one of {list(allowed)}")
        if isinstance(self.max_gap, bool) or not isinstance(self.max_gap, int):
            raise InvalidParameterError("max_gap", self.max_gap, "a whole number of intervals")
        if self.max_gap < 0:
            raise InvalidParameterError("max_gap", self.max_gap, "a number of intervals >= 0")


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The usable telemetry and the per-instance report of what was found and done."""

    frame: pd.DataFrame
    report: pd.DataFrame
    interval: pd.Timedelta
    source: str = "frame"
    rejected: tuple[str, ...] = field(default=())


def validate_telemetry(
    frame: pd.DataFrame,
    policy: ValidationPolicy | None = None,
    *,
    interval: str | pd.Timedelta | None = None,
    source: str = "frame",
    rejected: Mapping[str, str] | None = None,
) -> ValidationResult:
    """Check every instance of ``frame``, repair or reject it by ``policy``.

    Parameters
    ----------
    frame
        Telemetry in the frame contract (``ds`` UTC); rows in any order.
    policy
        What to do about each problem; the default repairs everything and keeps gaps
        longer than an hour.
    interval
        The expected spacing; ``None`` takes the most common spacing in the frame.
    source
        The name of the input for the report and errors, e.g. the file path.
    rejected
        Instances already rejected upstream (e.g. for unparseable rows) with the
        reason; they are added to the report as rejected.

    Returns
    -------
    ValidationResult
        ``frame``: the kept instances, repaired, sorted by id and time, in the
        contract; ``report``: one row per instance (:data:`REPORT_COLUMNS`), rejected
        ones included.

    Raises
    ------
    InstancesRejectedError
        If no instance is left; the error carries the report.
    MissingColumnError
        If ``unique_id``, ``ds`` or ``y`` is absent.
    InvalidParameterError
        If ``interval`` is not a positive whole number of minutes or cannot be
        inferred.
    """
    policy = ValidationPolicy() if policy is None else policy
    for column in (ID_COL, TIME_COL, TARGET_COL):
        if column not in frame.columns:
            raise MissingColumnError(source, column, [str(c) for c in frame.columns])
    upstream = dict(rejected or {})

    if isinstance(frame[ID_COL].dtype, pd.CategoricalDtype):
        ids = frame[ID_COL].cat.remove_unused_categories()
        codes = ids.cat.codes.to_numpy(dtype=np.int64)
        names = pd.Index(ids.cat.categories.astype(str))
    else:
        raw_codes, uniques = pd.factorize(frame[ID_COL], sort=True)
        codes = raw_codes.astype(np.int64)
        names = pd.Index(pd.Index(uniques).astype(str))
    n = len(names)
    ds = pd.DatetimeIndex(frame[TIME_COL]).as_unit("ns").asi8
    y = frame[TARGET_COL].to_numpy(dtype=np.float64)
    y_max = frame[MAX_COL].to_numpy(dtype=np.float64) if MAX_COL in frame.columns else None

    # Out of order is judged in input order, within each instance.
    by_instance = (
        np.arange(len(codes)) if _non_decreasing(codes) else np.argsort(codes, kind="stable")
    )
    c_in, ds_in = codes[by_instance], ds[by_instance]
    backwards = (c_in[1:] == c_in[:-1]) & (ds_in[1:] < ds_in[:-1])
    out_of_order = _count(c_in[1:][backwards], n)

    order = by_instance if not backwards.any() else np.lexsort((ds, codes))
    c, t = codes[order], ds[order]
    yv = y[order]
    ym = None if y_max is None else y_max[order]
    same = c[1:] == c[:-1]
    duplicate = np.r_[False, same & (t[1:] == t[:-1])]
    duplicates = _count(c[duplicate], n)
    nan_rows = np.isnan(yv)
    nan = _count(c[nan_rows], n)
    bad_range = (yv < 0) | (yv > 100)
    if ym is not None:
        bad_range |= (ym < 0) | (ym > 100)
    out_of_range = _count(c[bad_range], n)

    step = _interval(interval, t, same)
    off_grid = (t % step) != 0
    irregular = _count(c[off_grid], n)
    spacing = np.diff(t)
    missing = np.where(same & (spacing > 0), spacing // step - 1, 0)
    gap_rows = missing > 0
    gaps = _count(c[:-1][gap_rows], n)
    longest = np.zeros(n, dtype=np.int64)
    np.maximum.at(longest, c[:-1][gap_rows], missing[gap_rows])
    rows = _count(c, n)

    problems: list[list[str]] = [[] for _ in range(n)]
    reject = np.zeros(n, dtype=bool)
    for name, counts, rule, label in (
        ("duplicates", duplicates, policy.duplicates, "duplicate timestamps"),
        ("out_of_range", out_of_range, policy.out_of_range, "values outside 0-100"),
        ("nan", nan, policy.nan, "missing values"),
        ("out_of_order", out_of_order, policy.out_of_order, "timestamps out of order"),
        ("irregular", irregular, policy.irregular, "timestamps off the interval grid"),
    ):
        if rule == "reject":
            hit = counts > 0
            reject |= hit
            for i in np.flatnonzero(hit):
                problems[i].append(f"{counts[i]} {label} ({name}=reject)")
    if policy.long_gaps == "reject":
        hit = longest > policy.max_gap
        reject |= hit
        for i in np.flatnonzero(hit):
            problems[i].append(
                f"a gap of {longest[i]} intervals > max_gap={policy.max_gap} (long_gaps=reject)"
            )
    for index, name in enumerate(names):
        if name in upstream:
            reject[index] = True
            problems[index].append(upstream[name])

    keep_rows = ~reject[c]
    repaired, filled = _repair(frame, order[keep_rows], c[keep_rows], t[keep_rows], step, policy, n)

    actions = _actions(n, duplicates, out_of_range, nan, out_of_order, irregular, filled, policy)
    for i in np.flatnonzero(reject):
        actions[i] = []
    status = np.where(reject, "rejected", np.where([bool(a) for a in actions], "repaired", "ok"))
    report = pd.DataFrame(
        {
            ID_COL: pd.array(names, dtype="str"),
            "rows": rows,
            "duplicates": duplicates,
            "out_of_range": out_of_range,
            "nan": nan,
            "out_of_order": out_of_order,
            "irregular": irregular,
            "gaps": gaps,
            "longest_gap": longest,
            "filled": filled,
            "status": pd.array(status, dtype="str"),
            "problems": pd.array(["; ".join(p) for p in problems], dtype="str"),
            "actions": pd.array(["; ".join(a) for a in actions], dtype="str"),
        }
    )
    upstream_only = sorted(set(upstream) - set(names))
    if upstream_only:
        extra = pd.DataFrame(
            {
                ID_COL: pd.array(upstream_only, dtype="str"),
                **{col: 0 for col in REPORT_COLUMNS[1:10]},
                "status": pd.array(["rejected"] * len(upstream_only), dtype="str"),
                "problems": pd.array([upstream[u] for u in upstream_only], dtype="str"),
                "actions": pd.array([""] * len(upstream_only), dtype="str"),
            }
        )
        report = pd.concat([report, extra], ignore_index=True)
    rejected_ids = tuple(report.loc[report["status"] == "rejected", ID_COL].astype(str))
    if len(repaired) == 0:
        raise InstancesRejectedError(source, report)
    return ValidationResult(
        frame=repaired,
        report=report,
        interval=pd.Timedelta(step),
        source=source,
        rejected=rejected_ids,
    )


def _non_decreasing(values: np.ndarray) -> bool:
    return len(values) < 2 or bool(np.all(values[1:] >= values[:-1]))


def _count(codes: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(codes, minlength=n).astype(np.int64)


def _interval(interval: str | pd.Timedelta | None, t: np.ndarray, same: np.ndarray) -> int:
    if interval is not None:
        try:
            step = int(pd.Timedelta(interval).value)
        except ValueError as exc:
            raise InvalidParameterError("interval", interval, "a duration such as '5min'") from exc
        if step <= 0 or step % _NS_PER_MINUTE:
            raise InvalidParameterError("interval", interval, "a whole number of minutes > 0")
        return step
    spacing = np.diff(t)[same]
    spacing = spacing[spacing > 0]
    if len(spacing) == 0:
        raise InvalidParameterError(
            "interval", None, "an explicit interval: no instance has two distinct timestamps"
        )
    values, counts = np.unique(spacing, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step % _NS_PER_MINUTE:
        raise InvalidParameterError(
            "interval", pd.Timedelta(step), "a most common spacing of whole minutes"
        )
    return step


def _repair(
    frame: pd.DataFrame,
    rows: np.ndarray,
    codes: np.ndarray,
    t: np.ndarray,
    step: int,
    policy: ValidationPolicy,
    n: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    # Snap to the grid, drop duplicates and missing values, then insert the missing
    # intervals of short gaps and interpolate them; ``rows`` are sorted by id and time.
    if len(rows) == 0:
        return frame.iloc[:0], np.zeros(n, dtype=np.int64)
    snapped = t - (t % step)
    keep = np.r_[True, (codes[1:] != codes[:-1]) | (snapped[1:] != snapped[:-1])]
    y = frame[TARGET_COL].to_numpy(dtype=np.float64)[rows]
    keep &= ~np.isnan(y)
    rows, codes, snapped, y = rows[keep], codes[keep], snapped[keep], y[keep]
    if policy.out_of_range == "clip":
        y = np.clip(y, 0.0, 100.0)

    same = codes[1:] == codes[:-1]
    missing = np.where(same, np.diff(snapped) // step - 1, 0)
    fill = np.where((missing > 0) & (missing <= policy.max_gap), missing, 0)
    inserted_after = np.r_[fill, 0]
    filled = _count(np.repeat(codes, inserted_after), n)
    total = len(rows) + int(inserted_after.sum())

    # Each kept row lands at its index plus the rows inserted before it.
    position = np.arange(len(rows)) + np.r_[0, np.cumsum(inserted_after)[:-1]]
    is_original = np.zeros(total, dtype=bool)
    is_original[position] = True
    source_row = np.repeat(np.arange(len(rows)), inserted_after + 1)
    offset = np.arange(total) - position[source_row]
    out_ds = snapped[source_row] + offset * step

    columns: dict[str, object] = {}
    ids = frame[ID_COL]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        columns[ID_COL] = pd.Categorical.from_codes(
            ids.cat.codes.to_numpy()[rows][source_row], dtype=ids.dtype
        )
    else:
        columns[ID_COL] = ids.iloc[rows[source_row]].to_numpy()
    columns[TIME_COL] = pd.DatetimeIndex(out_ds.view("M8[ns]")).tz_localize("UTC")
    columns[TARGET_COL] = _interpolate_inserted(y, source_row, offset, inserted_after)
    for column in frame.columns:
        if column in (ID_COL, TIME_COL, TARGET_COL):
            continue
        series = frame[column]
        if column == MAX_COL:
            peak = series.to_numpy(dtype=np.float64)[rows]
            if policy.out_of_range == "clip":
                peak = np.clip(peak, 0.0, 100.0)
            columns[column] = _interpolate_inserted(peak, source_row, offset, inserted_after)
        else:
            # Per-instance attributes (tier, vcpus) carry over to inserted rows.
            columns[column] = series.iloc[rows[source_row]].to_numpy()
    out = pd.DataFrame(columns)
    for column in frame.columns:
        if column not in (TIME_COL,) and out[column].dtype != frame[column].dtype:
            out[column] = out[column].astype(frame[column].dtype)
    return out, filled


def _interpolate_inserted(
    values: np.ndarray, source_row: np.ndarray, offset: np.ndarray, inserted_after: np.ndarray
) -> np.ndarray:
    left = values[source_row]
    right_index = np.minimum(source_row + 1, len(values) - 1)
    right = values[right_index]
    span = (inserted_after[source_row] + 1).astype(np.float64)
    return np.where(offset == 0, left, left + (right - left) * offset / span)


def _actions(
    n: int,
    duplicates: np.ndarray,
    out_of_range: np.ndarray,
    nan: np.ndarray,
    out_of_order: np.ndarray,
    irregular: np.ndarray,
    filled: np.ndarray,
    policy: ValidationPolicy,
) -> list[list[str]]:
    actions: list[list[str]] = [[] for _ in range(n)]
    for counts, rule, text in (
        (out_of_order, policy.out_of_order, "sorted {} rows out of order"),
        (irregular, policy.irregular, "snapped {} timestamps to the grid"),
        (duplicates, policy.duplicates, "dropped {} duplicate rows"),
        (nan, policy.nan, "dropped {} missing values"),
        (out_of_range, policy.out_of_range, "clipped {} values to 0-100"),
    ):
        if rule == "reject":
            continue
        for i in np.flatnonzero(counts):
            actions[i].append(text.format(counts[i]))
    for i in np.flatnonzero(filled):
        actions[i].append(f"interpolated {filled[i]} missing intervals")
    return actions
