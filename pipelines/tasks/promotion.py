"""The promotion tasks: a candidate's facts, its smoke test, the champion's scores, the alias."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.forecasts import QUANTILES, quantile_column
from data.frame import ID_COL
from models import ForecastError
from pipelines.decorators import pipeline_task
from pipelines.errors import BrokenModelError
from pipelines.fleet_model import input_example
from pipelines.params import CALIBRATION_HOURS, TrackingParams
from pipelines.scoring import aggregate_metrics
from pipelines.snapshot import read_snapshot
from pipelines.tasks.tracking import log_scores
from pipelines.tasks.training import forecast_config, split_shards, train_shard
from pipelines.tracking import TAG_SNAPSHOT, TAG_WINDOW, log_json


@pipeline_task(io=True)
def candidate_facts(tracking: TrackingParams, version: str | None) -> dict[str, Any]:
    """Return a version's run id, back-test window, metrics and training parameters."""
    from pipelines.tracking import model_version

    client: Any = tracking.client()  # MLflow types a version's run id as optional
    found = model_version(client, tracking.model_name, version)
    run = client.get_run(found.run_id)
    return {
        "version": str(found.version),
        "run_id": found.run_id,
        "window": run.data.tags.get(TAG_WINDOW, ""),
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
    }


@pipeline_task(io=True)
def smoke_test(tracking: TrackingParams, version: str) -> None:
    """Load a version through MLflow and forecast its input example.

    Raises
    ------
    BrokenModelError
        If it does not load, or its forecasts are empty, incomplete or not finite.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = f"models:/{tracking.model_name}/{version}"
    tracking.client()
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
        model = pyfunc.unwrap_python_model()
        example = input_example(model.unique_ids)
        out = pyfunc.predict(example)
    except (MlflowException, OSError, AttributeError, ForecastError, ValueError) as exc:
        raise BrokenModelError(version, f"it does not load or forecast: {exc}") from exc
    values = out[["yhat", *(quantile_column(q) for q in QUANTILES)]].to_numpy(dtype=float)
    if out.empty or not np.isfinite(values).all():
        raise BrokenModelError(version, "its forecasts of the input example are not finite")
    if set(out[ID_COL].astype(str)) != set(example[ID_COL]):
        raise BrokenModelError(version, "it does not forecast every instance it was asked for")


@pipeline_task(io=True, retries=1, retry_delay_seconds=2)
def champion_scores(
    tracking: TrackingParams, experiment_id: str, facts: dict[str, Any]
) -> dict[str, Any] | None:
    """Return the champion's version and metrics on the candidate's back-test window.

    The champion's own run is reused when it was scored on that window; otherwise its
    configuration is back-tested there and the result logged as a run of its own.
    ``None`` when there is no champion yet.
    """
    from pipelines.scoring import backtest_window
    from pipelines.tracking import CHAMPION, aliased_version

    client: Any = tracking.client()
    champion = aliased_version(client, tracking.model_name, CHAMPION)
    if champion is None:
        return None
    run = client.get_run(champion.run_id)
    if run.data.tags.get(TAG_WINDOW) == facts["window"]:
        return {"version": str(champion.version), "metrics": dict(run.data.metrics)}
    own = run.data.params
    snapshot, frame = read_snapshot(Path(facts["params"]["snapshot"]))
    window = backtest_window(snapshot, int(facts["params"]["backtest_days"]))
    config = forecast_config(
        tuple(own["candidates"].split(",")),
        int(own["seed"]),
        int(own.get("calibration_hours", CALIBRATION_HOURS)),
    )
    shards = split_shards.fn(frame, int(own["shard_size"]))
    results = [
        part for shard in shards for part in train_shard.fn(shard, config, window, [], False)
    ]
    metrics = pd.concat([r.metrics for r in results if not r.metrics.empty], ignore_index=True)
    fallbacks = pd.concat([r.fallbacks for r in results], ignore_index=True)
    summary = aggregate_metrics(metrics)
    summary["fallback_share"] = fallbacks[ID_COL].nunique() / max(snapshot.instances, 1)
    log_scores(
        client,
        experiment_id,
        "champion-backtest",
        {
            TAG_SNAPSHOT: snapshot.digest,
            TAG_WINDOW: window.key,
            "creditx.version": str(champion.version),
        },
        summary,
    )
    return {"version": str(champion.version), "metrics": summary}


@pipeline_task(io=True)
def set_champion(tracking: TrackingParams, facts: dict[str, Any], decision: Any) -> None:
    """Move the champion alias if the gate promoted; record the decision either way."""
    from pipelines.tracking import CHAMPION

    client = tracking.client()
    verdict = "promoted" if decision.promote else "refused"
    if decision.promote:
        client.set_registered_model_alias(tracking.model_name, CHAMPION, facts["version"])
    client.set_model_version_tag(
        tracking.model_name, facts["version"], "creditx.promotion", verdict
    )
    client.set_model_version_tag(
        tracking.model_name, facts["version"], "creditx.promotion_reason", decision.reason[:5000]
    )
    client.set_tag(facts["run_id"], "creditx.promotion", verdict)
    client.set_tag(facts["run_id"], "creditx.promotion_reason", decision.reason[:5000])
    log_json(
        client,
        facts["run_id"],
        {
            "promote": decision.promote,
            "reason": decision.reason,
            "candidate": asdict(decision.candidate),
            "champion": None if decision.champion is None else asdict(decision.champion),
        },
        "promotion/decision.json",
    )
