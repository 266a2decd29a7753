"""The ingest flow: telemetry in, one content-addressed hourly snapshot out.

Apart from the other flows so that ``creditx pipeline ingest`` imports neither MLflow
nor the forecasters: with a Prefect server running, the flow starts in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from pipelines import progress
from pipelines.config import quiet_user_errors
from pipelines.decorators import pipeline_task
from pipelines.errors import EmptySnapshotError
from pipelines.params import IngestParams
from pipelines.snapshot import Snapshot, write_snapshot

quiet_user_errors()


@pipeline_task(io=True)
def load_telemetry(params: IngestParams) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Read and validate the telemetry source; return ``(frame, report, source)``.

    Raises
    ------
    EmptySnapshotError
        If the source holds no rows or validation rejects every instance.
    """
    from data.errors import EmptyTelemetryError, InstancesRejectedError
    from data.loaders import read_telemetry
    from data.synthetic import generate_fleet
    from data.validation import ValidationPolicy, validate_telemetry

    policy = ValidationPolicy()
    if params.policy == "strict":
        policy = ValidationPolicy(
            duplicates="reject",
            out_of_range="reject",
            nan="reject",
            out_of_order="reject",
            irregular="reject",
            long_gaps="reject",
        )

    if params.synthetic is not None:
        fleet = params.synthetic
        source = f"synthetic:{fleet.instances}x{fleet.days}d:seed{fleet.seed}"
    else:
        source = str(params.source)
    try:
        if params.synthetic is not None:
            raw = generate_fleet(
                fleet.instances, fleet.days, seed=fleet.seed, freq=fleet.freq, attributes=False
            )
            result = validate_telemetry(raw, policy, source=source)
        else:
            result = read_telemetry(
                Path(str(params.source)), policy, format=params.format, columns=params.columns
            )
    except EmptyTelemetryError as exc:
        raise EmptySnapshotError(source, rows=0, rejected=0) from exc
    except InstancesRejectedError as exc:
        rows = int(exc.report["rows"].sum()) if "rows" in exc.report else len(exc.report)
        raise EmptySnapshotError(source, rows=rows, rejected=len(exc.report)) from exc
    return result.frame, result.report, source


@pipeline_task()
def hourly_telemetry(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Average validated telemetry to hourly values, the grain the forecasters learn."""
    from data.resample import drop_partial_first_hours, to_hourly

    if frame.empty:
        raise EmptySnapshotError(source, rows=0, rejected=0)
    frame, note = drop_partial_first_hours(frame)
    if note is not None:
        get_run_logger().info("%s: %s", source, note)
    return to_hourly(frame)


@pipeline_task(io=True)
def store_snapshot(hourly: pd.DataFrame, root: Path, source: str) -> Snapshot:
    """Store the hourly frame as a content-addressed snapshot under ``root``."""
    return write_snapshot(hourly, root, source)


@flow(name="ingest", log_prints=False)
def ingest_flow(params: IngestParams) -> Snapshot:
    """Load and validate telemetry, average it hourly and store a snapshot.

    Ingesting the same telemetry again returns the same snapshot file.
    """
    logger = get_run_logger()
    # Reading and validating, averaging hourly, storing: one unit each.
    progress.begin("ingest", "ingesting telemetry", total=3)
    frame, report, source = load_telemetry(params)
    progress.advance("ingest")
    rejected = int((report["status"] == "rejected").sum()) if "status" in report else 0
    if rejected:
        logger.warning("%d of %d instances rejected by validation", rejected, len(report))
    hourly = hourly_telemetry(frame, source)
    progress.advance("ingest")
    snapshot = store_snapshot(hourly, params.home / "snapshots", source)
    progress.advance("ingest")
    logger.info(
        "snapshot %s: %d instances, %d hourly rows",
        snapshot.path,
        snapshot.instances,
        snapshot.rows,
    )
    return snapshot
