"""The tasks of the ``replay`` flow: read a trace, replay it, write and track the result.

The replay itself is :func:`pipelines.replay.replay`; these tasks put it in the
pipelines' house, so that every replay leaves an MLflow run (its figures as metrics,
``replay.json`` and ``report.html`` as artifacts) in the fleet's replay experiment,
beside the training runs of the same fleet.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.decorators import pipeline_task
from pipelines.params import ReplayParams, TrackingParams
from pipelines.replay import POLICIES, ReplayRun, load_scenario, replay

# A number the replay reports per policy becomes a metric named ``<policy>/<figure>``.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")


@dataclass(frozen=True, slots=True)
class ReplayTrace:
    """A trace on the replay's 5-minute grid, what was done to it, and where it came from."""

    frame: pd.DataFrame
    notes: list[str]
    source: str


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """Where a replay left its figures and report, and its MLflow run."""

    replay_json: Path
    report: Path
    run_id: str
    document: dict[str, Any]


def experiment_name(tracking: TrackingParams) -> str:
    """Return the MLflow experiment that holds the fleet's replays."""
    return f"{tracking.experiment}-replay"


def metric_name(policy: str, figure: str) -> str:
    """Return an MLflow-safe metric name for ``figure`` of ``policy`` (``+`` is not)."""
    return _UNSAFE.sub("-", f"{policy.replace('+', '-plus-')}/{figure}")


def replay_metrics(document: dict[str, Any]) -> dict[str, float]:
    """Return every finite number of a replay document's summaries and targets."""
    metrics: dict[str, float] = {}
    for policy, figures in document["policies"].items():
        for figure, value in figures.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(value):
                metrics[metric_name(policy, figure)] = float(value)
    for name, value in document["targets"].items():
        if value is not None:
            metrics[f"target/{name}"] = float(value)
    return metrics


@pipeline_task()
def replay_trace(params: ReplayParams) -> ReplayTrace:
    """Read the trace the flow replays: a validated file, or a seeded synthetic fleet."""
    if params.synthetic is not None:
        from data.synthetic import generate_fleet

        fleet = params.synthetic
        frame = generate_fleet(fleet.instances, fleet.days, seed=fleet.seed, attributes=False)
        return ReplayTrace(frame, [], f"a synthetic fleet (seed {fleet.seed})")
    from pipelines.replay.trace import read_trace

    assert params.source is not None
    frame, notes = read_trace(params.source)
    return ReplayTrace(frame, notes, str(params.source))


@pipeline_task()
def replay_policies(trace: ReplayTrace, params: ReplayParams) -> ReplayRun:
    """Replay the chosen policies (every one by default) on the trace.

    Each policy's hours, and the forecasts', are reported as stages of
    :mod:`pipelines.progress`.
    """
    from pipelines import progress

    return replay(
        trace.frame,
        load_scenario(params.scenario),
        params.policies or POLICIES,
        progress=progress.stages("replay"),
    )


@pipeline_task()
def write_replay(run: ReplayRun, trace: ReplayTrace, out_dir: Path) -> tuple[Path, Path, dict]:
    """Write ``replay.json`` and ``report.html`` under ``out_dir``."""
    from pipelines.report import write_report

    document = run.document(source=trace.source)
    document["notes"] = trace.notes
    out_dir.mkdir(parents=True, exist_ok=True)
    replay_json = out_dir / "replay.json"
    replay_json.write_text(json.dumps(document, indent=1))
    return replay_json, write_report(document, out_dir / "report.html"), document


@pipeline_task(io=True)
def open_replay_run(params: ReplayParams) -> str:
    """Start the replay's MLflow run (so its duration is the replay's) and log its inputs."""
    from mlflow import MlflowClient

    tracking = params.tracking
    client = MlflowClient(tracking.tracking_uri)
    name = experiment_name(tracking)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = f"{tracking.artifact_root.rstrip('/')}/{name}"
        experiment_id = client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    source = str(params.source) if params.source is not None else "synthetic"
    run = client.create_run(
        experiment_id,
        run_name=f"replay {params.scenario or 'standard'}",
        tags={"creditx.kind": "replay", "creditx.source": source[:250]},
    )
    run_id = str(run.info.run_id)
    client.log_param(run_id, "scenario", params.scenario or "standard")
    client.log_param(run_id, "policies", ",".join(params.policies or POLICIES))
    if params.synthetic is not None:
        client.log_param(run_id, "synthetic", params.synthetic.model_dump_json())
    return run_id


@pipeline_task(io=True)
def log_replay(
    tracking: TrackingParams, run_id: str, document: dict[str, Any], files: tuple[Path, ...]
) -> None:
    """Finish the run: the fleet's size, every figure as a metric, the JSON and the report."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking.tracking_uri)
    client.log_param(run_id, "instances", document["instances"])
    client.log_param(run_id, "hours", document["hours"])
    stamp = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    metrics = [Metric(k, v, stamp, 0) for k, v in sorted(replay_metrics(document).items())]
    for start in range(0, len(metrics), 500):  # MLflow takes at most 1,000 per batch
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)


@pipeline_task(io=True)
def fail_replay_run(tracking: TrackingParams, run_id: str, reason: str) -> None:
    """Mark the run failed, with the reason as a tag."""
    from mlflow import MlflowClient

    from pipelines.tracking import fail_run

    fail_run(MlflowClient(tracking.tracking_uri), run_id, reason)
