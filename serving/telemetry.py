"""Bodies of ``POST /v1/telemetry`` read into a :class:`~data.readings.ReadingBatch`.

JSON (``application/json``): ``{"readings": [{"instance_id", "interval_start",
"cpu_percent"}, ...]}``, keys once per object; ``NaN`` is read (and then refused by
name, as every problem of the batch is: :func:`data.readings.check_readings`).
Parquet (``application/vnd.apache.parquet``, also ``application/x-parquet``): columns
``instance_id``, ``interval_start`` (a timestamp; naive means UTC) and ``cpu_percent``,
or the frame contract's ``unique_id``, ``ds`` and ``y``. Anything the route cannot read
is refused with a problem that says where; a batch is booked whole or not at all.
"""

from __future__ import annotations

import email.message
import json
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from data.errors import InvalidReadingsError
from data.readings import ReadingBatch, micros
from serving.errors import DuplicateJsonKey, InvalidTelemetry, UnsupportedMediaType
from serving.schemas import TelemetryBatchCreate

JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
PARQUET_TYPES = frozenset({PARQUET, "application/x-parquet", "application/parquet"})
_COLUMNS = (
    ("instance_id", "interval_start", "cpu_percent"),
    ("unique_id", "ds", "y"),
)
_BATCH = TypeAdapter(TelemetryBatchCreate)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
_MAX_READINGS = 200_000


def media_type(content_type: str | None) -> str:
    """Return the bare media type of a Content-Type header (JSON when absent)."""
    if not content_type:
        return JSON
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


def read_batch(body: bytes, content_type: str | None, source: str = "request") -> ReadingBatch:
    """Return the readings of a request body.

    Raises
    ------
    UnsupportedMediaType
        For a body neither JSON nor Parquet.
    InvalidTelemetry
        For a body that does not parse or does not hold readings; the problem says where.
    DuplicateJsonKey
        For a JSON object naming a key twice.
    """
    kind = media_type(content_type)
    if kind in PARQUET_TYPES:
        return _parquet(body, source)
    if kind == JSON or kind.endswith("+json"):
        return _json(body, source)
    raise UnsupportedMediaType(
        f"POST /v1/telemetry reads {JSON} or {PARQUET}, not {kind}",
        media_type=kind,
    )


def refused(exc: InvalidReadingsError) -> InvalidTelemetry:
    """Return the problem of a batch refused for its readings' problems."""
    return InvalidTelemetry(
        str(exc),
        errors=[p.as_dict() for p in exc.problems],
        problem_count=exc.total,
    )


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateJsonKey(key)
        document[key] = value
    return document


def _json(body: bytes, source: str) -> ReadingBatch:
    try:
        # NaN and infinities parse, so that the batch's check names the reading
        document = json.loads(body, object_pairs_hook=_pairs)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTelemetry(f"the body is not JSON: {exc}") from exc
    fast = _plain_readings(document)
    if fast is not None:
        ids, starts, cpu = fast
        return ReadingBatch(
            np.array(ids, dtype=object),
            np.array(starts, dtype=np.int64),
            np.array(cpu, dtype=np.float64),
            source,
        )
    # not plainly a batch: the schema says where it is wrong
    try:
        parsed = _BATCH.validate_python(document)
    except ValidationError as exc:
        errors = _errors(exc.errors(include_url=False))
        first = errors[0]
        where = ".".join(first["loc"]) or "body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidTelemetry(f"{where}: {first['msg']}{more}", errors=errors[:100]) from None
    readings = parsed.readings
    return ReadingBatch(
        np.array([r.instance_id for r in readings], dtype=object),
        np.array([micros(r.interval_start) for r in readings], dtype=np.int64),
        np.array(
            [math.nan if r.cpu_percent is None else r.cpu_percent for r in readings],
            dtype=np.float64,
        ),
        source,
    )


_KEYS = frozenset({"instance_id", "interval_start", "cpu_percent"})


def _plain_readings(document: Any) -> tuple[list[str], list[int], list[float]] | None:
    # The batch as the schema reads it, in a plain loop (pydantic costs 20 us a reading);
    # ``None`` for anything the loop does not take as is, which the schema then explains.
    if not isinstance(document, dict) or set(document) != {"readings"}:
        return None
    readings = document["readings"]
    if not isinstance(readings, list) or len(readings) > _MAX_READINGS:
        return None
    ids: list[str] = []
    starts: list[int] = []
    cpu: list[float] = []
    fromisoformat = datetime.fromisoformat
    try:
        for reading in readings:
            if type(reading) is not dict or reading.keys() != _KEYS:
                return None
            instance_id, start, value = (
                reading["instance_id"],
                reading["interval_start"],
                reading["cpu_percent"],
            )
            if type(instance_id) is not str or not _NAME.fullmatch(instance_id):
                return None
            if type(start) is not str or len(start) < 19 or start[10] not in "Tt ":
                return None
            moment = fromisoformat(start)
            if moment.tzinfo is None:
                return None
            if value is None:
                value = math.nan
            elif type(value) not in (int, float):
                return None
            ids.append(instance_id)
            starts.append(micros(moment))
            cpu.append(value)
    except ValueError:
        return None
    return ids, starts, cpu


def _errors(details: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in details
    ]


def _parquet(body: bytes, source: str) -> ReadingBatch:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidTelemetry(f"the body is not a Parquet file: {exc}") from exc
    names = set(table.column_names)
    columns = next((c for c in _COLUMNS if set(c) <= names), None)
    if columns is None:
        raise InvalidTelemetry(
            "the Parquet file needs the columns instance_id, interval_start, cpu_percent"
            f" (or unique_id, ds, y); it has {sorted(names)}",
            columns=", ".join(sorted(names)),
        )
    ids, starts, cpu = (table.column(c) for c in columns)
    try:
        if pa.types.is_timestamp(starts.type):
            # Arrow keeps aware timestamps as UTC instants; naive ones are read as UTC
            us = starts.cast(pa.timestamp("us", starts.type.tz)).cast(pa.int64())
        else:
            import pandas as pd

            parsed = pd.to_datetime(starts.to_pandas(), utc=True, format="ISO8601")
            us = pa.array(parsed.dt.as_unit("us").astype("int64"))
        if us.null_count:
            raise ValueError(f"{us.null_count} interval starts are missing")
        values = pc.cast(cpu, pa.float64())
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InvalidTelemetry(
            f"the Parquet file's columns do not read as readings: {exc}"
        ) from exc
    if ids.null_count:
        raise InvalidTelemetry(f"{ids.null_count} readings have no instance id")
    return ReadingBatch(
        np.asarray(pc.cast(ids, pa.string()).to_pylist(), dtype=object),
        np.asarray(us.to_numpy(zero_copy_only=False), dtype=np.int64),
        np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64),
        source,
    )
