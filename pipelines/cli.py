"""``creditx`` commands of the ``pipelines`` package.

``creditx pipeline ingest|train|promote|predict|evaluate`` run one flow now;
``creditx schedule`` serves them on their cron schedules; ``creditx mlflow-ui``
opens the experiment UI on the configured store. Every command reads the stores
from :class:`serving.settings.Settings` (``CREDITX_*``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

if TYPE_CHECKING:
    from pipelines.flows import TrainOutcome
    from pipelines.params import IngestParams, TrackingParams
    from serving.settings import Settings


def _settings() -> Settings:
    from pipelines.config import OrchestrationConfig
    from serving.settings import get_settings

    settings = get_settings()
    # Prefect reads its home and server from the environment: set them before it loads.
    OrchestrationConfig.from_settings(settings).apply()
    return settings


def _tracking(settings: Settings, fleet: str) -> TrackingParams:
    from pipelines.params import TrackingParams

    return TrackingParams(
        tracking_uri=settings.tracking_uri,
        artifact_root=settings.artifact_root,
        model_name=settings.model_name,
        fleet=fleet,
    )


def _ingest(
    settings: Settings, source: Path | None, instances: int, days: float, seed: int
) -> IngestParams:
    from pipelines.params import IngestParams, SyntheticFleet

    if source is not None:
        return IngestParams(source=source, home=settings.home)
    fleet = SyntheticFleet(instances=instances, days=days, seed=seed)
    return IngestParams(synthetic=fleet, home=settings.home)


def _names(candidates: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in candidates.split(",") if c.strip())


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def mlflow_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    """Return the command line that serves the MLflow UI on the configured store."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.tracking_uri,
        "--default-artifact-root",
        settings.artifact_root,
        "--host",
        host,
        "--port",
        str(port),
    ]


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root ``creditx`` app."""
    pipeline_app = typer.Typer(
        help="Run one forecasting flow now: ingest, train, promote, predict or evaluate.",
        no_args_is_help=True,
    )
    fleet_option = typer.Option("default", help="fleet name; one MLflow experiment per fleet")
    source_option = typer.Option(None, help="telemetry file; a synthetic fleet without it")
    instances_option = typer.Option(20, help="instances of the synthetic fleet")
    days_option = typer.Option(21.0, help="days of the synthetic fleet")
    seed_option = typer.Option(0, help="seed of the synthetic fleet")

    @pipeline_app.command("ingest")
    def ingest(
        source: Path | None = source_option,
        instances: int = instances_option,
        days: float = days_option,
        seed: int = seed_option,
    ) -> None:
        """Load, validate and snapshot telemetry; print the snapshot path."""
        from pipelines.errors import PipelineError

        settings = _settings()
        from pipelines.flows import ingest_flow

        try:
            snapshot = ingest_flow(_ingest(settings, source, instances, days, seed))
        except PipelineError as exc:
            raise _fail(exc) from exc
        typer.echo(str(snapshot.path))

    @pipeline_app.command("train")
    def train(
        snapshot: Path | None = typer.Option(None, help="snapshot to train on; newest by default"),
        fleet: str = fleet_option,
        candidates: str | None = typer.Option(
            None, help="comma-separated forecasters; the forecast benchmark's set by default"
        ),
        shard_size: int = typer.Option(500, help="instances per training shard"),
        promote: bool = typer.Option(True, help="gate the new version for promotion"),
        runner: str = typer.Option("default", help="task runner: default or dask"),
        dask_address: str | None = typer.Option(
            None, help="Dask scheduler; a LocalCluster without"
        ),
        dask_workers: int = typer.Option(2, help="workers of the LocalCluster"),
    ) -> None:
        """Back-test, fit, log and register the fleet model; gate it for promotion."""
        from pipelines.errors import PipelineError
        from pipelines.snapshot import latest_snapshot

        settings = _settings()
        from pipelines.flows import task_runner, train_flow
        from pipelines.params import DEFAULT_CANDIDATES, TrainParams

        path = snapshot or latest_snapshot(settings.home / "snapshots")
        if path is None:
            raise _fail(FileNotFoundError("no snapshot yet: run `creditx pipeline ingest` first"))
        try:
            params = TrainParams(
                snapshot=path,
                tracking=_tracking(settings, fleet),
                candidates=DEFAULT_CANDIDATES if candidates is None else _names(candidates),
                shard_size=shard_size,
                promote=promote,
            )
            flow = train_flow.with_options(
                task_runner=task_runner(runner, dask_address, dask_workers)
            )
            state = flow(params, return_state=True)
            outcome = cast("TrainOutcome", state.result())
        except PipelineError as exc:
            raise _fail(exc) from exc
        record, decision = outcome.record, outcome.decision
        typer.echo(f"{state.name}: run {record.run_id}, version {record.version}")
        typer.echo(f"MASE {record.metrics['mase']:.4f}; {state.message}")
        if record.warning:
            typer.secho(f"warning: {record.warning}", err=True, fg=typer.colors.YELLOW)
        if decision is not None:
            typer.echo(decision.reason)

    @pipeline_app.command("promote")
    def promote(
        version: str | None = typer.Option(None, help="candidate version; newest by default"),
        fleet: str = fleet_option,
        margin: float = typer.Option(0.02, help="relative MASE improvement required"),
    ) -> None:
        """Gate a registered version against the champion; move the alias if it passes."""
        from pipelines.errors import PipelineError

        settings = _settings()
        from pipelines.flows import promote_flow
        from pipelines.params import PromoteParams

        try:
            decision = promote_flow(
                PromoteParams(tracking=_tracking(settings, fleet), version=version, margin=margin)
            )
        except PipelineError as exc:
            raise _fail(exc) from exc
        typer.echo(decision.reason)

    @pipeline_app.command("predict")
    def predict(fleet: str = fleet_option) -> None:
        """Write the champion's forecasts of every instance and horizon for the API."""
        from pipelines.errors import PipelineError

        settings = _settings()
        from pipelines.flows import predict_flow
        from pipelines.params import PredictParams

        params = PredictParams(
            tracking=_tracking(settings, fleet),
            output_dir=settings.predictions_dir,
            snapshots_dir=settings.home / "snapshots",
        )
        try:
            typer.echo(str(predict_flow(params)))
        except PipelineError as exc:
            raise _fail(exc) from exc

    @pipeline_app.command("evaluate")
    def evaluate(fleet: str = fleet_option) -> None:
        """Score the served champion on the newest snapshot and log it to MLflow."""
        from pipelines.errors import PipelineError

        settings = _settings()
        from pipelines.flows import evaluate_flow
        from pipelines.params import EvaluateParams

        params = EvaluateParams(
            tracking=_tracking(settings, fleet), snapshots_dir=settings.home / "snapshots"
        )
        try:
            metrics = evaluate_flow(params)
        except PipelineError as exc:
            raise _fail(exc) from exc
        typer.echo(f"MASE {metrics['mase']:.4f}, coverage90 {metrics['coverage90']:.3f}")

    app.add_typer(pipeline_app, name="pipeline")

    @app.command("schedule")
    def schedule(
        fleet: str = fleet_option,
        source: Path | None = source_option,
        instances: int = instances_option,
        days: float = days_option,
        seed: int = seed_option,
    ) -> None:
        """Serve the flows on cron: predict hourly, train daily, evaluate weekly."""
        settings = _settings()
        from pipelines.schedule import deployments, serve

        serve(
            *deployments(
                _tracking(settings, fleet),
                _ingest(settings, source, instances, days, seed),
                settings.home,
                settings.predictions_dir,
            )
        )

    @app.command("mlflow-ui")
    def mlflow_ui(
        host: str = typer.Option("127.0.0.1", help="interface to listen on"),
        port: int = typer.Option(5000, help="port to listen on"),
    ) -> None:
        """Open the MLflow experiment UI on the configured tracking store."""
        from pipelines.config import check_tracking_store
        from pipelines.errors import PipelineError
        from serving.settings import get_settings

        settings = get_settings()
        try:
            check_tracking_store(settings.tracking_uri)
        except PipelineError as exc:
            raise _fail(exc) from exc
        raise typer.Exit(subprocess.call(mlflow_ui_command(settings, host, port)))
