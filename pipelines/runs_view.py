"""How the MLflow UI shows a fleet's training runs: key metrics as columns.

MLflow's UI restores a runs-table view from an experiment tag
``mlflow.sharedViewState.<key>`` when its URL carries ``viewStateShareKey=<key>``
(the UI's "share view"). :func:`training_view_state` is that view for the fleet's
experiment: training runs only, best MASE first, their duration, then the per-horizon
MASE, pinball loss and coverage as columns. The experiment carries it, with its kind, from its
creation (:func:`experiment_tags`, set by :func:`pipelines.tracking.ensure_experiment`)
and ``creditx mlflow-ui`` prints :func:`training_runs_url`, which opens it.

This module imports neither MLflow nor pandas, so commands can use it at no cost.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from data.forecasts import HORIZONS

#: The view's share key and the experiment tag that holds it.
VIEW_KEY = "creditx-training-runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"

#: MLflow's experiment kind: a model-development experiment opens on its runs table,
#: not on the GenAI overview of traces.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"

#: The tag saying what a run is: ``train``, ``evaluate``, ``champion-backtest``...
TAG_KIND = "creditx.kind"

#: The metrics shown as columns, in this order: the fleet MASE, then per horizon the
#: MASE, the pinball loss at 0.9 and the coverage of q90; then seasonal naive's MASE and
#: the share of instances on a fallback model.
KEY_METRICS: tuple[str, ...] = (
    "mase",
    *(f"mase_{h}" for h in HORIZONS),
    *(f"pinball90_{h}" for h in HORIZONS),
    *(f"coverage90_{h}" for h in HORIZONS),
    "mase_seasonal_naive",
    "fallback_share",
)


def _metric_column(name: str) -> str:
    # The UI names a metric's column `metrics.`<name>``, as in its sort keys.
    return f"metrics.`{name}`"


def training_view_state() -> dict[str, object]:
    """Return the runs-table view of the training runs, as MLflow's UI reads it.

    The search facets (filter, order) and the table's UI state (its columns and their
    order) of MLflow 3's experiment page, in one JSON object.
    """
    columns = [_metric_column(m) for m in KEY_METRICS]
    return {
        "searchFilter": f"tags.`{TAG_KIND}` = 'train'",
        "orderByKey": _metric_column("mase"),
        "orderByAsc": True,
        "selectedColumns": columns,
        # The run's duration (the grid's "duration" column), then the metrics in order.
        "columnOrder": ["duration", *columns],
    }


def training_view_tag_value() -> str:
    """Return the experiment tag's value: the view state as compact JSON."""
    return json.dumps(training_view_state(), separators=(",", ":"), sort_keys=True)


def experiment_tags() -> dict[str, str]:
    """Return the tags every fleet experiment carries: its kind and the shared view."""
    return {TAG_EXPERIMENT_KIND: MODEL_DEVELOPMENT, VIEW_TAG: training_view_tag_value()}


def training_runs_url(base: str, experiment_id: str) -> str:
    """Return the UI address of an experiment's training runs in their shared view.

    ``workflowType=machine_learning`` keeps the UI on the runs, not on its GenAI pages.
    """
    query = urlencode({"viewStateShareKey": VIEW_KEY, "workflowType": "machine_learning"})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
