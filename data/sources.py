"""Telemetry sources: the files a path names and the format their headers show.

Everything here reads names, first lines and Parquet schemas only, without pandas, so
a command tells a missing or malformed file in a second, before any long job starts.
:mod:`data.loaders` reads the rows.
"""

from __future__ import annotations

import glob
import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from data.columns import REQUIRED_COLUMNS
from data.errors import (
    EmptyTelemetryError,
    InvalidParameterError,
    MissingColumnError,
    TelemetryFormatError,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FORMATS", "Format", "check_source", "column_mapping"]

Format = Literal["auto", "shared", "contract", "azure", "cloudwatch", "mapped"]
FORMATS: tuple[str, ...] = ("auto", "shared", "contract", "azure", "cloudwatch", "mapped")

CSV_SUFFIXES = (".csv", ".csv.gz", ".gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def column_mapping(pairs: list[str] | None) -> dict[str, str] | None:
    """Return the mapping that ``CONTRACT=SOURCE`` pairs (``unique_id=host``) name.

    Raises
    ------
    InvalidParameterError
        If a pair is not of that form.
    """
    if not pairs:
        return None
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise InvalidParameterError("--column", pair, "CONTRACT=SOURCE, e.g. unique_id=host")
        mapping[target.strip()] = source.strip()
    return mapping


def check_source(
    path: str | Path, *, format: Format = "auto", columns: Mapping[str, str] | None = None
) -> str:
    """Check that ``path`` names telemetry of a readable format, from its headers only.

    A quick check before a long job: the files exist, and their names and first lines
    (or Parquet schemas) match ``format`` or one format :func:`load_telemetry` detects.

    Returns
    -------
    str
        The format the files will be read as.

    Raises
    ------
    TelemetryFormatError
        If the path is missing, empty, or of no supported format.
    InvalidParameterError
        If ``format`` is unknown, or ``"mapped"`` comes without ``columns``.
    MissingColumnError
        If a mapped column is absent from the first file.
    """
    if format not in FORMATS:
        raise InvalidParameterError("format", format, f"one of {list(FORMATS)}")
    files = expand(path)
    kind = detect(files, columns) if format == "auto" else format
    if kind == "mapped" and not columns:
        raise InvalidParameterError("columns", columns, "a mapping for the 'mapped' format")
    if columns:
        present = columns_of(files[0])
        for source in columns.values():
            if source not in present:
                raise MissingColumnError(files[0], source, present)
    return kind


def columns_of(path: Path) -> list[str]:
    """Return the column names of a CSV header or a Parquet schema."""
    if file_suffix(path) in PARQUET_SUFFIXES:
        return list(parquet_schema(path).names)
    return [f.strip().strip('"') for f in header_line(path).split(",")]


def expand(path: str | Path) -> list[Path]:
    """Return the files a file, directory or glob names, sorted."""
    text = str(path)
    candidate = Path(text)
    if candidate.is_dir():
        files = sorted(p for p in candidate.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise EmptyTelemetryError(candidate, "a directory with telemetry files")
        return files
    if candidate.is_file():
        return [candidate]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not files:
            raise TelemetryFormatError(text, "a pattern matching telemetry files", "no match")
        return files
    raise TelemetryFormatError(text, "an existing file, directory or glob", "not found")


def file_suffix(path: Path) -> str:
    """Return the suffix that tells a file's kind (``.csv.gz`` counts as one)."""
    name = path.name.lower()
    for suffix in (*PARQUET_SUFFIXES, ".csv.gz", ".csv"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def detect(files: list[Path], columns: Mapping[str, str] | None) -> Format:
    """Return the one format all ``files`` are in, from their headers."""
    if columns:
        return "mapped"
    kinds = {_detect_file(f) for f in files}
    if len(kinds) > 1:
        raise TelemetryFormatError(files[0].parent, "files of one format", f"found {sorted(kinds)}")
    kind = kinds.pop()
    if kind in ("shared", "contract", "azure", "cloudwatch"):
        return kind  # type: ignore[return-value]
    raise TelemetryFormatError(files[0], "a telemetry format", kind)


def _detect_file(path: Path) -> str:
    suffix = file_suffix(path)
    if suffix in PARQUET_SUFFIXES:
        names = set(parquet_schema(path).names)
        return _detect_names(path, names)
    if suffix not in CSV_SUFFIXES:
        raise TelemetryFormatError(path, "a Parquet (.parquet) or CSV (.csv, .csv.gz) file")
    first = header_line(path)
    fields = [f.strip().strip('"') for f in first.split(",")]
    lowered = {f.lower() for f in fields}
    if lowered == {"timestamp", "value"}:
        return "cloudwatch"
    if len(fields) == 5 and _is_number(fields[0]) and all(_is_number(f) for f in fields[2:]):
        return "azure"
    return _detect_names(path, set(fields))


def _detect_names(path: Path, names: set[str]) -> str:
    if {"instance_id", "ts", "cpu_avg"} <= names:
        return "shared"
    if set(REQUIRED_COLUMNS) <= names:
        return "contract"
    raise TelemetryFormatError(
        path,
        "columns instance_id, ts, cpu_avg (shared schema) or unique_id, ds, y (frame "
        "contract), or a column mapping",
        f"found columns {sorted(names)}",
    )


def header_line(path: Path) -> str:
    """Return the first line of a (gzipped) UTF-8 CSV file."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                line = handle.readline()
        else:
            with path.open(encoding="utf-8") as handle:
                line = handle.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise TelemetryFormatError(path, "a UTF-8 CSV file", str(exc)) from exc
    if not line.strip():
        raise EmptyTelemetryError(path)
    return line.strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parquet_schema(path: Path) -> pa.Schema:
    """Return a Parquet file's schema, read from its footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TelemetryFormatError(path, "a Parquet file", str(exc)) from exc
