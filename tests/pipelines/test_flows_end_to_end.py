"""The flows end to end on a 20-instance, 21-day synthetic fleet.

A real Prefect test server, real MLflow SQLite stores with local artifacts: the
module trains one champion and the tests read what it left behind, then train
challengers against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines import progress
from pipelines.errors import EmptySnapshotError, ModelNotFoundError, StoreUnavailableError
from pipelines.fleet_model import FleetModel
from pipelines.flows import (
    TrainOutcome,
    evaluate_flow,
    ingest_flow,
    predict_flow,
    task_runner,
    train_flow,
)
from pipelines.params import (
    CALIBRATION_HOURS,
    DEFAULT_CANDIDATES,
    EvaluateParams,
    IngestParams,
    PredictParams,
    SyntheticFleet,
    TrackingParams,
    TrainParams,
)
from pipelines.snapshot import Snapshot, write_snapshot

pytestmark = pytest.mark.usefixtures("prefect_harness")

FLEET = SyntheticFleet(instances=20, days=21, seed=3, freq="30min")
# Tests about the flow rather than the forecasters train on the quick baselines.
BASELINES = ("naive", "seasonal_naive")


class ProgressRecord:
    """A hand-written progress listener: what each stage was told, in order."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.descriptions: dict[str, list[str]] = {}

    def begin(self, key: str, description: str, total: float) -> None:
        self.totals[key] = total
        self.done[key] = 0.0
        self.descriptions[key] = [description]

    def advance(self, key: str, units: float) -> None:
        self.done[key] += units

    def describe(self, key: str, description: str) -> None:
        self.descriptions[key].append(description)


@dataclass(frozen=True)
class Trained:
    tracking: TrackingParams
    home: Path
    snapshot: Snapshot
    outcome: TrainOutcome
    state_name: str
    flow_run_id: str
    progress: ProgressRecord


def _tracking(root: Path, name: str = "fleet-model") -> TrackingParams:
    return TrackingParams(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=(root / "mlartifacts").as_uri(),
        model_name=name,
        fleet="e2e",
    )


def _client(tracking: TrackingParams) -> MlflowClient:
    # The flows set the registry URI too; a test's client must not inherit another store's.
    mlflow.set_tracking_uri(tracking.tracking_uri)
    mlflow.set_registry_uri(tracking.tracking_uri)
    return MlflowClient(tracking_uri=tracking.tracking_uri, registry_uri=tracking.tracking_uri)


def _train(tracking: TrackingParams, snapshot: Path, **kwargs: object) -> tuple[str, TrainOutcome]:
    name, outcome, _ = _train_run(tracking, snapshot, **kwargs)
    return name, outcome


def _train_run(
    tracking: TrackingParams, snapshot: Path, **kwargs: object
) -> tuple[str, TrainOutcome, str]:
    params = TrainParams(tracking=tracking, snapshot=snapshot, shard_size=8, **kwargs)
    state = train_flow(params, return_state=True)
    return str(state.name), state.result(), str(state.state_details.flow_run_id)


@pytest.fixture(scope="module")
def trained(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    home = tmp_path_factory.mktemp("home")
    tracking = _tracking(home)
    record = ProgressRecord()
    with progress.listening(record):
        snapshot = ingest_flow(IngestParams(synthetic=FLEET, home=home))
        name, outcome, flow_run_id = _train_run(tracking, snapshot.path)
    return Trained(tracking, home, snapshot, outcome, name, flow_run_id, record)


def test_training_logs_a_run_and_registers_the_champion(trained: Trained) -> None:
    client = _client(trained.tracking)
    record = trained.outcome.record
    assert trained.state_name == "Completed"
    run = client.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    for horizon in ("hour", "day", "week"):
        assert 0 < run.data.metrics[f"mase_{horizon}"] < 5
        assert 0.5 < run.data.metrics[f"coverage90_{horizon}"] <= 1
    assert run.data.params["candidates"] == ",".join(DEFAULT_CANDIDATES)
    assert run.data.params["calibration_hours"] == str(CALIBRATION_HOURS)
    artifacts = {a.path for a in client.list_artifacts(record.run_id, "metrics")}
    assert artifacts == {
        "metrics/instances.parquet",
        "metrics/fallbacks.parquet",
        "metrics/worse_than_naive.parquet",
    }
    plots = {a.path for a in client.list_artifacts(record.run_id, "plots")}
    assert plots == {"plots/forecast_vs_actual.png", "plots/error_distribution.png"}
    table = pd.read_parquet(
        client.download_artifacts(record.run_id, "metrics/instances.parquet", str(trained.home))
    )
    assert len(table) == FLEET.instances
    assert {"mase_hour", "mase_day", "mase_week", "coverage90_week"} <= set(table.columns)
    # Each instance's MASE stands beside naive's and seasonal naive's on the same origins.
    for horizon in ("hour", "day", "week"):
        assert table[f"mase_naive_{horizon}"].gt(0).all()
        assert table[f"mase_seasonal_naive_{horizon}"].gt(0).all()
        worse = int((table[f"mase_{horizon}"] > table[f"mase_naive_{horizon}"]).sum())
        assert run.data.metrics[f"worse_than_naive_{horizon}"] == worse
    assert run.data.metrics["mase"] < run.data.metrics["mase_seasonal_naive"]
    worse_table = pd.read_parquet(
        client.download_artifacts(
            record.run_id, "metrics/worse_than_naive.parquet", str(trained.home)
        )
    )
    assert (worse_table["mase"] > worse_table["mase_naive"]).all()
    if len(worse_table):
        assert record.warning.startswith(f"{worse_table['unique_id'].nunique()} of 20 instance")
        assert run.data.tags["creditx.warning"] == record.warning
    else:
        assert record.warning == ""
    # One model version for the whole fleet, promoted because there was no champion.
    versions = client.search_model_versions("name = 'fleet-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert trained.outcome.decision is not None
    assert trained.outcome.decision.promote
    champion = client.get_model_version_by_alias("fleet-model", "champion")
    assert str(champion.version) == "1"
    model = mlflow.pyfunc.load_model("models:/fleet-model@champion")
    ids = [f"vm-{i:06d}" for i in range(FLEET.instances)]
    config = pd.DataFrame({"unique_id": ids, "h": 24, "quantiles": [[0.5, 0.9]] * len(ids)})
    forecast = model.predict(config)
    assert forecast.groupby("unique_id").size().eq(24).all()
    assert len(forecast) == 24 * FLEET.instances
    assert np.isfinite(forecast[["yhat", "q50", "q90"]].to_numpy()).all()


def test_the_training_runs_duration_covers_the_whole_training(trained: Trained) -> None:
    # The fitting happens in the flow's train_shard tasks, before anything is logged:
    # the MLflow run must span them, not only the seconds its logging took.
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as prefect:
        task_runs = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[trained.flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )
    shards = [t for t in task_runs if t.task_key.startswith("train_shard")]
    assert shards, [t.name for t in task_runs]
    assert all(t.start_time is not None and t.end_time is not None for t in shards)
    first = min(t.start_time for t in shards if t.start_time is not None)
    last = max(t.end_time for t in shards if t.end_time is not None)
    run = _client(trained.tracking).get_run(trained.outcome.record.run_id)
    assert run.info.end_time is not None
    assert run.info.start_time <= first.timestamp() * 1000
    assert run.info.end_time >= last.timestamp() * 1000
    assert run.info.end_time - run.info.start_time >= (last - first).total_seconds() * 1000


def test_the_flows_report_their_progress_to_the_command(trained: Trained) -> None:
    # 20 instances in shards of 8: the bar counts the instances, the stage the shards.
    seen = trained.progress
    assert seen.totals["train"] == FLEET.instances
    assert seen.done["train"] == pytest.approx(FLEET.instances)
    assert len(seen.descriptions["train"]) == 1 + 3  # opened, then once per shard done
    assert "3 of 3 shards, 20 of 20 instances done" in seen.descriptions["train"][-1]
    for stage in ("ingest", "log", "promote"):
        assert seen.done[stage] == seen.totals[stage] > 0, stage


def test_the_registered_model_forecasts_with_the_default_candidates(trained: Trained) -> None:
    _client(trained.tracking)
    pyfunc = mlflow.pyfunc.load_model("models:/fleet-model@champion")
    fleet = pyfunc.unwrap_python_model()
    assert isinstance(fleet, FleetModel)
    for shard in fleet.shards:
        assert shard.config.candidates == DEFAULT_CANDIDATES
        assert [model.name for model in shard.models_] == list(DEFAULT_CANDIDATES)
    ids = fleet.unique_ids
    config = pd.DataFrame({"unique_id": ids, "h": 168, "quantiles": [[0.5, 0.9]] * len(ids)})
    in_force = set(pyfunc.predict(config)["model"])
    assert in_force <= set(DEFAULT_CANDIDATES)
    # The learned forecasters win somewhere: the model is not the baselines in disguise.
    assert in_force & {"lightgbm", "lightgbm_recent"}


def test_a_rerun_on_the_same_snapshot_changes_nothing(trained: Trained) -> None:
    client = _client(trained.tracking)
    again = ingest_flow(IngestParams(synthetic=FLEET, home=trained.home))
    assert again.path == trained.snapshot.path
    versions_before = len(client.search_model_versions("name = 'fleet-model'"))
    runs_before = len(
        client.search_runs([client.get_experiment_by_name("creditx-e2e").experiment_id])
    )
    name, outcome = _train(trained.tracking, again.path)
    assert outcome.record.reused
    assert outcome.record.run_id == trained.outcome.record.run_id
    assert outcome.record.version == trained.outcome.record.version
    assert len(client.search_model_versions("name = 'fleet-model'")) == versions_before
    experiment = client.get_experiment_by_name("creditx-e2e")
    assert len(client.search_runs([experiment.experiment_id])) == runs_before
    assert name == "Completed"


def test_the_gate_keeps_a_worse_model_out(trained: Trained) -> None:
    client = _client(trained.tracking)
    name, outcome = _train(trained.tracking, trained.snapshot.path, candidates=("seasonal_naive",))
    assert name == "Completed"
    decision = outcome.decision
    assert decision is not None
    assert not decision.promote
    assert decision.champion is not None
    assert decision.champion.version == "1"
    assert decision.candidate.mase > decision.champion.mase
    assert "champion v1 kept" in decision.reason
    assert str(client.get_model_version_by_alias("fleet-model", "champion").version) == "1"
    version = client.get_model_version("fleet-model", outcome.record.version)
    assert version.tags["creditx.promotion"] == "refused"
    run = client.get_run(outcome.record.run_id)
    assert run.data.tags["creditx.promotion_reason"] == decision.reason


def test_the_gate_refuses_a_version_worse_than_seasonal_naive(tmp_path: Path) -> None:
    # Strong daily cycles: the last value is a poor forecast of the next day. Naive
    # trained on its own in a fresh store, with no champion to beat, is still refused.
    rng = np.random.default_rng(4)
    hours = pd.date_range("2024-01-01", periods=14 * 24, freq="h", tz="UTC")
    cycle = 40 + 30 * np.sin(2 * np.pi * np.arange(len(hours)) / 24)
    frame = pd.concat(
        pd.DataFrame(
            {"unique_id": f"vm-{i}", "ds": hours, "y": cycle + rng.normal(0, 2, len(hours))}
        )
        for i in range(6)
    )
    snapshot = write_snapshot(frame, tmp_path / "snapshots")
    tracking = _tracking(tmp_path, name="naive-fleet")
    name, outcome = _train(tracking, snapshot.path, candidates=("naive",))
    assert name == "Completed"
    metrics = outcome.record.metrics
    assert metrics["mase"] == pytest.approx(metrics["mase_naive"])
    assert metrics["mase"] > metrics["mase_seasonal_naive"]
    decision = outcome.decision
    assert decision is not None
    assert not decision.promote
    assert decision.champion is None
    assert "worse than seasonal naive" in decision.reason
    client = _client(tracking)
    assert client.get_registered_model("naive-fleet").aliases == {}
    version = client.get_model_version("naive-fleet", outcome.record.version)
    assert version.tags["creditx.promotion"] == "refused"


def test_a_broken_candidate_never_replaces_the_champion(trained: Trained, tmp_path: Path) -> None:
    client = _client(trained.tracking)
    frame = pd.read_parquet(trained.snapshot.path)
    broken_ids = [f"vm-{i:06d}" for i in range(15)]
    frame.loc[frame["unique_id"].isin(broken_ids), "y"] = np.nan
    snapshot = write_snapshot(frame, tmp_path)
    name, outcome = _train(trained.tracking, snapshot.path, candidates=BASELINES)
    assert name == "Partial"
    assert outcome.record.metrics["failed_instances"] == 15
    run = client.get_run(outcome.record.run_id)
    assert run.data.tags["creditx.status"] == "partial"
    assert run.data.tags["creditx.reason"].startswith("15 instance(s) could not be fitted")
    fallbacks = pd.read_parquet(
        client.download_artifacts(outcome.record.run_id, "metrics/fallbacks.parquet", str(tmp_path))
    )
    assert sorted(fallbacks["unique_id"]) == broken_ids
    decision = outcome.decision
    assert decision is not None
    assert not decision.promote
    assert "is broken" in decision.reason
    assert "75% of instances" in decision.reason
    assert str(client.get_model_version_by_alias("fleet-model", "champion").version) == "1"


def test_predict_writes_every_instance_and_horizon_for_the_api(trained: Trained) -> None:
    out_dir = trained.home / "predictions"
    stamp = datetime(2024, 1, 22, 0, 5, tzinfo=UTC)
    params = PredictParams(
        tracking=trained.tracking, output_dir=out_dir, snapshot=trained.snapshot.path
    )
    seen = ProgressRecord()
    with progress.listening(seen):
        path = predict_flow(params, generated_at=stamp)
    assert seen.done["predict"] == seen.totals["predict"] == 5  # load, 3 horizons, write
    forecasts = pd.read_parquet(path)
    counts = forecasts.groupby("horizon").size().to_dict()
    assert counts == {"hour": 20, "day": 20 * 24, "week": 20 * 168}
    assert set(forecasts["model_version"]) == {"1"}
    assert set(forecasts["generated_at"]) == {pd.Timestamp(stamp)}
    assert forecasts["ds"].min() == trained.snapshot.end + pd.Timedelta(hours=1)
    assert (forecasts["q50"] <= forecasts["q90"]).all()
    manifest = (out_dir / "manifest.json").read_text()
    assert '"model_version": "1"' in manifest
    assert trained.snapshot.digest in manifest


def test_evaluate_scores_the_served_champion(trained: Trained) -> None:
    client = _client(trained.tracking)
    params = EvaluateParams(
        tracking=trained.tracking, snapshot=trained.snapshot.path, backtest_days=3
    )
    metrics = evaluate_flow(params)
    assert 0 < metrics["mase_day"] < 5
    experiment = client.get_experiment_by_name("creditx-e2e")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`creditx.kind` = 'evaluate'"
    )
    assert len(runs) == 1
    assert runs[0].data.metrics["mase_day"] == pytest.approx(metrics["mase_day"])


def test_predict_without_a_champion_fails_and_says_why(trained: Trained, tmp_path: Path) -> None:
    # The same store, a model name nothing was ever registered under.
    tracking = trained.tracking.model_copy(update={"model_name": "never-trained"})
    params = PredictParams(tracking=tracking, output_dir=tmp_path / "predictions")
    state = predict_flow(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(
        ModelNotFoundError, match="no registered model version never-trained@champion"
    ):
        state.result()
    assert not (tmp_path / "predictions").exists()


def test_an_unreachable_store_fails_the_run_before_training(
    fleet_snapshot: Snapshot, tmp_path: Path
) -> None:
    tracking = TrackingParams(
        tracking_uri="postgresql+psycopg://127.0.0.1:1/mlflow",
        artifact_root=tmp_path.as_uri(),
        model_name="fleet-model",
    )
    state = train_flow(
        TrainParams(tracking=tracking, snapshot=fleet_snapshot.path), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1"):
        state.result()


def test_empty_telemetry_makes_no_snapshot(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("unique_id,ds,y\n")
    state = ingest_flow(IngestParams(source=empty, home=tmp_path), return_state=True)
    assert state.is_failed()
    with pytest.raises(EmptySnapshotError, match="holds no rows"):
        state.result()
    assert not (tmp_path / "snapshots").exists()


def test_entirely_rejected_telemetry_makes_no_snapshot(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(
        "unique_id,ds,y\n"
        "a,2024-01-01T00:00:00Z,150\na,2024-01-01T00:05:00Z,160\n"
        "b,2024-01-01T00:00:00Z,-5\nb,2024-01-01T00:05:00Z,-5\n"
    )
    params = IngestParams(source=source, home=tmp_path, policy="strict")
    state = ingest_flow(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(
        EmptySnapshotError, match=r"validation rejected every instance \(2 instances, 4 rows\)"
    ):
        state.result()
    assert not (tmp_path / "snapshots").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)  # two trainings and a cluster of fresh interpreters
def test_train_on_a_multi_process_dask_cluster_registers_the_default_runners_champion(
    tmp_path: Path,
) -> None:
    # A distributed.LocalCluster with processes=True: the scheduler and both workers run
    # in processes of their own, so shards, configs and fitted models cross process
    # boundaries by pickling, as on a user's cluster. A small fleet in three shards: what
    # is tested is the crossing, not the fitting.
    from data.resample import to_hourly
    from data.synthetic import generate_fleet
    from pipelines.snapshot import write_snapshot

    n = 6
    snapshot = write_snapshot(
        to_hourly(generate_fleet(n, 21, seed=7, attributes=False)), tmp_path / "snapshots"
    )
    candidates = ("naive", "seasonal_naive", "linear")
    champions = {}
    for runner in ("default", "dask"):
        tracking = _tracking(tmp_path / runner, name=f"{runner}-fleet")
        params = TrainParams(
            tracking=tracking, snapshot=snapshot.path, shard_size=2, candidates=candidates
        )
        flow = train_flow.with_options(task_runner=task_runner(runner, workers=2, processes=True))
        state = flow(params, return_state=True)
        assert state.is_completed()
        outcome: TrainOutcome = state.result()
        client = _client(tracking)
        assert str(client.get_model_version_by_alias(f"{runner}-fleet", "champion").version) == "1"
        run = client.get_run(outcome.record.run_id)
        assert run.data.metrics["instances"] == n
        assert run.data.params["shard_size"] == "2"
        model = mlflow.pyfunc.load_model(f"models:/{runner}-fleet@champion")
        ids = model.unwrap_python_model().unique_ids
        config = pd.DataFrame({"unique_id": ids, "h": 168, "quantiles": [[0.1, 0.5, 0.9]] * n})
        # Shards may finish in any order: compare the forecasts in one order.
        forecast = model.predict(config).sort_values(["unique_id", "ds"], ignore_index=True)
        champions[runner] = (outcome.record.metrics, forecast)
    (default_metrics, default_forecast), (dask_metrics, dask_forecast) = champions.values()
    assert default_metrics["mase"] == pytest.approx(dask_metrics["mase"], rel=1e-9)
    pd.testing.assert_frame_equal(default_forecast, dask_forecast)
