"""Scheduled deployments: predict hourly, train daily, evaluate weekly, and book the
dropped telemetry every five minutes.

:func:`deployments` builds the three deployments with their cron schedules and
parameters; :func:`serve` runs them in this process through Prefect's ``serve``,
so scheduled runs, failed ones included, show in the Prefect UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.params import (
    EvaluateParams,
    IngestParams,
    PredictParams,
    TelemetryParams,
    TrackingParams,
    TrainParams,
)

if TYPE_CHECKING:
    from pathlib import Path

#: Cron schedules (UTC): forecasts a few minutes past each hour, training at night,
#: evaluation on Monday morning once the week's telemetry is in.
PREDICT_CRON = "5 * * * *"
TRAIN_CRON = "30 1 * * *"
EVALUATE_CRON = "0 4 * * 1"
#: A minute into each 5-minute interval, when the last interval's readings are in.
TELEMETRY_CRON = "1-59/5 * * * *"


def deployments(
    tracking: TrackingParams,
    ingest: IngestParams,
    home: Path,
    predictions_dir: Path,
    telemetry: TelemetryParams | None = None,
) -> list[Any]:
    """Return the predict, train and evaluate deployments with their cron schedules,
    and the telemetry flow's when ``telemetry`` is given.

    Parameters
    ----------
    tracking
        MLflow store, model name and fleet every flow uses.
    ingest
        The telemetry source the daily training ingests first.
    home
        Working directory; snapshots are read from ``home/snapshots``.
    predictions_dir
        Where the hourly forecasts are written for the API.
    telemetry
        The drop directory, store and allowances snapshot of the telemetry flow.
    """
    from pipelines.flows import evaluate_flow, predict_flow, train_flow

    snapshots = home / "snapshots"
    predict = PredictParams(tracking=tracking, output_dir=predictions_dir, snapshots_dir=snapshots)
    train = TrainParams(tracking=tracking, ingest=ingest)
    evaluate = EvaluateParams(tracking=tracking, snapshots_dir=snapshots)
    built = [
        predict_flow.to_deployment(
            name=f"{tracking.fleet}-predict-hourly",
            cron=PREDICT_CRON,
            parameters={"params": predict.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
        train_flow.to_deployment(
            name=f"{tracking.fleet}-train-daily",
            cron=TRAIN_CRON,
            parameters={"params": train.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
        evaluate_flow.to_deployment(
            name=f"{tracking.fleet}-evaluate-weekly",
            cron=EVALUATE_CRON,
            parameters={"params": evaluate.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
    ]
    if telemetry is not None:
        from pipelines.telemetry import telemetry_flow

        built.append(
            telemetry_flow.to_deployment(
                name=f"{tracking.fleet}-telemetry-5min",
                cron=TELEMETRY_CRON,
                parameters={"params": telemetry.model_dump(mode="json")},
                tags=["creditx", tracking.fleet],
            )
        )
    return built


def serve(*deployment: Any) -> None:
    """Serve the deployments until interrupted, running each at its scheduled times."""
    import prefect

    prefect.serve(*deployment)
