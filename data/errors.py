"""Exceptions of the ``data`` package.

Every error names what was wrong and, where a file is involved, the file, the row or
column, and what was expected::

    TelemetryError                      root of every telemetry error
    ├── TelemetryFormatError            a file of the wrong or an undetectable format
    │   └── EmptyTelemetryError         a file (or directory) with no readings
    ├── MissingColumnError              a required column is absent
    ├── TelemetryParseError             a value that does not parse (timestamp, number)
    ├── FrameContractError              a frame that breaks the frame contract
    ├── InvalidParameterError           a bad argument (size, frequency, policy, ...)
    ├── InstancesRejectedError          every instance of a file failed validation
    └── InvalidReadingsError            a batch of live readings with a problem (none booked)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from data.readings import ReadingProblem


class TelemetryError(Exception):
    """Root of every error raised by the ``data`` package."""


class TelemetryFormatError(TelemetryError):
    """A file whose format is wrong or cannot be detected."""

    def __init__(self, path: str | Path, expected: str, detail: str = "") -> None:
        self.path = str(path)
        self.expected = expected
        self.detail = detail
        tail = f": {detail}" if detail else ""
        super().__init__(f"{self.path}: expected {expected}{tail}")


class EmptyTelemetryError(TelemetryFormatError):
    """A file or directory that holds no readings."""

    def __init__(self, path: str | Path, expected: str = "at least one reading") -> None:
        super().__init__(path, expected, "the file is empty")


class MissingColumnError(TelemetryError):
    """A required column is absent."""

    def __init__(self, path: str | Path | None, column: str, available: list[str]) -> None:
        self.path = None if path is None else str(path)
        self.column = column
        self.available = list(available)
        where = f"{self.path}: " if self.path else ""
        super().__init__(
            f"{where}missing column {column!r}; the columns present are {self.available}"
        )


class TelemetryParseError(TelemetryError):
    """A value that does not parse as what its column expects."""

    def __init__(
        self,
        path: str | Path | None,
        column: str,
        row: int | None,
        value: object,
        expected: str,
    ) -> None:
        self.path = None if path is None else str(path)
        self.column = column
        self.row = row
        self.value = value
        self.expected = expected
        where = f"{self.path}: " if self.path else ""
        at = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}{at}column {column!r}: expected {expected}, got {value!r}")


class FrameContractError(TelemetryError):
    """A frame that breaks the frame contract of :mod:`data.frame`."""

    def __init__(self, column: str, expected: str, detail: str = "") -> None:
        self.column = column
        self.expected = expected
        tail = f", {detail}" if detail else ""
        super().__init__(f"column {column!r}: expected {expected}{tail}")


class InvalidParameterError(TelemetryError, ValueError):
    """An argument outside its allowed range or set."""

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name}: expected {expected}, got {value!r}")


class InstancesRejectedError(TelemetryError):
    """Validation rejected every instance, so nothing usable remains."""

    def __init__(self, source: str, report: pd.DataFrame) -> None:
        self.source = source
        self.report = report
        super().__init__(
            f"{source}: all {len(report)} instances were rejected by validation; "
            "see the report for the problems of each"
        )


class InvalidReadingsError(TelemetryError):
    """A batch of live readings with at least one problem; none of it may be booked.

    ``problems`` lists the first problems in row order (:class:`data.readings.ReadingProblem`),
    ``total`` counts them all.
    """

    def __init__(self, source: str, problems: list[ReadingProblem], total: int) -> None:
        self.source = source
        self.problems = tuple(problems)
        self.total = total
        first = problems[0]
        more = f" (and {total - 1} more)" if total > 1 else ""
        super().__init__(f"{source}: row {first.row}: {first.message}{more}; nothing was booked")
