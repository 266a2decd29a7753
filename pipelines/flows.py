"""The flows: ingest, train, promote, predict, evaluate and replay.

Each flow takes one typed parameters model and only orchestrates its tasks
(:mod:`pipelines.tasks`; the ingest flow and its tasks are in :mod:`pipelines.ingest`,
which imports neither MLflow nor the forecasters). A run that could not do everything
ends in a state that says so: *Failed* with the error (empty telemetry, an unreachable
store, no champion to predict with), or *Partial* (completed, some instances on
fallback models or left out), with the reason in the Prefect log and on the MLflow run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, get_run_logger, unmapped
from prefect.futures import as_completed
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from data.forecasts import HORIZONS
from data.frame import ID_COL
from pipelines import progress
from pipelines.config import quiet_user_errors
from pipelines.errors import BrokenModelError, InvalidParametersError, SnapshotError
from pipelines.gate import PromotionDecision, PromotionGate, Scorecard
from pipelines.ingest import ingest_flow as ingest_flow  # the flows, all in one place
from pipelines.params import (
    EvaluateParams,
    PredictParams,
    PromoteParams,
    ReplayParams,
    TrainParams,
)
from pipelines.scoring import BacktestWindow, backtest_window
from pipelines.snapshot import Snapshot, latest_snapshot
from pipelines.tasks import (
    ShardResult,
    TrainingRecord,
    config_hash,
    find_training,
    forecast_config,
    forecast_horizons,
    load_snapshot,
    load_version,
    log_training,
    open_experiment,
    record_failure,
    split_shards,
    train_shard,
    write_predictions,
)
from pipelines.tracking import TAG_CONFIG, TAG_SNAPSHOT, TAG_WINDOW

if TYPE_CHECKING:
    from pipelines.tasks.replay import ReplayOutcome

quiet_user_errors()


#: The training stage's key in :mod:`pipelines.progress`: instances done of the fleet.
TRAINING = "train"


def _training(done: list[int], sizes: list[int]) -> str:
    # The instances of finished shards; the bar moves with each shard's steps.
    return (
        f"training: {len(done)} of {len(sizes)} shards, "
        f"{sum(done):,} of {sum(sizes):,} instances done"
    )


def _train_params_document(params: TrainParams, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot": str(snapshot.path),
        "candidates": ",".join(params.candidates),
        "shard_size": params.shard_size,
        "backtest_days": params.backtest_days,
        "calibration_hours": params.calibration_hours,
        "seed": params.seed,
        "instances": snapshot.instances,
        "hours": int((snapshot.end - snapshot.start) / pd.Timedelta(hours=1)) + 1,
    }


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced: its record, the gate's decision and the snapshot."""

    record: TrainingRecord
    decision: PromotionDecision | None
    snapshot: Snapshot


# Shards are CPU-bound: more threads than cores only add peak memory.
_SHARD_WORKERS = os.cpu_count() or 1


def _thread_pool() -> Any:
    return ThreadPoolTaskRunner(max_workers=_SHARD_WORKERS)


@flow(name="train", task_runner=_thread_pool())
def train_flow(params: TrainParams) -> State:
    """Back-test and fit every instance for every horizon; log and register one model.

    A rerun on the same snapshot and configuration finds the finished run and returns
    it unchanged. With ``params.promote`` the new version goes through the gate.
    """
    logger = get_run_logger()
    started_ms = int(time.time() * 1000)  # the run's true start, for its MLflow duration
    experiment_id = open_experiment(params.tracking)
    if params.ingest is not None:
        path = ingest_flow(params.ingest).path
    else:
        assert params.snapshot is not None  # the params model requires one of the two
        path = params.snapshot
    snapshot, frame = load_snapshot(path)
    window = backtest_window(snapshot, params.backtest_days)
    document = _train_params_document(params, snapshot)
    tags = {
        TAG_SNAPSHOT: snapshot.digest,
        TAG_CONFIG: config_hash({k: v for k, v in document.items() if k != "snapshot"}),
        TAG_WINDOW: window.key,
    }
    record = find_training(params.tracking, experiment_id, tags)
    if record is not None:
        logger.info("snapshot already trained with this configuration: run %s", record.run_id)
    else:
        results = _train_shards(params, frame, window)
        if not any(r.fleet is not None for r in results):
            reason = f"no instance of {snapshot.path} could be fitted"
            record_failure(params.tracking, experiment_id, "train", tags, reason)
            raise SnapshotError(str(snapshot.path), reason)
        progress.begin("log", "logging the run and registering the model in MLflow", total=1)
        record = log_training(
            params.tracking, experiment_id, document, tags, results, snapshot.instances, started_ms
        )
        progress.advance("log")
        logger.info(
            "run %s registered %s v%s: MASE %.4f (hour %.4f, day %.4f, week %.4f)",
            record.run_id,
            params.tracking.model_name,
            record.version,
            record.metrics["mase"],
            record.metrics.get("mase_hour", float("nan")),
            record.metrics.get("mase_day", float("nan")),
            record.metrics.get("mase_week", float("nan")),
        )
    decision = None
    if params.promote:
        decision = promote_flow(
            PromoteParams(tracking=params.tracking, version=record.version, margin=params.margin)
        )
    outcome = TrainOutcome(record, decision, snapshot)
    if record.warning:
        logger.warning("%s", record.warning)
    if record.status == "partial":
        logger.warning("partial training: %s", record.reason)
        return Completed(name="Partial", message=record.reason, data=outcome)
    return Completed(message=f"registered v{record.version}", data=outcome)


def _train_shards(
    params: TrainParams, frame: pd.DataFrame, window: BacktestWindow
) -> list[ShardResult]:
    # The shards train in parallel; the progress bar counts the instances done.
    ids = sorted(frame[ID_COL].astype("string").unique())
    sample = list(
        pd.Series(ids).sample(min(params.sample_instances, len(ids)), random_state=params.seed)
    )
    config = forecast_config(params.candidates, params.seed, params.calibration_hours)
    shards = split_shards(frame, params.shard_size)
    sizes = [int(shard[ID_COL].nunique()) for shard in shards]
    progress.begin(TRAINING, _training([], sizes), total=len(ids))
    futures = train_shard.map(
        shards,
        unmapped(config),
        unmapped(window),
        unmapped(sample),
        progress_key=unmapped(TRAINING),
    )
    shard_of = {future.task_run_id: k for k, future in enumerate(futures)}
    done: list[int] = []
    for future in as_completed(futures):
        done.append(sizes[shard_of[future.task_run_id]])
        progress.describe(TRAINING, _training(done, sizes))
    return [part for future in futures for part in future.result()]


def _scorecard(version: str, window: str, metrics: dict[str, float]) -> Scorecard:
    return Scorecard(
        version=version,
        window=window,
        mase=metrics.get("mase", float("nan")),
        pinball90=metrics.get("pinball90", float("nan")),
        coverage90=metrics.get("coverage90", float("nan")),
        fallback_share=metrics.get("fallback_share", 0.0),
        seasonal_naive_mase=metrics.get("mase_seasonal_naive", float("nan")),
    )


@flow(name="promote")
def promote_flow(params: PromoteParams) -> PromotionDecision:
    """Compare a candidate version with the champion on one window; promote if better.

    The champion's configuration is back-tested on the candidate's window unless its
    own training used that very window. A candidate that fails to load or forecast is
    never promoted.
    """
    from pipelines.tasks import candidate_facts, champion_scores, set_champion

    logger = get_run_logger()
    progress.begin("promote", "scoring the candidate against the champion", total=3)
    experiment_id = open_experiment(params.tracking)
    facts = candidate_facts(params.tracking, params.version)
    candidate = _scorecard(facts["version"], facts["window"], facts["metrics"])
    gate = PromotionGate(margin=params.margin, max_fallback_share=params.max_fallback_share)
    progress.advance("promote")
    decision = _refusal(gate, candidate, params)
    progress.advance("promote")
    if decision is None:
        champion_facts = champion_scores(params.tracking, experiment_id, facts)
        champion = (
            None
            if champion_facts is None
            else _scorecard(champion_facts["version"], facts["window"], champion_facts["metrics"])
        )
        if champion is not None and champion.version == candidate.version:
            decision = PromotionDecision(
                False, f"v{candidate.version} is already the champion", candidate, champion
            )
        else:
            decision = gate.decide(candidate, champion)
    set_champion(params.tracking, facts, decision)
    progress.advance("promote")
    (logger.info if decision.promote else logger.warning)("promotion: %s", decision.reason)
    return decision


def _refusal(
    gate: PromotionGate, candidate: Scorecard, params: PromoteParams
) -> PromotionDecision | None:
    # A broken candidate, or one worse than seasonal naive, is refused before the
    # champion is scored at all.
    from pipelines.tasks import smoke_test

    refused = gate.refusal(candidate)
    if refused is not None:
        return PromotionDecision(False, refused, candidate, None)
    try:
        smoke_test(params.tracking, candidate.version)
    except BrokenModelError as exc:
        return PromotionDecision(False, str(exc), candidate, None)
    return None


@flow(name="predict")
def predict_flow(params: PredictParams, generated_at: datetime | None = None) -> Path:
    """Forecast every instance for every horizon with the champion; write them for the API.

    Raises
    ------
    ModelNotFoundError
        If no version carries the alias yet: train and promote first.
    """
    logger = get_run_logger()
    # Loading the champion, each horizon, writing: one unit each.
    progress.begin("predict", "forecasting every instance", total=len(HORIZONS) + 2)
    version, model = load_version(params.tracking, params.alias)
    path = params.snapshot
    if path is None and params.snapshots_dir is not None:
        path = latest_snapshot(params.snapshots_dir)
    frame = None
    digest = model.metadata.get(TAG_SNAPSHOT, "")
    if path is not None:
        snapshot, frame = load_snapshot(path)
        frame = frame.loc[frame[ID_COL].isin(model.unique_ids)]
        digest = snapshot.digest
    progress.advance("predict")
    forecasts = forecast_horizons(model, frame, progress_key="predict")
    stamp = generated_at or datetime.now(UTC)  # the flow's edge: the only clock read
    target = write_predictions(
        forecasts, params.output_dir, params.tracking.model_name, version, stamp, digest
    )
    progress.advance("predict")
    logger.info("wrote %d forecasts of v%s to %s", len(forecasts), version, target)
    return target


@flow(name="evaluate")
def evaluate_flow(params: EvaluateParams) -> dict[str, float]:
    """Score the served champion, as fitted, on the newest telemetry's last days.

    The champion forecasts each origin of the window from the observations before it,
    without refitting; the figures are logged as an ``evaluate`` run.
    """
    from pipelines.tasks import log_evaluation, score_served

    logger = get_run_logger()
    progress.begin("evaluate", "scoring the champion on the newest telemetry", total=3)
    experiment_id = open_experiment(params.tracking)
    version, model = load_version(params.tracking, params.alias)
    path = params.snapshot or latest_snapshot(params.snapshots_dir)
    if path is None:
        raise SnapshotError(str(params.snapshots_dir), "no snapshot to evaluate on: ingest first")
    snapshot, frame = load_snapshot(path)
    window = backtest_window(snapshot, params.backtest_days)
    progress.advance("evaluate")
    metrics = score_served(model, frame, window)
    progress.advance("evaluate")
    log_evaluation(params.tracking, experiment_id, version, snapshot.digest, window.key, metrics)
    progress.advance("evaluate")
    logger.info("champion v%s on %s: MASE %.4f", version, window.key, metrics["mase"])
    return metrics


@flow(name="replay")
def replay_flow(params: ReplayParams) -> ReplayOutcome:
    """Replay the policies on a trace; write the figures and report; log them as a run.

    The MLflow run starts before the replay and ends after it, so its duration is the
    replay's; a replay that fails leaves the run *failed* with the reason.
    """
    from pipelines.tasks.replay import (
        ReplayOutcome,
        fail_replay_run,
        log_replay,
        open_replay_run,
        replay_policies,
        replay_trace,
        write_replay,
    )

    logger = get_run_logger()
    run_id = open_replay_run(params)
    try:
        trace = replay_trace(params)
        run = replay_policies(trace, params)
        replay_json, report, document = write_replay(run, trace, params.out_dir)
    except Exception as exc:
        fail_replay_run(params.tracking, run_id, f"{type(exc).__name__}: {exc}")
        raise
    log_replay(params.tracking, run_id, document, (replay_json, report))
    closed = document["targets"].get("market_value_gap_closed")
    shown = "n/a" if closed is None else f"{100 * closed:.1f} %"
    logger.info("replayed %s; market closes %s of the value gap", trace.source, shown)
    return ReplayOutcome(replay_json, report, run_id, document)


def task_runner(
    runner: str = "default", address: str | None = None, workers: int = 2, processes: bool = True
) -> Any:
    """Return the task runner a flow runs its tasks on.

    Parameters
    ----------
    runner
        ``"default"`` (Prefect's thread pool, one thread per core) or ``"dask"``.
    address
        Scheduler address of a running Dask cluster; a LocalCluster by default.
    workers, processes
        Size and kind of the LocalCluster's workers.
    """
    if runner == "default":
        return _thread_pool()
    if runner != "dask":
        raise InvalidParametersError("runner", f"expected 'default' or 'dask', got {runner!r}")
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": processes}
    )
