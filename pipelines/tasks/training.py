"""The training tasks: split the fleet, back-test and fit each shard, log the run.

:func:`train_shard` is a pure function of its inputs; :func:`log_training` writes the
run, its tables and plots and the registered fleet model to MLflow and retries once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger

from data.forecasts import HORIZONS, QUANTILES
from data.frame import ID_COL
from models import FleetForecaster, ForecastConfig, ForecastError
from pipelines import progress
from pipelines.decorators import pipeline_task
from pipelines.fleet_model import FleetModel, input_example
from pipelines.params import TrackingParams
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
from pipelines.tasks.tracking import TrainingRecord
from pipelines.tracking import (
    TAG_CONFIG,
    TAG_KIND,
    TAG_REASON,
    TAG_SNAPSHOT,
    TAG_STATUS,
    TAG_WARNING,
    TAG_WINDOW,
    Stopwatch,
    log_model_version,
    log_plots,
    log_table,
)

#: Forecaster every instance can fall back to when its shard's models fail on it.
FALLBACK_CANDIDATES: tuple[str, ...] = ("naive",)


@dataclass
class ShardResult:
    """What training one shard of instances produced."""

    fleet: FleetForecaster | None
    metrics: pd.DataFrame
    sample: pd.DataFrame
    fallbacks: pd.DataFrame
    failed: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class _TrainingSummary:
    # What the shards of one training add up to, as the run logs it.
    metrics: pd.DataFrame
    fallbacks: pd.DataFrame
    sample: pd.DataFrame
    worse: pd.DataFrame
    figures: dict[str, float]
    status: str
    reason: str
    warning: str


def _summarise(results: list[ShardResult], total_instances: int) -> _TrainingSummary:
    metrics = pd.concat([r.metrics for r in results if not r.metrics.empty], ignore_index=True)
    fallbacks = pd.concat([r.fallbacks for r in results], ignore_index=True)
    failed = sorted(u for r in results for u in r.failed)
    sample = pd.concat([r.sample for r in results if not r.sample.empty], ignore_index=True)
    figures = aggregate_metrics(metrics)
    fallback_share = fallbacks[ID_COL].nunique() / max(total_instances, 1)
    figures.update(
        fallback_instances=float(fallbacks[ID_COL].nunique()),
        fallback_share=float(fallback_share),
        failed_instances=float(len(failed)),
        instances=float(total_instances - len(failed)),
    )
    worse = worse_than_naive(metrics)
    status, reason = "complete", ""
    if failed:
        status = "partial"
        reason = f"{len(failed)} instance(s) could not be fitted and are not forecast: {failed[:5]}"
    elif len(fallbacks):
        status = "partial"
        reason = f"{fallbacks[ID_COL].nunique()} instance(s) fell back to a simpler model"
    warning = naive_warning(worse, total_instances)
    return _TrainingSummary(metrics, fallbacks, sample, worse, figures, status, reason, warning)


def _per_instance(metrics: pd.DataFrame) -> pd.DataFrame:
    # one row per instance, one column per metric and horizon (``mase_day``, ...)
    table = metrics.pivot_table(
        index=ID_COL,
        columns="horizon",
        values=[c for c in (*METRICS, *BASELINE_METRICS) if c in metrics],
        observed=True,
    )
    flat: list[Any] = list(table.columns.to_flat_index())
    table.columns = pd.Index([f"{metric}_{horizon}" for metric, horizon in flat])
    return table.reset_index()


def _log_run_content(
    client: Any,
    run_id: str,
    tracking: TrackingParams,
    summary: _TrainingSummary,
    params: dict[str, Any],
    tags: dict[str, str],
    model: FleetModel,
    example: pd.DataFrame,
) -> str:
    # Figures, parameters, tables, plots and the model version of a started run.
    from mlflow.entities import Metric, Param

    client.log_batch(
        run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in summary.figures.items() if np.isfinite(v)],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
    )
    log_table(client, run_id, _per_instance(summary.metrics), "metrics/instances.parquet")
    log_table(client, run_id, summary.fallbacks, "metrics/fallbacks.parquet")
    log_table(client, run_id, summary.worse, "metrics/worse_than_naive.parquet")
    sample = summary.sample
    log_plots(
        client,
        run_id,
        sample,
        summary.metrics,
        sorted(sample[ID_COL].astype("string").unique()) if not sample.empty else [],
    )
    version = log_model_version(client, run_id, tracking, model, example)
    for key in (TAG_SNAPSHOT, TAG_CONFIG, TAG_WINDOW):
        client.set_model_version_tag(tracking.model_name, version, key, tags[key])
    client.set_terminated(run_id, status="FINISHED")
    return version


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
    watch = Stopwatch()
    fleets = [r.fleet for r in results if r.fleet is not None]
    summary = _summarise(results, total_instances)
    model = FleetModel(fleets, {**{k: str(v) for k, v in params.items()}, **tags})
    example = input_example(model.unique_ids)
    with watch:
        client = tracking.client()
        run = client.create_run(
            experiment_id,
            tags={
                TAG_KIND: "train",
                TAG_STATUS: summary.status,
                TAG_REASON: summary.reason,
                TAG_WARNING: summary.warning,
                **tags,
            },
            run_name=f"train-{tags[TAG_SNAPSHOT][:8]}",
            start_time=started_ms,
        )
        run_id = run.info.run_id
        try:
            version = _log_run_content(
                client, run_id, tracking, summary, params, tags, model, example
            )
        except Exception as exc:
            from pipelines.tracking import fail_run

            fail_run(client, run_id, f"{type(exc).__name__}: {exc}")
            raise
    return TrainingRecord(
        run_id,
        version,
        summary.figures,
        summary.status,
        summary.reason,
        mlflow_seconds=watch.seconds,
        warning=summary.warning,
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
