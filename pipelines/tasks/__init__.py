"""The tasks the flows orchestrate: small and typed; only the I/O ones retry.

One module per stage, every task made by the one decorator
(:func:`pipelines.decorators.pipeline_task`):

- :mod:`~pipelines.tasks.snapshots`: read a snapshot;
- :mod:`~pipelines.tasks.tracking`: the fleet's experiment, a training's record, a
  failed run, a run of scores;
- :mod:`~pipelines.tasks.training`: split the fleet, back-test and fit each shard,
  log the run and its fleet model;
- :mod:`~pipelines.tasks.prediction`: load the aliased model, forecast every horizon,
  write the forecasts the API reads;
- :mod:`~pipelines.tasks.promotion`: a candidate's facts and smoke test, the
  champion's scores, the champion alias;
- :mod:`~pipelines.tasks.evaluation`: score the served champion and log it;
- :mod:`~pipelines.tasks.replay`: the replay flow's tasks (imported from there: they
  load the replay engine).

Compute tasks (:func:`train_shard`, :func:`forecast_horizons`) are pure functions of
their inputs; I/O tasks read or write a snapshot, the MLflow store or the
predictions directory and retry on transient failures. No task caches its inputs:
hashing large telemetry frames would cost more than the work.
"""

from pipelines.tasks.evaluation import log_evaluation, score_served
from pipelines.tasks.prediction import forecast_horizons, load_version, write_predictions
from pipelines.tasks.promotion import candidate_facts, champion_scores, set_champion, smoke_test
from pipelines.tasks.snapshots import load_snapshot
from pipelines.tasks.tracking import (
    TrainingRecord,
    config_hash,
    find_training,
    log_scores,
    open_experiment,
    record_failure,
)
from pipelines.tasks.training import (
    FALLBACK_CANDIDATES,
    ShardResult,
    forecast_config,
    log_training,
    naive_warning,
    split_shards,
    train_shard,
)

__all__ = [
    "FALLBACK_CANDIDATES",
    "ShardResult",
    "TrainingRecord",
    "candidate_facts",
    "champion_scores",
    "config_hash",
    "find_training",
    "forecast_config",
    "forecast_horizons",
    "load_snapshot",
    "load_version",
    "log_evaluation",
    "log_scores",
    "log_training",
    "naive_warning",
    "open_experiment",
    "record_failure",
    "score_served",
    "set_champion",
    "smoke_test",
    "split_shards",
    "train_shard",
    "write_predictions",
]
