"""MLflow tracking and registry: one experiment per fleet, one run per training.

A training run holds its parameters, aggregate metrics, the per-instance metric table
(``metrics/instances.parquet``), the fallbacks, two plots (forecast against actual
for sample instances, error distribution per horizon) and the fleet model, logged
once as a pyfunc and registered as a new version of the fleet model's name.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from data.forecasts import HORIZONS
from data.frame import ID_COL, TARGET_COL, TIME_COL
from pipelines.errors import ModelNotFoundError
from pipelines.params import TrackingParams
from pipelines.runs_view import TAG_KIND as TAG_KIND  # one name for the run kind
from pipelines.runs_view import experiment_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.fleet_model import FleetModel

#: Pip requirements written with the model; given so MLflow need not infer them.
MODEL_REQUIREMENTS = ["mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm"]
CHAMPION = "champion"
TAG_SNAPSHOT = "creditx.snapshot"
TAG_CONFIG = "creditx.config_hash"
TAG_WINDOW = "creditx.window"
TAG_STATUS = "creditx.status"
TAG_REASON = "creditx.reason"
TAG_WARNING = "creditx.warning"


@dataclass
class Stopwatch:
    """Seconds spent talking to MLflow, so the flow can report its share."""

    seconds: float = 0.0
    _started: list[float] = field(default_factory=list)

    def __enter__(self) -> Stopwatch:
        self._started.append(time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._started.pop()


def ensure_experiment(client: MlflowClient, tracking: TrackingParams) -> str:
    """Return the id of the fleet's experiment, creating it with its artifact root.

    The experiment carries :func:`pipelines.runs_view.experiment_tags` (one made by an
    older version gets them here), so the UI opens on its training runs.
    """
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        for key, value in experiment_tags().items():
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return str(experiment.experiment_id)
    location = f"{tracking.artifact_root.rstrip('/')}/{tracking.experiment}"
    return str(
        client.create_experiment(
            tracking.experiment, artifact_location=location, tags=experiment_tags()
        )
    )


def find_finished_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> Run | None:
    """Return the newest finished run carrying every tag in ``tags``, if any."""
    clauses = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    clauses.append("attributes.status = 'FINISHED'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def fail_run(client: MlflowClient, run_id: str, reason: str) -> None:
    """Mark a run failed with the reason as a tag, visible in the MLflow UI."""
    client.set_tag(run_id, TAG_STATUS, "failed")
    client.set_tag(run_id, TAG_REASON, reason[:5000])
    client.set_terminated(run_id, status="FAILED")


def log_table(client: MlflowClient, run_id: str, table: pd.DataFrame, path: str) -> None:
    """Log a frame as a Parquet artifact at ``path`` inside the run."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        table.to_parquet(local, index=False)
        client.log_artifact(run_id, str(local), str(Path(path).parent) or None)


def log_model_version(
    client: MlflowClient,
    run_id: str,
    tracking: TrackingParams,
    model: FleetModel,
    example: pd.DataFrame,
) -> str:
    """Log the fleet model once in the run and register it; return the new version."""
    import mlflow

    from pipelines.fleet_model import signature

    # The fleet model is our own class, pickled on purpose: MLflow's warning about
    # pickled Python objects says nothing a user of creditx can act on.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="fleet_model",
                python_model=model,
                signature=signature(),
                input_example=example,
                pip_requirements=MODEL_REQUIREMENTS,
                registered_model_name=tracking.model_name,
                await_registration_for=0,
            )
    finally:
        pyfunc_log.setLevel(level)
    version = info.registered_model_version
    if version is None:
        raise ModelNotFoundError(tracking.model_name)
    return str(version)


def model_version(client: MlflowClient, name: str, version: str | None = None) -> ModelVersion:
    """Return a registered version, the newest one when ``version`` is ``None``.

    Raises
    ------
    ModelNotFoundError
        If the name has no such version.
    """
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            return client.get_model_version(name, version)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise ModelNotFoundError(name, version) from exc
    if not versions:
        raise ModelNotFoundError(name)
    return max(versions, key=lambda v: int(v.version))


def aliased_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """Return the version under ``alias``, or ``None`` when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_fleet_model(uri: str) -> FleetModel:
    """Load a logged fleet model (e.g. ``models:/NAME@champion``) as a :class:`FleetModel`."""
    import mlflow

    from pipelines.fleet_model import FleetModel

    model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(model, FleetModel):
        raise ModelNotFoundError(uri)
    return model


def log_plots(
    client: MlflowClient,
    run_id: str,
    backtest: pd.DataFrame,
    metrics: pd.DataFrame,
    sample: list[str],
) -> None:
    """Log forecast-against-actual plots of ``sample`` and the error distributions."""
    # Imported here: predicting and promoting load this module but draw nothing.
    import matplotlib

    matplotlib.use("Agg")  # files only: flows run without a display
    import matplotlib.pyplot as plt

    if sample:
        fig, axes = plt.subplots(len(sample), 1, figsize=(10, 2.4 * len(sample)), squeeze=False)
        first = backtest.groupby(ID_COL, observed=True)["origin"].transform("min")
        path = backtest.loc[backtest["origin"] == first]
        for ax, unique_id in zip(axes[:, 0], sample, strict=True):
            rows = path.loc[path[ID_COL] == unique_id].sort_values(TIME_COL)
            ax.plot(rows[TIME_COL], rows[TARGET_COL], color="black", lw=1, label="actual")
            ax.plot(rows[TIME_COL], rows["yhat"], color="tab:blue", lw=1, label="forecast")
            ax.fill_between(
                rows[TIME_COL],
                rows["q50"],
                rows["q90"],
                color="tab:blue",
                alpha=0.2,
                label="q50-q90",
            )
            ax.set_title(f"{unique_id}: one week from the first back-test origin", fontsize=9)
            ax.set_ylabel("CPU %")
        axes[0, 0].legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        client.log_figure(run_id, fig, "plots/forecast_vs_actual.png")
        plt.close(fig)
    fig, axes = plt.subplots(1, len(HORIZONS), figsize=(4 * len(HORIZONS), 3), squeeze=False)
    for ax, horizon in zip(axes[0], HORIZONS, strict=True):
        values = metrics.loc[metrics["horizon"] == horizon, "mase"].dropna()
        ax.hist(values, bins=30, color="tab:orange")
        ax.set_title(f"MASE per instance, next {horizon}", fontsize=9)
    fig.tight_layout()
    client.log_figure(run_id, fig, "plots/error_distribution.png")
    plt.close(fig)


def log_json(client: MlflowClient, run_id: str, document: dict[str, object], path: str) -> None:
    """Log a JSON document as an artifact of the run."""
    client.log_text(run_id, json.dumps(document, indent=1, default=str), path)
