"""The evaluation tasks: score the served champion on a window, log the scores."""

from __future__ import annotations

import pandas as pd

from data.forecasts import QUANTILES
from data.frame import ID_COL
from pipelines.decorators import pipeline_task
from pipelines.fleet_model import FleetModel
from pipelines.params import TrackingParams
from pipelines.scoring import BacktestWindow, aggregate_metrics, score_horizons, window_forecasts
from pipelines.tasks.tracking import log_scores
from pipelines.tracking import TAG_SNAPSHOT, TAG_WINDOW


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
    return log_scores(tracking.client(), experiment_id, "evaluate", tags, metrics)
