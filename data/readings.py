"""Live readings: batches of 5-minute CPU readings, checked strictly before booking.

A batch holds one row per reading: the instance, the start of its 5-minute interval
and the mean CPU utilisation over it, in percent of the instance's vCPUs. Where
:func:`data.validation.validate_telemetry` repairs a history instance by instance, a
live batch is booked whole or not at all, so :func:`check_readings` finds every
problem and refuses the batch if there is one:

=================== ====================================================================
problem             meaning
=================== ====================================================================
missing             no utilisation (null)
nan                 utilisation NaN
negative            utilisation below 0 (``-inf`` included)
above_100           utilisation above 100 (``inf`` included)
unknown_instance    an instance the fleet does not know
off_grid            an interval start off the 5-minute grid (UTC, from the epoch)
not_ended           an interval that has not ended at the time of checking
out_of_range        an interval start before 2000-01-01 (seconds taken for micros, ...)
=================== ====================================================================

A reading for an interval already read, or one too late to book, is not a problem of
the batch: the booking reports it (:mod:`market.cem.live`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data.columns import ID_COL, TARGET_COL, TIME_COL
from data.errors import InvalidReadingsError, MissingColumnError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STEP_SECONDS",
    "InvalidReadingsError",
    "ReadingBatch",
    "ReadingProblem",
    "check_readings",
    "reading_problems",
]

STEP_SECONDS = 300
"""The length of one reading's interval."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_API_COLUMNS = {ID_COL: "instance_id", TIME_COL: "interval_start", TARGET_COL: "cpu_percent"}
_EARLIEST_US = (datetime(2000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_US = 1_000_000
#: How many problems an error lists; it counts them all.
MAX_LISTED = 100


def micros(moment: datetime) -> int:
    """Return a timezone-aware ``moment`` as integer microseconds since the Unix epoch."""
    if moment.tzinfo is None:
        raise ValueError(f"a reading's time must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """One batch of readings as columns.

    ``instance_id`` holds strings, ``interval_start_us`` int64 microseconds since the
    Unix epoch, ``cpu_percent`` float64 (NaN where a reading had none).
    """

    instance_id: np.ndarray
    interval_start_us: np.ndarray
    cpu_percent: np.ndarray
    source: str = "batch"

    def __post_init__(self) -> None:
        n = len(self.instance_id)
        if len(self.interval_start_us) != n or len(self.cpu_percent) != n:
            raise ValueError("a reading batch's columns must have one length")

    def __len__(self) -> int:
        return len(self.instance_id)

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, datetime, float | None]], source: str = "batch"
    ) -> ReadingBatch:
        """Return the batch of ``(instance_id, interval_start, cpu_percent)`` tuples."""
        rows = list(records)
        return cls(
            np.array([r[0] for r in rows], dtype=object),
            np.array([micros(r[1]) for r in rows], dtype=np.int64),
            np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
            source,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "frame") -> ReadingBatch:
        """Return the readings of a frame in the contract (``unique_id``, ``ds``, ``y``).

        Raises
        ------
        MissingColumnError
            If one of the three columns is absent.
        """
        import pandas as pd

        from data.frame import epoch_nanoseconds

        for column in (ID_COL, TIME_COL, TARGET_COL):
            if column not in frame.columns:
                raise MissingColumnError(source, column, [str(c) for c in frame.columns])
        ds = frame[TIME_COL]
        if not isinstance(ds.dtype, pd.DatetimeTZDtype):
            ds = pd.to_datetime(ds, utc=True)
        return cls(
            frame[ID_COL].astype(str).to_numpy(dtype=object),
            epoch_nanoseconds(ds) // 1000,
            pd.to_numeric(frame[TARGET_COL], errors="coerce").to_numpy(dtype=np.float64),
            source,
        )

    @classmethod
    def read(cls, path: str | Path) -> ReadingBatch:
        """Return the readings of a Parquet or CSV file.

        The file holds ``instance_id``, ``interval_start``, ``cpu_percent`` (the API's
        names) or any schema :func:`data.loaders.load_telemetry` detects (the frame
        contract, the shared schema); rows come sorted by instance, then time.

        Raises
        ------
        TelemetryError
            If the file is missing, of no known format, or holds an unreadable value.
        """
        from data.loaders import load_telemetry
        from data.sources import columns_of

        source = Path(path)
        if set(_API_COLUMNS.values()) <= set(columns_of(source)):
            frame = load_telemetry(source, format="mapped", columns=_API_COLUMNS)
        else:
            frame = load_telemetry(source)
        return cls.from_frame(frame, str(source))

    def to_frame(self) -> pd.DataFrame:
        """Return the batch in the frame contract (``unique_id``, ``ds``, ``y``)."""
        import pandas as pd

        return pd.DataFrame(
            {
                ID_COL: pd.array(self.instance_id, dtype="string"),
                TIME_COL: pd.to_datetime(self.interval_start_us, unit="us", utc=True).as_unit("ns"),
                TARGET_COL: self.cpu_percent,
            }
        )


@dataclass(frozen=True, slots=True)
class ReadingProblem:
    """One thing wrong with one reading: its row, instance and interval, the field, the
    value and why."""

    row: int
    instance_id: str
    interval_start: str
    field: str
    value: Any
    problem: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Return the problem as plain JSON values."""
        value = self.value
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)
        return {
            "row": self.row,
            "instance_id": self.instance_id,
            "interval_start": self.interval_start,
            "field": self.field,
            "value": value,
            "problem": self.problem,
            "message": self.message,
        }


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=int(us))).isoformat().replace("+00:00", "Z")


# One check over a batch: the rows it fails, the field, the problem's name, the field's
# values and the message.
_Check = tuple[np.ndarray, str, str, np.ndarray, str]


def _checks(
    batch: ReadingBatch, instances: Collection[str] | Mapping[str, Any], now: datetime
) -> list[_Check]:
    cpu = batch.cpu_percent
    start = batch.interval_start_us
    known = np.fromiter((i in instances for i in batch.instance_id), bool, len(batch))
    checks: list[_Check] = []
    missing = np.isnan(cpu)
    with np.errstate(invalid="ignore"):
        checks += [
            (missing, "cpu_percent", "nan", cpu, "cpu_percent is NaN or missing"),
            (cpu < 0, "cpu_percent", "negative", cpu, "cpu_percent is below 0"),
            (cpu > 100, "cpu_percent", "above_100", cpu, "cpu_percent is above 100"),
        ]
    end_limit = micros(now) - STEP_SECONDS * _US
    checks += [
        (~known, "instance_id", "unknown_instance", batch.instance_id, "unknown instance"),
        (
            start % (STEP_SECONDS * _US) != 0,
            "interval_start",
            "off_grid",
            start,
            "interval_start is not on the 5-minute grid",
        ),
        (
            start > end_limit,
            "interval_start",
            "not_ended",
            start,
            "the interval has not ended yet",
        ),
        (
            start < _EARLIEST_US,
            "interval_start",
            "out_of_range",
            start,
            "interval_start is before 2000-01-01",
        ),
    ]
    return checks


def _problems_of_row(batch: ReadingBatch, row: int, checks: list[_Check]) -> list[ReadingProblem]:
    problems: list[ReadingProblem] = []
    interval_start = _iso(int(batch.interval_start_us[row]))
    for mask, field, problem, values, message in checks:
        if not mask[row]:
            continue
        value = values[row]
        if field == "interval_start":
            shown: Any = _iso(int(value))
            message = f"{message} ({shown})"
        elif field == "cpu_percent":
            shown = None if np.isnan(value) else float(value)
        else:
            shown = str(value)
            message = f"{message} {shown!r}"
        problems.append(
            ReadingProblem(
                row, str(batch.instance_id[row]), interval_start, field, shown, problem, message
            )
        )
    return problems


def reading_problems(
    batch: ReadingBatch,
    *,
    instances: Collection[str] | Mapping[str, Any],
    now: datetime,
    limit: int = MAX_LISTED,
) -> tuple[list[ReadingProblem], int]:
    """Return up to ``limit`` problems of ``batch`` in row order, and how many there are.

    Parameters
    ----------
    batch
        The readings.
    instances
        The instances the fleet knows.
    now
        The time of checking (timezone-aware): an interval must have ended by then.
    limit
        The most problems listed.
    """
    checks = _checks(batch, instances, now)
    bad = np.zeros(len(batch), dtype=np.int64)
    for mask, *_ in checks:
        bad += mask
    total = int(bad.sum())
    rows = np.flatnonzero(bad)[:limit].tolist()
    problems = [p for row in rows for p in _problems_of_row(batch, row, checks)]
    return problems[:limit], total


def check_readings(
    batch: ReadingBatch,
    *,
    instances: Collection[str] | Mapping[str, Any],
    now: datetime,
) -> None:
    """Refuse ``batch`` if any reading has a problem (see the module's table).

    Raises
    ------
    InvalidReadingsError
        Listing the first :data:`MAX_LISTED` problems in row order and counting all.
    """
    if len(batch) == 0:
        return
    problems, total = reading_problems(batch, instances=instances, now=now)
    if total:
        raise InvalidReadingsError(batch.source, problems, total)
