"""The replay is a flow of the pipelines: a real Prefect flow run and a real MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from data.synthetic import generate_fleet
from pipelines.errors import PipelineError
from pipelines.params import ReplayParams, SyntheticFleet, TrackingParams
from pipelines.replay import ReplayError
from pipelines.tasks.replay import experiment_name, metric_name, replay_metrics

POLICIES = ("static", "pool+swap", "market", "optimum")


def _tracking(root: Path) -> TrackingParams:
    return TrackingParams(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=(root / "mlartifacts").as_uri(),
        fleet="replayed",
    )


def test_metric_names_are_mlflow_safe_and_distinct() -> None:
    names = {metric_name(p, "throttled_share") for p in ("pool", "pool+swap", "pool-swap")}
    assert len(names) == 3
    assert metric_name("pool+swap", "throttled_share") == "pool-plus-swap/throttled_share"


def test_replay_metrics_keep_finite_numbers_only() -> None:
    document = {
        "policies": {"market": {"a": 1, "b": float("nan"), "c": True, "d": "x", "e": 2.5}},
        "targets": {"t": 0.5, "u": None},
    }
    assert replay_metrics(document) == {"market/a": 1.0, "market/e": 2.5, "target/t": 0.5}


def test_replay_flow_writes_the_figures_and_logs_one_finished_run(
    prefect_harness: None, tmp_path: Path
) -> None:
    from pipelines.flows import replay_flow

    trace = tmp_path / "trace.parquet"
    generate_fleet(6, 3, seed=5, attributes=False).to_parquet(trace)
    tracking = _tracking(tmp_path)
    params = ReplayParams(
        source=trace, policies=POLICIES, out_dir=tmp_path / "out", tracking=tracking
    )
    outcome = replay_flow(params)

    document = json.loads(outcome.replay_json.read_text())
    assert list(document["policies"]) == list(POLICIES)
    assert outcome.report.read_text().lstrip().lower().startswith("<!doctype html")
    client = MlflowClient(tracking.tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(tracking))
    assert experiment is not None
    assert experiment.name == "creditx-replayed-replay"
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == experiment.experiment_id
    assert run.data.params["policies"] == ",".join(POLICIES)
    assert run.data.params["instances"] == "6"
    market = document["policies"]["market"]
    assert run.data.metrics["market/throttled_share"] == pytest.approx(market["throttled_share"])
    assert run.data.metrics["pool-plus-swap/conservation_violations"] == 0
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert artifacts == {"replay.json", "report.html"}
    # the run spans the replay, not only the logging at its end
    assert run.info.end_time - run.info.start_time >= 1


def test_a_failed_replay_leaves_a_failed_run_with_its_reason(
    prefect_harness: None, tmp_path: Path
) -> None:
    from pipelines.flows import replay_flow

    tracking = _tracking(tmp_path)
    params = ReplayParams(
        synthetic=SyntheticFleet(instances=4, days=2, seed=1),
        policies=("no-such-policy",),
        out_dir=tmp_path / "out",
        tracking=tracking,
    )
    with pytest.raises((ReplayError, PipelineError), match="no-such-policy"):
        replay_flow(params)
    client = MlflowClient(tracking.tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(tracking))
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "no-such-policy" in run.data.tags["creditx.reason"]
    assert not (tmp_path / "out" / "replay.json").exists()


def test_replay_params_take_exactly_one_trace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ReplayParams(tracking=_tracking(tmp_path))
