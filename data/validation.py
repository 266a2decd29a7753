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
from data.frame import ID_COL, MAX_COL, TARGET_COL, TIME_COL, epoch_nanoseconds

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
_BLOCK_ROWS = 250_000


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
    for column in (ID_COL, TIME_COL, TARGET_COL):
        if column not in frame.columns:
            raise MissingColumnError(source, column, [str(c) for c in frame.columns])
    policy = ValidationPolicy() if policy is None else policy
    return _scan_and_repair(frame, policy, interval, source, dict(rejected or {}))


def _scan_and_repair(
    frame: pd.DataFrame,
    policy: ValidationPolicy,
    interval: str | pd.Timedelta | None,
    source: str,
    upstream: dict[str, str],
) -> ValidationResult:
    # every instance scanned in blocks, then the kept ones assembled and the report made
    codes, names = _instance_codes(frame)
    if len(frame) == 0:
        raise InstancesRejectedError(source, _upstream_report(sorted(upstream), upstream))
    ds = epoch_nanoseconds(frame[TIME_COL])
    # Out of order is judged in input order, within each instance.
    order = None if _non_decreasing(codes) else np.argsort(codes, kind="stable")
    step = _interval(interval, codes, ds, order)
    position = {name: i for i, name in enumerate(names)} if upstream else {}
    known = {position[u] for u in upstream if u in position}
    scan = _Scan(len(names), policy, step, known)
    rows = _scan_in_blocks(scan, frame, codes, ds, order)
    repaired = scan.assemble(frame, order)  # before the report: it counts what it fills
    report = _report(scan, policy, names, rows, upstream)
    if len(repaired) == 0:
        raise InstancesRejectedError(source, report)
    return ValidationResult(
        frame=repaired,
        report=report,
        interval=pd.Timedelta(step),
        source=source,
        rejected=tuple(report.loc[report["status"] == "rejected", ID_COL].astype(str)),
    )


def _instance_codes(frame: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Return each row's instance code and the instances' names, sorted."""
    if isinstance(frame[ID_COL].dtype, pd.CategoricalDtype):
        # Unused categories get zero rows and are left out of the report.
        codes = frame[ID_COL].cat.codes.to_numpy()
        return codes, pd.Index(frame[ID_COL].cat.categories.astype(str))
    raw_codes, uniques = pd.factorize(frame[ID_COL], sort=True)
    return raw_codes, pd.Index(pd.Index(uniques).astype(str))


def _scan_in_blocks(
    scan: _Scan, frame: pd.DataFrame, codes: np.ndarray, ds: np.ndarray, order: np.ndarray | None
) -> np.ndarray:
    """Scan whole instances, about 250,000 rows a block; return each instance's rows."""
    n = scan.reject.shape[0]
    y = frame[TARGET_COL].to_numpy(dtype=np.float64)
    y_max = frame[MAX_COL].to_numpy(dtype=np.float64) if MAX_COL in frame.columns else None
    rows = np.bincount(codes, minlength=n).astype(np.int64)
    bounds = np.r_[0, np.cumsum(rows)]
    first_code = 0
    while first_code < n:
        last_code = int(np.searchsorted(bounds, bounds[first_code] + _BLOCK_ROWS, side="right"))
        last_code = min(max(last_code - 1, first_code + 1), n)
        a, b = int(bounds[first_code]), int(bounds[last_code])
        positions = order[a:b] if order is not None else np.arange(a, b)
        scan.block(first_code, last_code, positions, codes, ds, y, y_max, order is None)
        first_code = last_code
    return rows


def _problems(
    scan: _Scan, policy: ValidationPolicy, names: pd.Index, upstream: Mapping[str, str]
) -> list[list[str]]:
    """Return why each instance was rejected: the scan decided, these are its reasons."""
    problems: list[list[str]] = [[] for _ in range(len(names))]
    for name, counts, label in (
        ("duplicates", scan.duplicates, "duplicate timestamps"),
        ("out_of_range", scan.out_of_range, "values outside 0-100"),
        ("nan", scan.nan, "missing values"),
        ("out_of_order", scan.out_of_order, "timestamps out of order"),
        ("irregular", scan.irregular, "timestamps off the interval grid"),
    ):
        if getattr(policy, name) == "reject":
            for i in np.flatnonzero(counts > 0):
                problems[i].append(f"{counts[i]} {label} ({name}=reject)")
    if policy.long_gaps == "reject":
        for i in np.flatnonzero(scan.longest > policy.max_gap):
            problems[i].append(
                f"a gap of {scan.longest[i]} intervals > max_gap={policy.max_gap} "
                "(long_gaps=reject)"
            )
    for index, name in enumerate(names):
        if name in upstream:
            problems[index].append(upstream[name])
    return problems


def _report(
    scan: _Scan,
    policy: ValidationPolicy,
    names: pd.Index,
    rows: np.ndarray,
    upstream: Mapping[str, str],
) -> pd.DataFrame:
    """Return one row per instance (:data:`REPORT_COLUMNS`), upstream rejections included."""
    problems = _problems(scan, policy, names, upstream)
    actions = _actions(
        len(names),
        scan.duplicates,
        scan.out_of_range,
        scan.nan,
        scan.out_of_order,
        scan.irregular,
        scan.filled,
        policy,
    )
    for i in np.flatnonzero(scan.reject):
        actions[i] = []
    status = np.where(
        scan.reject, "rejected", np.where([bool(a) for a in actions], "repaired", "ok")
    )
    report = pd.DataFrame(
        {
            ID_COL: pd.array(names.to_numpy(), dtype="str"),
            "rows": rows,
            "duplicates": scan.duplicates,
            "out_of_range": scan.out_of_range,
            "nan": scan.nan,
            "out_of_order": scan.out_of_order,
            "irregular": scan.irregular,
            "gaps": scan.gaps,
            "longest_gap": scan.longest,
            "filled": scan.filled,
            "status": pd.array(status, dtype="str"),
            "problems": pd.array(["; ".join(p) for p in problems], dtype="str"),
            "actions": pd.array(["; ".join(a) for a in actions], dtype="str"),
        }
    )
    report = report[(report["rows"] > 0) | (report["status"] == "rejected")]
    report = report.reset_index(drop=True)
    upstream_only = sorted(set(upstream) - set(names))
    if upstream_only:
        report = pd.concat([report, _upstream_report(upstream_only, upstream)], ignore_index=True)
    return report


def _upstream_report(ids: list[str], upstream: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ID_COL: pd.array(ids, dtype="str"),
            **{col: np.zeros(len(ids), dtype=np.int64) for col in REPORT_COLUMNS[1:10]},
            "status": pd.array(["rejected"] * len(ids), dtype="str"),
            "problems": pd.array([upstream[u] for u in ids], dtype="str"),
            "actions": pd.array([""] * len(ids), dtype="str"),
        }
    )


def _non_decreasing(values: np.ndarray) -> bool:
    return len(values) < 2 or bool(np.all(values[1:] >= values[:-1]))


def _interval(
    interval: str | pd.Timedelta | None,
    codes: np.ndarray,
    ds: np.ndarray,
    order: np.ndarray | None,
) -> int:
    if interval is not None:
        try:
            step = int(pd.Timedelta(interval).value)
        except ValueError as exc:
            raise InvalidParameterError("interval", interval, "a duration such as '5min'") from exc
        if step <= 0 or step % _NS_PER_MINUTE:
            raise InvalidParameterError("interval", interval, "a whole number of minutes > 0")
        return step
    # The most common spacing between neighbouring rows of one instance, from an
    # even sample of at most a million pairs.
    stride = max(1, (len(ds) - 1) // 1_000_000)
    left = np.arange(0, max(len(ds) - 1, 0), stride)
    right = left + 1
    if order is not None:
        left, right = order[left], order[right]
    spacing = ds[right] - ds[left]
    spacing = spacing[(codes[right] == codes[left]) & (spacing > 0)]
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


def _reject_mask(
    policy: ValidationPolicy,
    counts: Mapping[str, np.ndarray],
    longest: np.ndarray,
) -> np.ndarray:
    reject = np.zeros(len(longest), dtype=bool)
    for name in ("duplicates", "out_of_range", "nan", "out_of_order", "irregular"):
        if getattr(policy, name) == "reject":
            reject |= counts[name] > 0
    if policy.long_gaps == "reject":
        reject |= longest > policy.max_gap
    return reject


class _Scan:
    # Counts problems and repairs instance blocks one at a time; ``pieces`` records,
    # per block, the frame rows to take and the repaired time and value columns.

    def __init__(self, n: int, policy: ValidationPolicy, step: int, upstream: set[int]) -> None:
        self.policy = policy
        self.step = step
        self.upstream = np.zeros(n, dtype=bool)
        self.upstream[list(upstream)] = True
        zeros = lambda: np.zeros(n, dtype=np.int64)  # noqa: E731
        self.duplicates, self.out_of_range, self.nan = zeros(), zeros(), zeros()
        self.out_of_order, self.irregular = zeros(), zeros()
        self.gaps, self.longest, self.filled = zeros(), zeros(), zeros()
        self.reject = np.zeros(n, dtype=bool)
        self.pieces: list[
            tuple[np.ndarray | slice, np.ndarray | None, np.ndarray | None, np.ndarray | None]
        ] = []
        self.changed = False

    def block(
        self,
        lo: int,
        hi: int,
        positions: np.ndarray,
        codes: np.ndarray,
        ds: np.ndarray,
        y: np.ndarray,
        y_max: np.ndarray | None,
        order_is_identity: bool,
    ) -> None:
        k = hi - lo
        c = codes[positions].astype(np.int64) - lo
        t = ds[positions]
        same = c[1:] == c[:-1]
        backwards = same & (t[1:] < t[:-1])
        self.out_of_order[lo:hi] = np.bincount(c[1:][backwards], minlength=k)
        if backwards.any():
            local = np.lexsort((t, c))
            positions, c, t = positions[local], c[local], t[local]
            same = c[1:] == c[:-1]
            self.changed = True
        yv = y[positions]
        ym = None if y_max is None else y_max[positions]
        problems = self._count(lo, k, c, t, yv, ym, same)
        reject = self.reject[lo:hi]
        untouched = not (reject.any() or backwards.any() or problems)
        if untouched:
            # Untouched rows are taken from the frame as they are; a slice costs nothing.
            identity = order_is_identity and not backwards.any()
            kept = slice(int(positions[0]), int(positions[-1]) + 1) if identity else positions
            self.pieces.append((kept, None, None, None))
            return
        self.changed = True
        keep = ~reject[c]
        self._repair(
            positions[keep], c[keep], t[keep], yv[keep], None if ym is None else ym[keep], lo, k
        )

    def _count(
        self,
        lo: int,
        k: int,
        c: np.ndarray,
        t: np.ndarray,
        yv: np.ndarray,
        ym: np.ndarray | None,
        same: np.ndarray,
    ) -> bool:
        """Count each instance's problems in the block, decide its rejection.

        Return whether any row needs repair (the rejections aside).
        """
        hi = lo + k
        duplicate = np.r_[False, same & (t[1:] == t[:-1])]
        self.duplicates[lo:hi] = np.bincount(c[duplicate], minlength=k)
        missing_value = np.isnan(yv)
        self.nan[lo:hi] = np.bincount(c[missing_value], minlength=k)
        bad_range = (yv < 0) | (yv > 100)
        if ym is not None:
            bad_range |= (ym < 0) | (ym > 100)
        self.out_of_range[lo:hi] = np.bincount(c[bad_range], minlength=k)
        offgrid = t % self.step
        self.irregular[lo:hi] = np.bincount(c[offgrid != 0], minlength=k)
        # Gaps are counted on the grid, so a late reading does not hide a missing one.
        spacing = np.diff(t - offgrid)
        missing = np.where(same & (spacing > 0), spacing // self.step - 1, 0)
        gap_rows = missing > 0
        self.gaps[lo:hi] = np.bincount(c[:-1][gap_rows], minlength=k)
        longest = np.zeros(k, dtype=np.int64)
        np.maximum.at(longest, c[:-1][gap_rows], missing[gap_rows])
        self.longest[lo:hi] = longest
        counts = {
            name: getattr(self, name)[lo:hi]
            for name in ("duplicates", "out_of_range", "nan", "out_of_order", "irregular")
        }
        self.reject[lo:hi] = _reject_mask(self.policy, counts, longest) | self.upstream[lo:hi]
        return bool(
            duplicate.any()
            or missing_value.any()
            or bad_range.any()
            or self.irregular[lo:hi].any()
            or (gap_rows & (missing <= self.policy.max_gap)).any()
        )

    def _repair(
        self,
        positions: np.ndarray,
        c: np.ndarray,
        t: np.ndarray,
        yv: np.ndarray,
        ym: np.ndarray | None,
        lo: int,
        k: int,
    ) -> None:
        # Snap to the grid, drop duplicates and missing values, clip, then insert the
        # missing intervals of short gaps and interpolate them.
        step, policy = self.step, self.policy
        snapped = t - (t % step)
        keep = np.r_[True, (c[1:] != c[:-1]) | (snapped[1:] != snapped[:-1])] if len(c) else c > 0
        keep &= ~np.isnan(yv)
        positions, c, snapped, yv = positions[keep], c[keep], snapped[keep], yv[keep]
        ym = None if ym is None else ym[keep]
        if policy.out_of_range == "clip":
            yv = np.clip(yv, 0.0, 100.0)
            ym = None if ym is None else np.clip(ym, 0.0, 100.0)
        if len(c) == 0:
            return
        same = c[1:] == c[:-1]
        missing = np.where(same, np.diff(snapped) // step - 1, 0)
        inserted_after = np.r_[np.where((missing > 0) & (missing <= policy.max_gap), missing, 0), 0]
        inserted = int(inserted_after.sum())
        if not inserted:
            self.pieces.append((positions, snapped, yv, ym))
            return
        self.filled[lo : lo + k] = np.bincount(np.repeat(c, inserted_after), minlength=k)
        # Each kept row lands at its index plus the rows inserted before it.
        total = len(c) + inserted
        landing = np.arange(len(c)) + np.r_[0, np.cumsum(inserted_after)[:-1]]
        source_row = np.repeat(np.arange(len(c)), inserted_after + 1)
        offset = np.arange(total) - landing[source_row]
        self.pieces.append(
            (
                positions[source_row],
                snapped[source_row] + offset * step,
                _interpolate_inserted(yv, source_row, offset, inserted_after),
                None
                if ym is None
                else _interpolate_inserted(ym, source_row, offset, inserted_after),
            )
        )

    def assemble(self, frame: pd.DataFrame, order: np.ndarray | None) -> pd.DataFrame:
        if not self.changed and order is None:
            return frame.reset_index(drop=True)
        ds = epoch_nanoseconds(frame[TIME_COL])
        if not self.pieces:
            return frame.iloc[:0].reset_index(drop=True)
        take = np.concatenate([_indices(p[0]) for p in self.pieces])
        time_parts: list[np.ndarray] = []
        for rows, times_out, _, _ in self.pieces:
            time_parts.append(ds[rows] if times_out is None else times_out)
        times = np.concatenate(time_parts)
        columns: dict[str, object] = {}
        for column in frame.columns:
            series = frame[column]
            if column == TIME_COL:
                columns[column] = pd.DatetimeIndex(times.view("M8[ns]")).tz_localize("UTC")
            elif column in (TARGET_COL, MAX_COL):
                width = np.float32 if series.dtype == np.float32 else np.float64
                source = series.to_numpy(dtype=np.float64)
                slot = 2 if column == TARGET_COL else 3
                parts: list[np.ndarray] = []
                for piece in self.pieces:
                    repaired = piece[slot]
                    parts.append(source[piece[0]] if repaired is None else np.asarray(repaired))
                columns[column] = np.concatenate(parts).astype(width, copy=False)
            else:
                # Ids and per-instance attributes (tier, vcpus) carry over to inserted rows.
                columns[column] = series.array.take(take)
        return pd.DataFrame(columns, copy=False)


def _indices(rows: np.ndarray | slice) -> np.ndarray:
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop)
    return rows


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
