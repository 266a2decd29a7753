"""The ``telemetry`` flow on a real SQLite store: dropped files booked as the API books
them and moved aside, bad ones rejected whole with the reason, due intervals closed,
and the allowances snapshot written."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.usefixtures("prefect_harness")

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def at(n: int) -> datetime:
    return T0 + n * timedelta(minutes=5)


def params(tmp_path: Path, now: datetime) -> object:
    from pipelines.params import TelemetryParams

    return TelemetryParams(
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        telemetry_dir=tmp_path / "telemetry",
        allowances_path=tmp_path / "allowances" / "allowances.parquet",
        now=now,
    )


def drop(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    inbox = tmp_path / "telemetry" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def booked(tmp_path: Path) -> list[tuple[str, datetime, str]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT instance_id, interval_us, source FROM accrual_booked"
            " ORDER BY interval_us, instance_id"
        ).all()
    engine.dispose()
    return [(i, datetime.fromtimestamp(t / 1e6, UTC), s) for i, t, s in rows]


def test_dropped_files_are_booked_once_moved_aside_and_published(tmp_path: Path) -> None:
    from pipelines.telemetry import telemetry_flow

    api = pd.DataFrame(
        {
            "instance_id": ["vm-gold-1", "vm-silver-1", "vm-gold-1", "vm-silver-1"],
            "interval_start": [at(0), at(0), at(1), at(1)],
            "cpu_percent": [10.0, 50.0, 12.5, 0.0],
        }
    )
    drop(tmp_path, "001-api.parquet", api)
    contract = pd.DataFrame(
        {
            "unique_id": ["vm-gold-1", "vm-gold-1"],
            "ds": [at(1).isoformat(), at(2).isoformat()],
            "y": [12.5, 30.0],
        }
    )
    drop(tmp_path, "002-contract.csv", contract)
    unknown = pd.DataFrame({"unique_id": ["vm-ghost"], "ds": [at(2).isoformat()], "y": [1.0]})
    drop(tmp_path, "003-unknown.csv", unknown)
    (tmp_path / "telemetry" / "inbox" / "004-junk.parquet").write_bytes(b"not parquet")
    (tmp_path / "telemetry" / "inbox" / "notes.txt").write_text("left alone")

    run = telemetry_flow(params(tmp_path, at(3) + timedelta(seconds=30)))

    assert [(o.path.name, o.booked) for o in run.files] == [
        ("001-api.parquet", True),
        ("002-contract.csv", True),
        ("003-unknown.csv", False),
        ("004-junk.parquet", False),
    ]
    assert (run.files[1].accepted, run.files[1].duplicates) == (1, 1)
    telemetry = tmp_path / "telemetry"
    assert sorted(p.name for p in (telemetry / "inbox").iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in (telemetry / "done").iterdir()) == [
        "001-api.parquet",
        "001-api.parquet.json",
        "002-contract.csv",
        "002-contract.csv.json",
    ]
    report = json.loads((telemetry / "rejected" / "003-unknown.csv.json").read_text())
    assert report["booked"] is False
    assert report["problems"][0]["problem"] == "unknown_instance"
    junk = json.loads((telemetry / "rejected" / "004-junk.parquet.json").read_text())
    assert "004-junk.parquet" in junk["reason"]
    assert booked(tmp_path) == [
        ("vm-gold-1", at(0), "reading"),
        ("vm-silver-1", at(0), "reading"),
        ("vm-gold-1", at(1), "reading"),
        ("vm-silver-1", at(1), "reading"),
        ("vm-gold-1", at(2), "reading"),
    ]
    snapshot = pq.read_table(run.snapshot)
    rows = {r["instance_id"]: r for r in snapshot.to_pylist()}
    assert set(rows) == {"vm-gold-1", "vm-silver-1"}
    assert rows["vm-gold-1"]["interval_start"] == at(2)
    assert rows["vm-silver-1"]["next_interval_start"] == at(2)
    # vm-silver-1 used 5 credits and earned 1, then earned 1 more: 1 credit left
    assert rows["vm-silver-1"]["balance"] == 1_000
    assert str(rows["vm-silver-1"]["vcpu_minutes"]) == "1.000"
    assert snapshot.schema.metadata[b"creditx.cursor"] == b"5"

    # a re-dropped file books nothing twice; an hour on, silent intervals close as zero
    shutil.copy(telemetry / "done" / "001-api.parquet", telemetry / "inbox" / "005-again.parquet")
    later = telemetry_flow(params(tmp_path, at(3) + timedelta(minutes=61)))
    assert (later.files[0].accepted, later.files[0].duplicates) == (0, 4)
    # the batch's booking closed silver's silent interval 2 on the way
    assert (later.files[0].intervals, later.closed) == (1, ())
    assert booked(tmp_path)[-1] == ("vm-silver-1", at(2), "missing")
    rows = {r["instance_id"]: r for r in pq.read_table(later.snapshot).to_pylist()}
    assert rows["vm-silver-1"]["interval_start"] == at(2)
    assert rows["vm-silver-1"]["balance"] == 2_000

    # with no file at all, the run closes what the window passed
    idle = telemetry_flow(params(tmp_path, at(4) + timedelta(minutes=61)))
    assert [(b.interval_start, b.instances, b.missing) for b in idle.closed] == [(at(3), 2, 2)]
    assert idle.files == ()
