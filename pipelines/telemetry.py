"""The ``telemetry`` flow: book the telemetry files dropped in a directory, publish the
allowances.

Each run takes the files in ``<telemetry_dir>/inbox`` in name order (a collector names
them so that the order is their arrival's, e.g. by time), books each as one batch
through :class:`market.cem.live.LiveAccrual`, exactly as ``POST /v1/telemetry`` does,
and moves it aside:

* to ``done/``, beside ``<name>.json``: what became of each reading (accepted,
  duplicates, refusals) and the intervals the batch booked;
* to ``rejected/``, beside ``<name>.json``: why none of it was booked (the readings'
  problems, or a file that does not read).

A file moves only once its batch committed: a run that dies in between books it again
on the next run, where every reading is a duplicate, so nothing is booked twice. Then
everything due is booked (an interval whose late window passed without a reading
closes as zero usage) and the snapshot of every instance's allowance is written to
``allowances_path`` as Parquet, replaced atomically, for batch consumers.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger

from data.errors import InvalidReadingsError, TelemetryError
from data.readings import ReadingBatch
from market.cem.live import Allowance, IntervalBooked, LiveAccrual, Submission
from market.cem.registry import Registry
from market.cem.tiers import load_config
from market.clock import system_clock
from market.ledger import Ledger, SqlStore, create_store_engine
from market.migrations import upgrade
from pipelines.config import quiet_user_errors
from pipelines.decorators import pipeline_task
from pipelines.params import TelemetryParams

quiet_user_errors()

INBOX, DONE, REJECTED = "inbox", "done", "rejected"
_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What became of one dropped file: where it went and what it booked."""

    path: Path
    booked: bool
    accepted: int
    duplicates: int
    refused: int
    intervals: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TelemetryRun:
    """What one run of the flow did."""

    files: tuple[FileOutcome, ...]
    closed: tuple[IntervalBooked, ...]
    allowances: int
    snapshot: Path


def open_live_accrual(params: TelemetryParams) -> LiveAccrual:
    """Open the live accrual over the store ``params`` names (migrated, tiers loaded)."""
    engine = create_store_engine(params.ledger_url)
    upgrade(engine)
    registry = Registry(engine)
    tiers = registry.load()
    if not tiers.tiers():
        registry.save(load_config(params.tiers_config))
        tiers = registry.load()
    now = params.now
    ledger = Ledger(SqlStore(engine), system_clock if now is None else (lambda: now))
    tiers.open_accounts(ledger)
    return LiveAccrual(ledger, tiers, late_window=timedelta(minutes=params.late_window_minutes))


@pipeline_task(io=True)
def dropped_files(inbox: Path) -> list[Path]:
    """Return the telemetry files waiting in ``inbox``, in name order."""
    inbox.mkdir(parents=True, exist_ok=True)
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.name.lower().endswith(_SUFFIXES))


@pipeline_task()
def book_file(live: LiveAccrual, path: Path, now: datetime, telemetry_dir: Path) -> FileOutcome:
    """Book one dropped file as one batch, then move it to ``done/`` or ``rejected/``."""
    try:
        submission = live.submit(ReadingBatch.read(path), now)
    except InvalidReadingsError as exc:
        report = {
            "booked": False,
            "reason": str(exc),
            "problems": [p.as_dict() for p in exc.problems],
        }
        _move(path, telemetry_dir / REJECTED, report)
        return FileOutcome(path, False, 0, 0, 0, 0, str(exc))
    except TelemetryError as exc:
        _move(path, telemetry_dir / REJECTED, {"booked": False, "reason": str(exc)})
        return FileOutcome(path, False, 0, 0, 0, 0, str(exc))
    _move(path, telemetry_dir / DONE, {"booked": True, **_receipt(submission)})
    receipt = submission.receipt
    return FileOutcome(
        path,
        True,
        receipt.accepted,
        len(receipt.duplicates),
        len(receipt.refused),
        len(submission.booked),
    )


@pipeline_task()
def close_due(live: LiveAccrual, now: datetime) -> list[IntervalBooked]:
    """Book every interval due at ``now``: waiting readings, and closed intervals as zero."""
    return live.book_due(now)


@pipeline_task(io=True)
def write_allowances(live: LiveAccrual, path: Path) -> int:
    """Write every instance's allowance to ``path`` (Parquet, replaced atomically)."""
    found = live.allowances()
    write_allowance_snapshot(found, path)
    return len(found)


@flow(name="telemetry", log_prints=False)
def telemetry_flow(params: TelemetryParams) -> TelemetryRun:
    """Book the dropped telemetry files, close what is due, publish the allowances."""
    logger = get_run_logger()
    now = params.now or system_clock()
    live = open_live_accrual(params)
    try:
        outcomes = []
        for path in dropped_files(params.telemetry_dir / INBOX):
            outcome = book_file(live, path, now, params.telemetry_dir)
            if not outcome.booked:
                logger.warning("%s rejected: %s", path.name, outcome.reason)
            outcomes.append(outcome)
        closed = close_due(live, now)
        count = write_allowances(live, params.allowances_path)
    finally:
        live.ledger.close()
    logger.info(
        "%d files booked, %d rejected, %d intervals closed, %d allowances published",
        sum(o.booked for o in outcomes),
        sum(not o.booked for o in outcomes),
        len(closed),
        count,
    )
    return TelemetryRun(tuple(outcomes), tuple(closed), count, params.allowances_path)


SNAPSHOT_SCHEMA = pa.schema(
    [
        ("instance_id", pa.string()),
        ("tier", pa.string()),
        ("interval_start", pa.timestamp("us", "UTC")),
        ("next_interval_start", pa.timestamp("us", "UTC")),
        ("balance", pa.int64()),
        ("vcpu_minutes", pa.decimal128(20, 3)),
        ("throttled", pa.bool_()),
        ("last_throttled", pa.int64()),
        ("earns_per_interval", pa.int64()),
        ("pool_draw", pa.bool_()),
        ("cursor", pa.int64()),
        ("updated_at", pa.timestamp("us", "UTC")),
    ]
)
"""Columns of the allowances snapshot: milli-credits as int64, vCPU-minutes as an exact
decimal, ``cursor`` the feed's (``GET /v1/admin/allowances``)."""


def write_allowance_snapshot(allowances: list[Allowance], path: Path) -> None:
    """Write ``allowances`` to ``path`` as Parquet, through a temporary file and a rename."""
    columns: dict[str, list[Any]] = {name: [] for name in SNAPSHOT_SCHEMA.names}
    for a in sorted(allowances, key=lambda a: a.instance_id):
        columns["instance_id"].append(a.instance_id)
        columns["tier"].append(a.tier)
        columns["interval_start"].append(a.interval_start)
        columns["next_interval_start"].append(a.next_interval_start)
        columns["balance"].append(a.balance)
        columns["vcpu_minutes"].append(a.vcpu_minutes)
        columns["throttled"].append(a.throttled)
        columns["last_throttled"].append(a.last_throttled)
        columns["earns_per_interval"].append(a.earns_per_interval)
        columns["pool_draw"].append(a.pool_draw)
        columns["cursor"].append(a.seq)
        columns["updated_at"].append(a.updated_at)
    cursor = max((a.seq for a in allowances), default=0)
    table = pa.table(columns, schema=SNAPSHOT_SCHEMA).replace_schema_metadata(
        {"creditx.cursor": str(cursor)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)


def _receipt(submission: Submission) -> dict[str, Any]:
    receipt = submission.receipt

    def notes(found: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [
            {
                "row": n.row,
                "instance_id": n.instance_id,
                "interval_start": n.interval_start.isoformat(),
                "reason": n.reason,
            }
            for n in found
        ]

    return {
        "received": receipt.received,
        "accepted": receipt.accepted,
        "duplicates": notes(receipt.duplicates),
        "refused": notes(receipt.refused),
        "booked": [
            {"interval_start": b.interval_start.isoformat(), "instances": b.instances}
            for b in submission.booked
        ],
    }


def _move(path: Path, directory: Path, report: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.name
    (directory / f"{path.name}.json").write_text(json.dumps(report, indent=1))
    shutil.move(path, target)
