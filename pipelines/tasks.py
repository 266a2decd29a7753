"""The tasks the flows orchestrate: small and typed; only the I/O ones retry.

Compute tasks (:func:`train_shard`, :func:`forecast_horizons`) are pure functions of
their inputs; I/O tasks read or write a snapshot, the MLflow store or the
predictions directory and retry on transient failures. No task caches its inputs:
hashing large telemetry frames would cost more than the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger

from data.forecasts import HORIZONS, QUANTILES, quantile_column
from data.frame import ID_COL
from models import FleetForecaster, ForecastConfig, ForecastError
from pipelines import progress
from pipelines.decorators import pipeline_task
from pipelines.errors import BrokenModelError, ModelNotFoundError
from pipelines.fleet_model import FleetModel, input_example
from pipelines.params import CALIBRATION_HOURS, TrackingParams
from pipelines.scoring import (
    BASELINE_METRICS,
    METRICS,
    BacktestWindow,
    aggregate_metrics,
    baseline_scores,
    score_horizons,
    window_forecasts,
    worse_than_naive,
)
from pipelines.snapshot import Snapshot, read_snapshot
from pipelines.tracking import (
    TAG_CONFIG,
    TAG_KIND,
    TAG_REASON,
    TAG_SNAPSHOT,
    TAG_STATUS,
    TAG_WARNING,
    TAG_WINDOW,
    Stopwatch,
    ensure_experiment,
    log_json,
    log_model_version,
    log_plots,
    log_table,
)

#: Forecaster every instance can fall back to when its shard's models fail on it.
FALLBACK_CANDIDATES: tuple[str, ...] = ("naive",)


# -- snapshots -------------------------------------------------------------------


@pipeline_task(io=True)
def load_snapshot(path: Path) -> tuple[Snapshot, pd.DataFrame]:
    """Read a snapshot and check its content against its name."""
    return read_snapshot(path)


# -- tracking ----------------------------------------------------------------------


@pipeline_task(io=True)
def open_experiment(tracking: TrackingParams) -> str:
    """Check the MLflow store answers and return the fleet's experiment id."""
    return ensure_experiment(_client(tracking), tracking)


def _client(tracking: TrackingParams) -> Any:
    return tracking.client()


def config_hash(document: dict[str, Any]) -> str:
    """Return a short stable hash of a JSON-able training configuration."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


@pipeline_task(io=True)
def find_training(
    tracking: TrackingParams, experiment_id: str, tags: dict[str, str]
) -> TrainingRecord | None:
    """Return the record of a finished training run with these tags, if one exists."""
    from pipelines.tracking import find_finished_run

    client = _client(tracking)
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

    client = _client(tracking)
    run = client.create_run(experiment_id, tags={TAG_KIND: kind, **tags}, run_name=f"{kind}-failed")
    fail_run(client, run.info.run_id, reason)
    return str(run.info.run_id)


# -- training ----------------------------------------------------------------------


@dataclass
class ShardResult:
    """What training one shard of instances produced."""

    fleet: FleetForecaster | None
    metrics: pd.DataFrame
    sample: pd.DataFrame
    fallbacks: pd.DataFrame
    failed: list[str] = field(default_factory=list)


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


_FALLBACK_COLUMNS = [ID_COL, "model", "reason"]
# What a forecaster raises on data it cannot model; anything else is a bug and fails the run.
_MODEL_ERRORS = (ForecastError, ValueError, FloatingPointError, np.linalg.LinAlgError)


def forecast_config(
    candidates: tuple[str, ...], seed: int, calibration_hours: int
) -> ForecastConfig:
    """Return the fleet forecaster's configuration of a training run."""
    return ForecastConfig(
        candidates=candidates,
        seed=seed,
        quantiles=QUANTILES,
        calibration_hours=calibration_hours,
    )


@pipeline_task()
def split_shards(frame: pd.DataFrame, shard_size: int) -> list[pd.DataFrame]:
    """Split the fleet into shards of at most ``shard_size`` instances."""
    ids = pd.Index(frame[ID_COL].astype("string").unique()).sort_values()
    codes = pd.Index(ids).get_indexer(frame[ID_COL].astype("string"))
    shard_of_row = codes // shard_size
    return [
        frame.loc[shard_of_row == shard].reset_index(drop=True)
        for shard in range((len(ids) + shard_size - 1) // shard_size)
    ]


@pipeline_task()
def train_shard(
    shard: pd.DataFrame,
    config: ForecastConfig,
    window: BacktestWindow,
    sample: list[str],
    fit_final: bool = True,
    progress_key: str | None = None,
) -> list[ShardResult]:
    """Back-test and fit the fleet forecaster on one shard, falling back per instance.

    The shard is back-tested on the window (refitted on the data before it) and then
    fitted on all of it. If the configured forecasters fail on the shard, each
    instance is tried alone: those the configured forecasters fit stay on them, the
    others use :data:`FALLBACK_CANDIDATES`, and instances no forecaster can fit are
    left out and listed in ``failed``. With ``progress_key``, the shard's instances
    are counted done in the stage of that key as its steps finish
    (:mod:`pipelines.progress`).
    """
    instances = int(shard[ID_COL].nunique())
    steps = 4 if fit_final else 3
    counted = [0.0]

    def step_done() -> None:
        if progress_key is not None:
            counted[0] += instances / steps
            progress.advance(progress_key, instances / steps)

    try:
        return [_fit_and_score(shard, config, window, sample, fit_final, step_done)]
    except _MODEL_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}"
        get_run_logger().warning("shard of %d instances failed: %s", len(shard), reason)
    try:
        return _fit_apart(shard, config, window, sample, fit_final, reason)
    finally:
        if progress_key is not None:
            progress.advance(progress_key, instances - counted[0])


def _fit_apart(
    shard: pd.DataFrame,
    config: ForecastConfig,
    window: BacktestWindow,
    sample: list[str],
    fit_final: bool,
    reason: str,
) -> list[ShardResult]:
    # Each instance of a shard the configured forecasters failed on, tried alone.
    fallback = config.model_copy(update={"candidates": FALLBACK_CANDIDATES})
    groups: dict[str, list[str]] = {"config": [], "fallback": [], "failed": []}
    for unique_id, rows in shard.groupby(ID_COL, observed=True, sort=True):
        for name, cfg in (("config", config), ("fallback", fallback)):
            try:
                _fit_and_score(rows, cfg, window, [], fit_final=False)
            except _MODEL_ERRORS:
                continue
            groups[name].append(str(unique_id))
            break
        else:
            groups["failed"].append(str(unique_id))
    results = []
    ids = shard[ID_COL].astype("string")
    for name, cfg in (("config", config), ("fallback", fallback)):
        if groups[name]:
            part = _fit_and_score(shard.loc[ids.isin(groups[name])], cfg, window, sample, fit_final)
            if name == "fallback":
                extra = pd.DataFrame({ID_COL: groups[name], "model": FALLBACK_CANDIDATES[0]})
                part.fallbacks = pd.concat(
                    [part.fallbacks, extra.assign(reason=reason)], ignore_index=True
                )
            results.append(part)
    failed = groups["failed"]
    results.append(
        ShardResult(
            None,
            pd.DataFrame(),
            pd.DataFrame(),
            pd.DataFrame({ID_COL: failed, "model": "", "reason": reason}),
            failed,
        )
    )
    return results


def _fit_and_score(
    shard: pd.DataFrame,
    config: ForecastConfig,
    window: BacktestWindow,
    sample: list[str],
    fit_final: bool,
    step_done: Callable[[], None] = lambda: None,
) -> ShardResult:
    # One fit on the data before the window serves every horizon's origins: the
    # forecasters are refitted once per window, as FleetForecaster.backtest does.
    from data.frame import TIME_COL

    before = FleetForecaster(config).fit(shard.loc[shard[TIME_COL] < window.start])
    step_done()
    fitted = pd.Index(before.unique_ids_)

    def forecast(h: int, history: pd.DataFrame) -> pd.DataFrame:
        # Instances that start inside the window have no fitted model to forecast with.
        return before.predict(h, QUANTILES, frame=history.loc[history[ID_COL].isin(fitted)])

    backtests = window_forecasts(forecast, shard, window)
    step_done()
    metrics = score_horizons(shard, backtests).merge(
        baseline_scores(shard, window, config.calibration_hours),
        on=[ID_COL, "horizon"],
        how="left",
    )
    step_done()
    week = backtests["week"]
    picked = week.loc[week[ID_COL].astype("string").isin(sample)]
    fleet = None
    if fit_final:
        fleet = FleetForecaster(config).fit(shard)
        step_done()
    fallbacks = pd.DataFrame(columns=_FALLBACK_COLUMNS)
    if fleet is not None and len(fleet.fallbacks_):
        short = fleet.fallbacks_
        fallbacks = pd.DataFrame(
            {
                ID_COL: short[ID_COL].astype("string"),
                "model": short["model"],
                "reason": [
                    f"{h} h of history, {n} needed"
                    for h, n in zip(short["history_hours"], short["needs_hours"], strict=True)
                ],
            }
        )
    return ShardResult(fleet, metrics, picked, fallbacks)


@pipeline_task(io=True, retries=1, retry_delay_seconds=2)
def log_training(
    tracking: TrackingParams,
    experiment_id: str,
    params: dict[str, Any],
    tags: dict[str, str],
    results: list[ShardResult],
    total_instances: int,
    started_ms: int | None = None,
) -> TrainingRecord:
    """Log one training run: params, metrics, tables, plots and the fleet model version.

    ``started_ms`` (epoch milliseconds) is when the training began, so the run's
    duration covers the fitting and not only its logging.
    """
    from mlflow.entities import Metric, Param

    watch = Stopwatch()
    fleets = [r.fleet for r in results if r.fleet is not None]
    metrics = pd.concat([r.metrics for r in results if not r.metrics.empty], ignore_index=True)
    fallbacks = pd.concat([r.fallbacks for r in results], ignore_index=True)
    failed = sorted(u for r in results for u in r.failed)
    sample = pd.concat([r.sample for r in results if not r.sample.empty], ignore_index=True)
    summary = aggregate_metrics(metrics)
    fallback_share = fallbacks[ID_COL].nunique() / max(total_instances, 1)
    summary.update(
        fallback_instances=float(fallbacks[ID_COL].nunique()),
        fallback_share=float(fallback_share),
        failed_instances=float(len(failed)),
        instances=float(total_instances - len(failed)),
    )
    worse = worse_than_naive(metrics)
    warning = naive_warning(worse, total_instances)
    status, reason = "complete", ""
    if failed:
        status = "partial"
        reason = f"{len(failed)} instance(s) could not be fitted and are not forecast: {failed[:5]}"
    elif len(fallbacks):
        status = "partial"
        reason = f"{fallbacks[ID_COL].nunique()} instance(s) fell back to a simpler model"
    model = FleetModel(fleets, {**{k: str(v) for k, v in params.items()}, **tags})
    example = input_example(model.unique_ids)
    with watch:
        client = _client(tracking)
        run = client.create_run(
            experiment_id,
            tags={
                TAG_KIND: "train",
                TAG_STATUS: status,
                TAG_REASON: reason,
                TAG_WARNING: warning,
                **tags,
            },
            run_name=f"train-{tags[TAG_SNAPSHOT][:8]}",
            start_time=started_ms,
        )
        run_id = run.info.run_id
        try:
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, 0, 0) for k, v in summary.items() if np.isfinite(v)],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            )
            per_instance = metrics.pivot_table(
                index=ID_COL,
                columns="horizon",
                values=[c for c in (*METRICS, *BASELINE_METRICS) if c in metrics],
                observed=True,
            )
            flat: list[Any] = list(per_instance.columns.to_flat_index())
            per_instance.columns = pd.Index([f"{metric}_{horizon}" for metric, horizon in flat])
            log_table(client, run_id, per_instance.reset_index(), "metrics/instances.parquet")
            log_table(client, run_id, fallbacks, "metrics/fallbacks.parquet")
            log_table(client, run_id, worse, "metrics/worse_than_naive.parquet")
            log_plots(
                client,
                run_id,
                sample,
                metrics,
                sorted(sample[ID_COL].astype("string").unique()) if not sample.empty else [],
            )
            version = log_model_version(client, run_id, tracking, model, example)
            for key in (TAG_SNAPSHOT, TAG_CONFIG, TAG_WINDOW):
                client.set_model_version_tag(tracking.model_name, version, key, tags[key])
            client.set_terminated(run_id, status="FINISHED")
        except Exception as exc:
            from pipelines.tracking import fail_run

            fail_run(client, run_id, f"{type(exc).__name__}: {exc}")
            raise
    return TrainingRecord(
        run_id, version, summary, status, reason, mlflow_seconds=watch.seconds, warning=warning
    )


def naive_warning(worse: pd.DataFrame, total_instances: int) -> str:
    """Return the warning about instances worse than naive (``""`` when there are none)."""
    if worse.empty:
        return ""
    counts = worse.groupby("horizon", sort=False)[ID_COL].nunique()
    per_horizon = ", ".join(f"{h} {counts[h]}" for h in HORIZONS if h in counts.index)
    top = worse.assign(excess=worse["mase"] / worse["mase_naive"]).nlargest(3, "excess")
    examples = "; ".join(
        f"{row[ID_COL]} ({row['horizon']}: MASE {row['mase']:.2f} vs naive {row['mase_naive']:.2f})"
        for _, row in top.iterrows()
    )
    return (
        f"{worse[ID_COL].nunique()} of {total_instances} instance(s) forecast worse than naive "
        f"on the back-test (per horizon: {per_horizon}); worst: {examples}"
    )


# -- predicting --------------------------------------------------------------------


@pipeline_task(io=True)
def load_version(tracking: TrackingParams, alias: str) -> tuple[str, FleetModel]:
    """Return the version under ``alias`` and its fleet model.

    Raises
    ------
    ModelNotFoundError
        If no version carries the alias yet (e.g. before the first promotion).
    """
    from pipelines.tracking import aliased_version, load_fleet_model

    client = _client(tracking)
    version = aliased_version(client, tracking.model_name, alias)
    if version is None:
        raise ModelNotFoundError(tracking.model_name, alias)
    return str(version.version), load_fleet_model(
        f"models:/{tracking.model_name}/{version.version}"
    )


@pipeline_task()
def forecast_horizons(
    model: FleetModel, frame: pd.DataFrame | None, progress_key: str | None = None
) -> pd.DataFrame:
    """Forecast every instance for every horizon, from ``frame`` if given.

    With ``progress_key``, each horizon done is one unit of that stage.
    """
    parts = []
    for horizon, hours in HORIZONS.items():
        part = model.forecast(hours, QUANTILES, frame=frame)
        part.insert(1, "horizon", horizon)
        parts.append(part)
        if progress_key is not None:
            progress.advance(progress_key)
    return pd.concat(parts, ignore_index=True)


@pipeline_task(io=True)
def write_predictions(
    forecasts: pd.DataFrame,
    output_dir: Path,
    model_name: str,
    version: str,
    generated_at: datetime,
    snapshot: str,
) -> Path:
    """Write the forecasts where the API reads them, replacing the previous ones atomically.

    ``output_dir/forecasts.parquet`` holds ``unique_id, horizon, ds, yhat, q50, q90,
    model, source, model_name, model_version, generated_at``; ``manifest.json``
    beside it says which model version made them and when.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    out = forecasts.assign(
        model_name=model_name, model_version=version, generated_at=pd.Timestamp(generated_at)
    )
    target = output_dir / "forecasts.parquet"
    fd, tmp = tempfile.mkstemp(dir=output_dir, suffix=".parquet.tmp")
    os.close(fd)
    out.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    manifest = {
        "model_name": model_name,
        "model_version": version,
        "generated_at": pd.Timestamp(generated_at).isoformat(),
        "snapshot": snapshot,
        "rows": len(out),
        "instances": int(out[ID_COL].nunique()),
        "horizons": HORIZONS,
        "quantiles": list(QUANTILES),
    }
    fd, tmp = tempfile.mkstemp(dir=output_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, output_dir / "manifest.json")
    return target


# -- promotion ---------------------------------------------------------------------


@pipeline_task(io=True)
def candidate_facts(tracking: TrackingParams, version: str | None) -> dict[str, Any]:
    """Return a version's run id, back-test window, metrics and training parameters."""
    from pipelines.tracking import model_version

    client = _client(tracking)
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
    _client(tracking)
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

    client = _client(tracking)
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
    _log_scores(
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


def _log_scores(
    client: Any, experiment_id: str, kind: str, tags: dict[str, str], metrics: dict[str, float]
) -> str:
    from mlflow.entities import Metric

    run = client.create_run(experiment_id, tags={TAG_KIND: kind, **tags}, run_name=kind)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items() if np.isfinite(v)],
    )
    client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)


@pipeline_task(io=True)
def set_champion(tracking: TrackingParams, facts: dict[str, Any], decision: Any) -> None:
    """Move the champion alias if the gate promoted; record the decision either way."""
    from pipelines.tracking import CHAMPION

    client = _client(tracking)
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


# -- evaluation --------------------------------------------------------------------


@pipeline_task()
def score_served(
    model: FleetModel, frame: pd.DataFrame, window: BacktestWindow
) -> dict[str, float]:
    """Score a fitted fleet model on the window, forecasting each origin without refitting."""
    frame = frame.loc[frame[ID_COL].isin(model.unique_ids)]

    def forecast(h: int, history: pd.DataFrame) -> pd.DataFrame:
        return model.forecast(h, QUANTILES, frame=history)

    return aggregate_metrics(score_horizons(frame, window_forecasts(forecast, frame, window)))


@pipeline_task(io=True)
def log_evaluation(
    tracking: TrackingParams,
    experiment_id: str,
    version: str,
    digest: str,
    window: str,
    metrics: dict[str, float],
) -> str:
    """Log the served champion's scores as an ``evaluate`` run."""
    tags = {TAG_SNAPSHOT: digest, TAG_WINDOW: window, "creditx.version": version}
    return _log_scores(_client(tracking), experiment_id, "evaluate", tags, metrics)
