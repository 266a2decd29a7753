"""``creditx bench pipelines``: the ``train`` flow at fleet scale.

Ingests a seeded synthetic fleet (hourly, 28 days by default) into a fresh working
directory, then times the ``train`` flow on it with the default task runner: every
instance back-tested and fitted for the hour, day and week horizons, one MLflow run
with its tables and plots, one registered model version. The MLflow share is the
time spent logging that run (metrics, tables, plots, model, registration) over the
flow's wall time; the CPU seconds of the whole process stand beside it. The
``promote`` flow that follows is timed for context. With ``--runner dask`` the same
training runs again on a ``distributed.LocalCluster`` of worker processes (into a
store of its own) and its time is printed beside the default runner's, with whether
both registered the same forecasts.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from benchmarks._report import Figure, report

if TYPE_CHECKING:
    from pipelines.flows import TrainOutcome
    from pipelines.params import TrackingParams, TrainParams


@dataclass(frozen=True, slots=True)
class _Timings:
    ingest: float
    train: float
    train_cpu: float
    promote: float


def _local_prefect(home: Path) -> None:
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A first start migrates a fresh database: slow on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")


def run(
    instances: int,
    days: float,
    shard_size: int,
    candidates: str | None,
    home: Path,
    calibration_hours: int | None = None,
    runner: str = "default",
    dask_workers: int = 2,
) -> list[Figure]:
    """Ingest a synthetic fleet, train and promote it; return the figures."""
    _local_prefect(home)
    from pipelines.flows import ingest_flow, promote_flow, train_flow
    from pipelines.params import (
        CALIBRATION_HOURS,
        DEFAULT_CANDIDATES,
        IngestParams,
        PromoteParams,
        SyntheticFleet,
        TrackingParams,
        TrainParams,
    )

    tracking = TrackingParams(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_root=(home / "mlartifacts").as_uri(),
        model_name="bench-fleet",
        fleet="bench",
    )
    started = time.perf_counter()
    fleet = SyntheticFleet(instances=instances, days=days, seed=0, freq="1h")
    snapshot = ingest_flow(IngestParams(synthetic=fleet, home=home))
    ingest_seconds = time.perf_counter() - started
    params = TrainParams(
        tracking=tracking,
        snapshot=snapshot.path,
        candidates=DEFAULT_CANDIDATES if candidates is None else tuple(candidates.split(",")),
        shard_size=shard_size,
        calibration_hours=calibration_hours or CALIBRATION_HOURS,
        promote=False,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    state = train_flow(params, return_state=True)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    record = cast("TrainOutcome", state.result()).record
    started = time.perf_counter()
    decision = promote_flow(PromoteParams(tracking=tracking, version=record.version))
    promote_seconds = time.perf_counter() - started
    timings = _Timings(ingest_seconds, train_seconds, train_cpu_seconds, promote_seconds)
    print(f"candidates {','.join(params.candidates)}")
    print(f"{state.name}: {record.reason or 'every instance on its chosen model'}")
    print(decision.reason)
    extra: list[Figure] = []
    if runner == "dask":
        extra = _dask_figures(params, tracking, dask_workers, train_seconds, train_cpu_seconds)
    return [*_figures(snapshot, params, record, timings), *extra]


def _figures(snapshot: Any, params: TrainParams, record: Any, timings: _Timings) -> list[Figure]:
    return [
        Figure("instances", float(snapshot.instances), ""),
        Figure("hourly rows", float(snapshot.rows), ""),
        Figure("forecasters' calibration window", float(params.calibration_hours), "h"),
        Figure("train flow, default runner", timings.train, "s", "<= 600"),
        Figure("train flow CPU (all threads of the process)", timings.train_cpu, "s"),
        Figure(
            "MLflow logging share of the train flow",
            100 * record.mlflow_seconds / timings.train,
            "%",
            "<= 10",
        ),
        Figure("MLflow logging", record.mlflow_seconds, "s"),
        Figure("ingest flow (synthetic, hourly)", timings.ingest, "s"),
        Figure("promote flow (first champion)", timings.promote, "s"),
        Figure("back-test MASE, next hour", record.metrics["mase_hour"], ""),
        Figure("back-test MASE, next day", record.metrics["mase_day"], ""),
        Figure("back-test MASE, next week", record.metrics["mase_week"], ""),
        Figure("back-test coverage90, next day", record.metrics["coverage90_day"], ""),
    ]


def _dask_figures(
    params: TrainParams,
    tracking: TrackingParams,
    workers: int,
    default_seconds: float,
    default_cpu_seconds: float,
) -> list[Figure]:
    # The same training on worker processes, into a store of its own; the CPU time of
    # the workers is not this process's, so only wall time compares.
    import mlflow
    import pandas as pd

    from pipelines.flows import task_runner, train_flow

    dask_tracking = tracking.model_copy(
        update={"model_name": f"{tracking.model_name}-dask", "fleet": f"{tracking.fleet}-dask"}
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    flow = train_flow.with_options(task_runner=task_runner("dask", workers=workers))
    state = flow(params.model_copy(update={"tracking": dask_tracking}), return_state=True)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    record = cast("TrainOutcome", state.result()).record
    mlflow.set_tracking_uri(tracking.tracking_uri)
    forecasts = []
    for name in (tracking.model_name, dask_tracking.model_name):
        model = mlflow.pyfunc.load_model(f"models:/{name}/1")
        ids = model.unwrap_python_model().unique_ids
        config = pd.DataFrame(
            {"unique_id": ids, "h": 24, "quantiles": [[0.1, 0.5, 0.9]] * len(ids)}
        )
        # Shards may finish in any order: compare the forecasts row by row in one order.
        forecasts.append(model.predict(config).sort_values(["unique_id", "ds"], ignore_index=True))
    try:  # the same forecasts up to floating-point rounding across processes
        pd.testing.assert_frame_equal(forecasts[0], forecasts[1], rtol=1e-6)
        same = True
    except AssertionError:
        same = False
    values = ["yhat", "q10", "q50", "q90"]
    largest = float((forecasts[0][values] - forecasts[1][values]).abs().to_numpy().max())
    print(f"Dask LocalCluster, {workers} worker processes: {state.name}, v{record.version}")
    return [
        Figure(f"train flow, Dask LocalCluster ({workers} worker processes)", seconds, "s"),
        Figure("train flow CPU of this process, Dask runner", cpu_seconds, "s"),
        Figure("Dask / default runner, wall time", seconds / default_seconds, ""),
        Figure("default runner CPU (for the ratio above)", default_cpu_seconds, "s"),
        Figure("Dask version forecasts equal the default's (rtol 1e-6)", float(same), "", ">= 1"),
        Figure("largest forecast difference, Dask vs default", largest, "% CPU"),
    ]


def register(bench_app: typer.Typer) -> None:
    """Add the ``pipelines`` command to ``creditx bench``."""

    @bench_app.command("pipelines")
    def pipelines(
        json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
        instances: int = typer.Option(2000, help="synthetic instances"),
        days: float = typer.Option(28.0, help="days of hourly telemetry"),
        shard_size: int = typer.Option(500, help="instances per training shard"),
        candidates: str | None = typer.Option(
            None, help="forecasters to choose from; the train flow's default set without"
        ),
        calibration_hours: int | None = typer.Option(
            None, help="calibration window of the forecasters; the train flow's default without"
        ),
        runner: str = typer.Option(
            "default", help="'dask' also trains on a Dask LocalCluster and compares the times"
        ),
        dask_workers: int = typer.Option(2, help="worker processes of the Dask LocalCluster"),
    ) -> None:
        """Time the train flow on a synthetic fleet and MLflow's share of it."""
        if runner not in ("default", "dask"):
            raise typer.BadParameter(f"expected 'default' or 'dask', got {runner!r}")
        with tempfile.TemporaryDirectory(prefix="creditx-bench-pipelines-") as tmp:
            figures = run(
                instances,
                days,
                shard_size,
                candidates,
                Path(tmp),
                calibration_hours,
                runner,
                dask_workers,
            )
        report("pipelines", figures, json_out)
