"""Loaders that turn telemetry files into the frame contract.

:func:`load_telemetry` detects the format of a path:

============== ==========================================================================
format         what it reads
============== ==========================================================================
``shared``     Parquet or CSV with ``instance_id``, ``ts``, ``cpu_avg`` (+ ``cpu_max``)
``contract``   Parquet or CSV already in the frame contract (``unique_id``, ``ds``, ``y``)
``azure``      Azure Public Dataset ``vm_cpu_readings`` CSV or CSV.gz (V1 and V2), no
               header: timestamp (seconds from the trace start), vm id, min, max, avg;
               a file, a directory or a glob; ``vmtable`` adds ``vcpus``
``cloudwatch`` CSV files with ``timestamp,value``, one per instance named after the file;
               a directory or a glob
``mapped``     any CSV or Parquet, with ``columns`` mapping contract names to its columns
============== ==========================================================================

CSV files are read in chunks of ``chunk_rows`` rows, so a file larger than memory as
text still loads. With ``strict=True`` (the default) the first unreadable value raises
:class:`~data.errors.TelemetryParseError` naming the file, the line and the column;
:func:`read_telemetry` instead rejects only the instances with unreadable rows and
returns the rest, validated, with the report. Parquet is read one column at a time,
so the peak memory is the frame plus one column; text ids from Parquet arrive as a
category of strings (the dictionary the file already stores), ids from CSV as strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.columns import (
    ID_COL,
    MAX_COL,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    TARGET_COL,
    TIME_COL,
    VCPUS_COL,
)
from data.errors import (
    EmptyTelemetryError,
    InvalidParameterError,
    MissingColumnError,
    TelemetryFormatError,
    TelemetryParseError,
)
from data.frame import coerce_frame, is_sorted_by_id_time
from data.sources import (
    CSV_SUFFIXES,
    FORMATS,
    PARQUET_SUFFIXES,
    Format,
    columns_of,
    detect,
    expand,
    file_suffix,
    header_line,
    parquet_schema,
)
from data.validation import ValidationPolicy, ValidationResult, validate_telemetry

__all__ = ["AZURE_ORIGIN", "FORMATS", "load_telemetry", "read_telemetry"]


#: The Azure traces publish seconds from an unnamed start; this is the origin the
#: shared Parquet sample uses.
AZURE_ORIGIN = pd.Timestamp("2016-11-16T00:00:00Z")

_SHARED = {ID_COL: "instance_id", TIME_COL: "ts", TARGET_COL: "cpu_avg", MAX_COL: "cpu_max"}
_CONTRACT = {c: c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
_AZURE_COLUMNS = ("timestamp", "vm_id", "cpu_min", "cpu_max", "cpu_avg")
_AZURE_MAP = {ID_COL: "vm_id", TIME_COL: "timestamp", TARGET_COL: "cpu_avg", MAX_COL: "cpu_max"}
_CLOUDWATCH_MAP = {TIME_COL: "timestamp", TARGET_COL: "value"}
# The vmtable buckets core counts; ">24" is read as the next size up.
_VM_CORE_BUCKETS = {">24": 32}
_NUMERIC = (TARGET_COL, MAX_COL, VCPUS_COL)


@dataclass
class _Collected:
    frames: list[pd.DataFrame] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)


def load_telemetry(
    path: str | Path,
    *,
    format: Format = "auto",
    columns: Mapping[str, str] | None = None,
    vmtable: str | Path | None = None,
    origin: str | pd.Timestamp = AZURE_ORIGIN,
    chunk_rows: int = 1_000_000,
    strict: bool = True,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Load telemetry from ``path`` into the frame contract.

    Parameters
    ----------
    path
        A file, a directory or a glob pattern (see the module table).
    format
        One of :data:`FORMATS`; ``"auto"`` detects it from the path and the first line.
    columns
        For ``"mapped"`` (and to override ``"auto"``): contract name to the file's
        column name, e.g. ``{"unique_id": "host", "ds": "time", "y": "cpu"}``.
    vmtable
        The Azure ``vmtable`` CSV; adds ``vcpus`` to Azure readings.
    origin
        The UTC timestamp of second 0 of Azure readings.
    chunk_rows
        Rows per CSV chunk.
    strict
        Raise on the first unreadable value; with ``False`` the instances with
        unreadable rows are left out (use :func:`read_telemetry` to get the reasons).
    progress
        Called with the number of rows read after each chunk, for progress bars.

    Returns
    -------
    pandas.DataFrame
        The frame contract, sorted by ``unique_id`` then ``ds``; the rows are not
        validated beyond parsing (see :func:`data.validation.validate_telemetry`).

    Raises
    ------
    TelemetryFormatError
        If the path is missing, empty, or of no supported format.
    MissingColumnError
        If a required column is absent.
    TelemetryParseError
        If ``strict`` and a timestamp or a value does not parse.
    """
    frame, _ = _load(path, format, columns, vmtable, origin, chunk_rows, strict, progress)
    return frame


def read_telemetry(
    path: str | Path,
    policy: ValidationPolicy | None = None,
    *,
    format: Format = "auto",
    columns: Mapping[str, str] | None = None,
    vmtable: str | Path | None = None,
    origin: str | pd.Timestamp = AZURE_ORIGIN,
    interval: str | None = None,
    chunk_rows: int = 1_000_000,
    progress: Callable[[int], None] | None = None,
) -> ValidationResult:
    """Load and validate telemetry, keeping the good instances of a partly bad file.

    Instances with unreadable rows (a bad timestamp or number) are rejected with the
    file, line and column of their first bad value; the others are validated by
    ``policy``.

    Parameters
    ----------
    path, format, columns, vmtable, origin, chunk_rows, progress
        As for :func:`load_telemetry`.
    policy
        The validation policy.
    interval
        The expected spacing, or ``None`` to infer it.

    Returns
    -------
    ValidationResult
        The kept instances and the report of every instance.

    Raises
    ------
    TelemetryFormatError
        If the path is missing, empty, or of no supported format.
    MissingColumnError
        If a required column is absent.
    InstancesRejectedError
        If no instance is left.
    """
    frame, rejected = _load(path, format, columns, vmtable, origin, chunk_rows, False, progress)
    return validate_telemetry(frame, policy, interval=interval, source=str(path), rejected=rejected)


def _load(
    path: str | Path,
    format: Format,
    columns: Mapping[str, str] | None,
    vmtable: str | Path | None,
    origin: str | pd.Timestamp,
    chunk_rows: int,
    strict: bool,
    progress: Callable[[int], None] | None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    if format not in FORMATS:
        raise InvalidParameterError("format", format, f"one of {list(FORMATS)}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidParameterError("chunk_rows", chunk_rows, "a positive number of rows")
    files = expand(path)
    kind = detect(files, columns) if format == "auto" else format
    if kind == "mapped" and not columns:
        raise InvalidParameterError("columns", columns, "a mapping for the 'mapped' format")
    collected = _Collected()
    for file in files:
        if kind == "cloudwatch":
            _read_cloudwatch(file, chunk_rows, strict, collected, progress)
        elif kind == "azure":
            _read_table(file, _AZURE_MAP, chunk_rows, strict, collected, progress, origin, True)
        else:
            mapping = dict(columns) if columns else _default_mapping(file, kind)
            _read_table(file, mapping, chunk_rows, strict, collected, progress, None, False)
    if not collected.frames:
        raise EmptyTelemetryError(path)
    if len(collected.frames) == 1:
        frame = collected.frames[0]
    else:
        frame = pd.concat(collected.frames, ignore_index=True)
    if collected.rejected:
        frame = frame[~frame[ID_COL].isin(list(collected.rejected))]
        if len(frame) == 0:
            return coerce_frame(frame.astype({ID_COL: "str"})), collected.rejected
    if kind == "azure" and vmtable is not None:
        frame = _add_vcpus(frame, Path(vmtable))
    frame = coerce_frame(frame)
    ids = frame[ID_COL]
    if (
        isinstance(ids.dtype, pd.CategoricalDtype)
        and not ids.cat.categories.is_monotonic_increasing
    ):
        # Parquet dictionaries keep first-seen order; instances sort by name.
        frame[ID_COL] = ids.cat.reorder_categories(ids.cat.categories.sort_values())
    if not is_sorted_by_id_time(frame):
        frame = frame.sort_values([ID_COL, TIME_COL], kind="stable", ignore_index=True)
    contract = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    ordered = contract + [c for c in frame.columns if c not in contract]
    if list(frame.columns) != ordered:
        frame = frame[ordered]
    return frame, collected.rejected


def _default_mapping(path: Path, kind: str) -> dict[str, str]:
    base = _SHARED if kind == "shared" else _CONTRACT
    present = set(columns_of(path))
    return {
        target: source
        for target, source in base.items()
        if target in REQUIRED_COLUMNS or source in present
    }


def _read_table(
    path: Path,
    mapping: Mapping[str, str],
    chunk_rows: int,
    strict: bool,
    collected: _Collected,
    progress: Callable[[int], None] | None,
    origin: str | pd.Timestamp | None,
    headerless: bool,
) -> None:
    for column in REQUIRED_COLUMNS:
        if column not in mapping:
            raise InvalidParameterError("columns", dict(mapping), f"a source column for {column!r}")
    if file_suffix(path) in PARQUET_SUFFIXES:
        chunks: Iterator[tuple[pd.DataFrame, int]] = _parquet_chunks(path, mapping, chunk_rows)
    elif file_suffix(path) in CSV_SUFFIXES:
        chunks = _csv_chunks(path, mapping, chunk_rows, headerless)
    else:
        raise TelemetryFormatError(path, "a Parquet (.parquet) or CSV (.csv, .csv.gz) file")
    for raw, first_line in chunks:
        frame = pd.DataFrame({t: raw[s] for t, s in mapping.items()}, copy=False)
        frame = _parse_chunk(path, frame, first_line, strict, collected.rejected, origin, mapping)
        collected.frames.append(frame)
        if progress is not None:
            progress(len(raw))


def _parquet_chunks(
    path: Path, mapping: Mapping[str, str], chunk_rows: int
) -> Iterator[tuple[pd.DataFrame, int]]:
    schema = parquet_schema(path)
    wanted = list(dict.fromkeys(mapping.values()))
    for name in wanted:
        if name not in schema.names:
            raise MissingColumnError(path, name, list(schema.names))
    try:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows == 0:
            raise EmptyTelemetryError(path)
        # One column at a time, handed over buffer by buffer, so the peak memory is the
        # result plus one column; text ids come back dictionary-encoded (categorical).
        columns: dict[str, pd.Series] = {}
        for name in wanted:
            field_type = schema.field(name).type
            textual = (
                pa.types.is_string(field_type)
                or pa.types.is_large_string(field_type)
                or pa.types.is_dictionary(field_type)
            )
            # One thread per column: on a small, busy machine threads only contend, and
            # dictionary pages decode many times faster on one.
            table = pq.read_table(
                path,
                columns=[name],
                read_dictionary=[name] if textual else None,
                use_threads=False,
            )
            columns[name] = table.to_pandas(self_destruct=True, split_blocks=True)[name]
            del table
            # Arrow's allocator keeps freed pages; hand them back before the next column.
            pa.default_memory_pool().release_unused()
    except pa.ArrowInvalid as exc:
        raise TelemetryFormatError(path, "a readable Parquet file", str(exc)) from exc
    del chunk_rows
    yield pd.DataFrame(columns, copy=False), 1


def _csv_chunks(
    path: Path, mapping: Mapping[str, str], chunk_rows: int, headerless: bool
) -> Iterator[tuple[pd.DataFrame, int]]:
    wanted = list(dict.fromkeys(mapping.values()))
    options: dict[str, object] = {"chunksize": chunk_rows, "dtype": str, "keep_default_na": False}
    if headerless:
        options.update(header=None, names=list(_AZURE_COLUMNS))
    else:
        header = [f.strip().strip('"') for f in header_line(path).split(",")]
        for name in wanted:
            if name not in header:
                raise MissingColumnError(path, name, header)
        options["usecols"] = wanted
    # Lines are 1-based and count the header.
    line = 1 if headerless else 2
    try:
        with pd.read_csv(path, **options) as reader:  # type: ignore[call-overload]
            for chunk in reader:
                yield chunk.reset_index(drop=True), line
                line += len(chunk)
    except pd.errors.EmptyDataError as exc:
        raise EmptyTelemetryError(path) from exc
    except pd.errors.ParserError as exc:
        raise TelemetryFormatError(path, "a well-formed CSV file", str(exc)) from exc
    except (UnicodeDecodeError, EOFError, OSError) as exc:
        raise TelemetryFormatError(path, "a readable CSV file", str(exc)) from exc
    if line == (1 if headerless else 2):
        raise EmptyTelemetryError(path)


_Reason = tuple[np.ndarray, str, pd.Series, str]
"""Rows a column could not parse: the mask, the column, its values, what was expected."""


def _parse_chunk(
    path: Path,
    frame: pd.DataFrame,
    first_line: int,
    strict: bool,
    rejected: dict[str, str],
    origin: str | pd.Timestamp | None,
    sources: Mapping[str, str],
) -> pd.DataFrame:
    # Errors name the file's own columns, not the contract's.
    def named(column: str) -> str:
        return sources.get(column, column)

    out = pd.DataFrame(index=frame.index)
    out[ID_COL] = _parse_ids(path, frame[ID_COL], first_line, named(ID_COL))
    stamps, bad_time = _parse_times(frame[TIME_COL], origin)
    out[TIME_COL] = stamps
    reasons: list[_Reason] = [(bad_time, TIME_COL, frame[TIME_COL], "a timestamp")]
    reasons += _parse_numbers(frame, out)
    for column in frame.columns:
        if column not in out.columns:
            out[column] = frame[column]
    bad = np.zeros(len(frame), dtype=bool)
    for mask, *_ in reasons:
        bad = bad | mask
    if not bad.any():
        return out
    for mask, column, values, expected in reasons:
        rows = np.flatnonzero(mask)
        if strict and rows.size:
            raise TelemetryParseError(
                path, named(column), first_line + int(rows[0]), values.iloc[rows[0]], expected
            )
    for mask, column, values, expected in reasons:
        for bad_row in np.flatnonzero(mask):
            uid = str(out[ID_COL].iloc[bad_row])
            if uid not in rejected:
                error = TelemetryParseError(
                    path, named(column), first_line + int(bad_row), values.iloc[bad_row], expected
                )
                rejected[uid] = f"unreadable row: {error}"
    return out[~bad]


def _parse_ids(path: Path, ids: pd.Series, first_line: int, source: str) -> pd.Series:
    """Return the instance ids stripped; raise on the first blank one."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        # Dictionary-encoded ids: check the few categories, not every row.
        names = ids.cat.categories.astype("str").str.strip()
        blank = ids.isna() | ids.cat.codes.isin(np.flatnonzero(np.asarray(names == "")))
        stripped: pd.Series = ids.cat.rename_categories(list(names)) if names.is_unique else ids
    else:
        stripped = ids.astype("str").str.strip()
        blank = ids.isna() | (stripped == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise TelemetryParseError(path, source, first_line + row, ids.iloc[row], "an instance id")
    return stripped


def _parse_numbers(frame: pd.DataFrame, out: pd.DataFrame) -> list[_Reason]:
    """Write the numeric columns to ``out``; return the rows each could not parse."""
    reasons: list[_Reason] = []
    for column in _NUMERIC:
        if column not in frame.columns:
            continue
        text = frame[column]
        if pd.api.types.is_numeric_dtype(text.dtype) and not pd.api.types.is_bool_dtype(text.dtype):
            keep = column == VCPUS_COL or text.dtype == np.float64
            out[column] = text if keep else text.astype(np.float64)
            continue
        empty = text.isna() | (text.astype("str").str.strip() == "")
        numbers = pd.to_numeric(text.where(~empty), errors="coerce").astype(np.float64)
        # An empty cell is a missing reading (NaN, left to validation), not a parse error.
        bad_number = (numbers.isna() & ~empty).to_numpy()
        if column == VCPUS_COL:
            bad_number = (
                bad_number | (~empty & ((numbers < 1) | (numbers != np.round(numbers)))).to_numpy()
            )
        out[column] = numbers
        reasons.append((bad_number, column, text, "a number"))
    return reasons


def _parse_times(
    values: pd.Series, origin: str | pd.Timestamp | None
) -> tuple[pd.Series, np.ndarray]:
    if origin is not None:
        seconds = pd.to_numeric(values, errors="coerce")
        stamps = pd.Timestamp(origin) + pd.to_timedelta(seconds, unit="s")
        stamps = (
            stamps.dt.tz_convert("UTC")
            if stamps.dt.tz is not None
            else stamps.dt.tz_localize("UTC")
        )
        return stamps, stamps.isna().to_numpy()
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    ):
        return values, values.isna().to_numpy()
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        retry = parsed.isna() & values.notna()
        if retry.any():
            parsed = parsed.where(
                ~retry,
                pd.to_datetime(values.where(retry), utc=True, errors="coerce", format="mixed"),
            )
    return parsed, parsed.isna().to_numpy()


def _read_cloudwatch(
    path: Path,
    chunk_rows: int,
    strict: bool,
    collected: _Collected,
    progress: Callable[[int], None] | None,
) -> None:
    if file_suffix(path) not in CSV_SUFFIXES:
        raise TelemetryFormatError(path, "a CloudWatch CSV file with timestamp,value")
    header = [f.strip().strip('"') for f in header_line(path).split(",")]
    lowered = {name.lower(): name for name in header}
    if "timestamp" not in lowered or "value" not in lowered:
        missing = "timestamp" if "timestamp" not in lowered else "value"
        raise MissingColumnError(path, missing, header)
    mapping = {TIME_COL: lowered["timestamp"], TARGET_COL: lowered["value"]}
    instance = path.name.split(".")[0]
    for raw, first_line in _csv_chunks(path, mapping, chunk_rows, headerless=False):
        frame = pd.DataFrame({t: raw[s] for t, s in mapping.items()}, copy=False)
        frame.insert(0, ID_COL, instance)
        parsed = _parse_chunk(path, frame, first_line, strict, collected.rejected, None, mapping)
        collected.frames.append(parsed)
        if progress is not None:
            progress(len(raw))


def _add_vcpus(frame: pd.DataFrame, vmtable: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(vmtable, header=None, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, FileNotFoundError) as exc:
        raise TelemetryFormatError(vmtable, "an Azure vmtable CSV", str(exc)) from exc
    if table.shape[1] < 10:
        raise TelemetryFormatError(
            vmtable,
            "an Azure vmtable CSV with 10 or more columns (vm id first, core count 10th)",
            f"found {table.shape[1]} columns",
        )
    cores_text = table[9].str.strip()
    cores = pd.to_numeric(
        pd.Series([_VM_CORE_BUCKETS.get(c, c) for c in cores_text], dtype=object),
        errors="coerce",
    )
    bad = cores.isna() | (cores < 1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TelemetryParseError(
            vmtable, "vm virtual core count", row + 1, cores_text.iloc[row], "a core count"
        )
    by_vm = pd.Series(cores.astype(np.int64).to_numpy(), index=table[0].str.strip())
    by_vm = by_vm[~by_vm.index.duplicated()]
    vcpus = frame[ID_COL].map(by_vm)
    if vcpus.isna().any():
        missing = str(frame.loc[vcpus.isna(), ID_COL].iloc[0])
        raise TelemetryFormatError(
            vmtable, "a row for every vm id of the readings", f"no row for {missing!r}"
        )
    out = frame.copy()
    out[VCPUS_COL] = vcpus.astype(np.int64)
    return out
