"""The MLflow tasks every flow shares: the experiment, a training's record, a failed run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.decorators import pipeline_task
from pipelines.params import TrackingParams
from pipelines.tracking import TAG_KIND, TAG_REASON, TAG_STATUS, TAG_WARNING, ensure_experiment


@dataclass(frozen=True)
class TrainingRecord:
    """The MLflow run and registered version of one training."""

    run_id: str
    version: str
    metrics: dict[str, float]
    status: str
    reason: str
    reused: bool = False
    mlflow_seconds: float = 0.0
    #: What the run warns about: instances whose forecasts are worse than naive's.
    warning: str = ""


@pipeline_task(io=True)
def open_experiment(tracking: TrackingParams) -> str:
    """Check the MLflow store answers and return the fleet's experiment id."""
    return ensure_experiment(tracking.client(), tracking)


def config_hash(document: dict[str, Any]) -> str:
    """Return a short stable hash of a JSON-able training configuration."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


@pipeline_task(io=True)
def find_training(
    tracking: TrackingParams, experiment_id: str, tags: dict[str, str]
) -> TrainingRecord | None:
    """Return the record of a finished training run with these tags, if one exists."""
    from pipelines.tracking import find_finished_run

    client = tracking.client()
    run = find_finished_run(client, experiment_id, tags)
    if run is None:
        return None
    versions = client.search_model_versions(
        f"name = '{tracking.model_name}' and run_id = '{run.info.run_id}'"
    )
    if not versions:
        return None
    return TrainingRecord(
        run_id=run.info.run_id,
        version=str(versions[0].version),
        metrics=dict(run.data.metrics),
        status=run.data.tags.get(TAG_STATUS, "complete"),
        reason=run.data.tags.get(TAG_REASON, ""),
        warning=run.data.tags.get(TAG_WARNING, ""),
        reused=True,
    )


@pipeline_task(io=True)
def record_failure(
    tracking: TrackingParams, experiment_id: str, kind: str, tags: dict[str, str], reason: str
) -> str:
    """Log a failed run whose tags give the reason, so the MLflow UI shows the failure."""
    from pipelines.tracking import fail_run

    client = tracking.client()
    run = client.create_run(experiment_id, tags={TAG_KIND: kind, **tags}, run_name=f"{kind}-failed")
    fail_run(client, run.info.run_id, reason)
    return str(run.info.run_id)


def log_scores(
    client: Any, experiment_id: str, kind: str, tags: dict[str, str], metrics: dict[str, float]
) -> str:
    """Log ``metrics`` as a finished run of ``kind``; return its id."""
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, tags={TAG_KIND: kind, **tags}, run_name=kind)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items() if np.isfinite(v)],
    )
    client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)
