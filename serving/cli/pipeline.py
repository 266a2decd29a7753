"""``creditx`` commands of the ``pipelines`` package.

``creditx pipeline ingest|train|promote|predict|evaluate`` run one flow now;
``creditx schedule`` serves them on their cron schedules; ``creditx mlflow-ui``
opens the experiment UI on the configured store. Every command reads the stores
from :class:`serving.settings.Settings` (``CREDITX_*``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from data.columns import DEFAULT_TIER
from serving.cli.progress import flow_progress

if TYPE_CHECKING:
    from prefect.states import State

    from pipelines.flows import TrainOutcome
    from pipelines.params import IngestParams
    from pipelines.schedule import ScheduleSpec
    from serving.settings import Settings
    from serving.tokens import TokenKind


def _settings() -> Settings:
    from serving.settings import get_settings

    settings = get_settings()
    # Prefect reads its home and server from the environment: set them before it loads.
    settings.orchestration_config().apply()
    return settings


def _ingest(
    settings: Settings, source: Path | None, instances: int, days: float, seed: int
) -> IngestParams:
    from pipelines.params import IngestParams, SyntheticFleet

    if source is not None:
        return IngestParams(source=source, home=settings.home)
    fleet = SyntheticFleet(instances=instances, days=days, seed=seed)
    return IngestParams(synthetic=fleet, home=settings.home)


def _check_snapshot(path: Path) -> None:
    # A missing or unreadable snapshot fails in a second, before Prefect starts.
    from data.errors import TelemetryError
    from data.sources import parquet_schema
    from pipelines.errors import SnapshotError

    if not path.is_file():
        raise SnapshotError(str(path), "no such snapshot file; `creditx pipeline ingest` makes one")
    try:
        parquet_schema(path)
    except TelemetryError as exc:
        raise SnapshotError(str(path), "not a snapshot: unreadable as Parquet") from exc


def _names(candidates: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in candidates.split(",") if c.strip())


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


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
        # One worker starts soonest and is plenty for one person's browser.
        "--workers",
        "1",
        "--host",
        host,
        "--port",
        str(port),
    ]


def prefect_server_command(host: str, port: int) -> list[str]:
    """Return the command line that serves Prefect's API and UI on this machine.

    It is ``prefect server start`` with its scheduler fixed (:mod:`pipelines.prefect_server`).
    """
    return [
        sys.executable,
        "-m",
        "pipelines.prefect_server",
        "--host",
        host,
        "--port",
        str(port),
        "--analytics-off",
    ]


#: The MLflow UI server's environment beyond this process's: no background job
#: runner (the UI does not need one, and it slows the start), no usage telemetry.
MLFLOW_UI_ENVIRONMENT = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def _experiment_url(base: str, experiment: str) -> str:
    # The UI's own API names the experiment's id once the server answers, and gives
    # an experiment made before the runs table's shared view its tags.
    import httpx

    from pipelines.runs_view import experiment_tags, training_runs_url

    api = f"{base}/api/2.0/mlflow/experiments"
    try:
        reply = httpx.get(
            f"{api}/get-by-name",
            params={"experiment_name": experiment},
            timeout=60,  # the first request opens the store
        )
        found = reply.json()["experiment"]
        experiment_id = str(found["experiment_id"])
        tags = {t["key"]: t.get("value") for t in found.get("tags", [])}
        for key, value in experiment_tags().items():
            if tags.get(key) != value:
                httpx.post(
                    f"{api}/set-experiment-tag",
                    json={"experiment_id": experiment_id, "key": key, "value": value},
                    timeout=60,
                ).raise_for_status()
    except (httpx.HTTPError, KeyError, ValueError):
        return base
    return training_runs_url(base, experiment_id)


pipeline_app = typer.Typer(
    help="Run one forecasting flow now: ingest, train, promote, predict or evaluate.",
    no_args_is_help=True,
)

FLEET = typer.Option("default", help="fleet name; one MLflow experiment per fleet")
SOURCE = typer.Option(None, help="telemetry file; a synthetic fleet without it")
INSTANCES = typer.Option(20, help="instances of the synthetic fleet")
DAYS = typer.Option(21.0, help="days of the synthetic fleet")
SEED = typer.Option(0, help="seed of the synthetic fleet")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root ``creditx`` app."""
    app.add_typer(pipeline_app, name="pipeline")
    app.command("schedule")(schedule)
    app.command("prefect-ui")(prefect_ui)
    app.command("mlflow-ui")(mlflow_ui)


@pipeline_app.command("ingest")
def ingest(
    source: Path | None = SOURCE,
    instances: int = INSTANCES,
    days: float = DAYS,
    seed: int = SEED,
    format: str = typer.Option(
        "auto",
        "--format",
        help="Schema of --source: auto (detected), shared, contract, azure, cloudwatch or mapped.",
    ),
    column: list[str] | None = typer.Option(
        None,
        "--column",
        help="Map a contract column to the file's column, e.g. --column unique_id=host "
        "(repeat for ds, y, tier, vcpus).",
    ),
    tier: str = typer.Option(
        DEFAULT_TIER, help="Tier of the instances whose telemetry names none."
    ),
) -> None:
    """Load, validate and snapshot telemetry; register its instances in the market.

    Prints the snapshot path.
    """
    from data.sources import check_source, column_mapping

    mapping = column_mapping(column)
    if source is not None:
        # Seconds, not the minute Prefect takes to start, to tell a bad file.
        check_source(source, format=format, columns=mapping)  # type: ignore[arg-type]
    settings = _settings()
    from pipelines.registration import register_instances
    from pipelines.snapshot import read_snapshot

    params = _ingest(settings, source, instances, days, seed)
    if source is not None:
        params = params.model_copy(update={"format": format, "columns": mapping})
    # From here on the command shows what it does: Prefect takes seconds to load.
    with flow_progress("starting the ingest flow"):
        from pipelines.ingest import ingest_flow

        snapshot = ingest_flow(params)
    _, frame = read_snapshot(snapshot.path)
    registration = register_instances(
        frame, settings.ledger_url, settings.tiers_config, default_tier=tier
    )
    typer.echo(registration.summary(tier), err=True)
    typer.echo(str(snapshot.path))


@pipeline_app.command("train")
def train(
    snapshot: Path | None = typer.Option(None, help="snapshot to train on; newest by default"),
    fleet: str = FLEET,
    candidates: str | None = typer.Option(
        None, help="comma-separated forecasters; the forecast benchmark's set by default"
    ),
    shard_size: int = typer.Option(500, help="instances per training shard"),
    promote: bool = typer.Option(True, help="gate the new version for promotion"),
    runner: str = typer.Option("default", help="task runner: default or dask"),
    dask_address: str | None = typer.Option(None, help="Dask scheduler; a LocalCluster without"),
    dask_workers: int = typer.Option(2, help="workers of the LocalCluster"),
) -> None:
    """Back-test, fit, log and register the fleet model; gate it for promotion."""
    from pipelines.errors import PipelineError
    from pipelines.params import DEFAULT_CANDIDATES, TrainParams, check_candidates

    names = check_candidates(DEFAULT_CANDIDATES if candidates is None else _names(candidates))
    if snapshot is not None:
        _check_snapshot(snapshot)
    from pipelines.snapshot import latest_snapshot

    settings = _settings()
    path = snapshot or latest_snapshot(settings.home / "snapshots")
    if path is None:
        raise _fail(FileNotFoundError("no snapshot yet: run `creditx pipeline ingest` first"))
    try:
        params = TrainParams(
            snapshot=path,
            tracking=settings.tracking(fleet),
            candidates=names,
            shard_size=shard_size,
            promote=promote,
        )
        with flow_progress(f"starting the train flow on {path.name}"):
            from pipelines.flows import task_runner, train_flow

            flow = train_flow.with_options(
                task_runner=task_runner(runner, dask_address, dask_workers)
            )
            state = flow(params, return_state=True)
        outcome = cast("TrainOutcome", state.result())
    except PipelineError as exc:
        raise _fail(exc) from exc
    _print_training(state, outcome)


def _print_training(state: State, outcome: TrainOutcome) -> None:
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
    fleet: str = FLEET,
    margin: float = typer.Option(0.02, help="relative MASE improvement required"),
) -> None:
    """Gate a registered version against the champion; move the alias if it passes."""
    from pipelines.errors import PipelineError

    settings = _settings()
    from pipelines.params import PromoteParams

    try:
        with flow_progress("starting the promote flow"):
            from pipelines.flows import promote_flow

            decision = promote_flow(
                PromoteParams(tracking=settings.tracking(fleet), version=version, margin=margin)
            )
    except PipelineError as exc:
        raise _fail(exc) from exc
    typer.echo(decision.reason)


@pipeline_app.command("predict")
def predict(fleet: str = FLEET) -> None:
    """Write the champion's forecasts of every instance and horizon for the API."""
    from pipelines.errors import PipelineError

    settings = _settings()
    from pipelines.params import PredictParams

    params = PredictParams(
        tracking=settings.tracking(fleet),
        output_dir=settings.predictions_dir,
        snapshots_dir=settings.home / "snapshots",
    )
    try:
        with flow_progress("starting the predict flow"):
            from pipelines.flows import predict_flow

            written = predict_flow(params)
        typer.echo(str(written))
    except PipelineError as exc:
        raise _fail(exc) from exc


@pipeline_app.command("evaluate")
def evaluate(fleet: str = FLEET) -> None:
    """Score the served champion on the newest snapshot and log it to MLflow."""
    from pipelines.errors import PipelineError

    settings = _settings()
    from pipelines.params import EvaluateParams

    params = EvaluateParams(
        tracking=settings.tracking(fleet), snapshots_dir=settings.home / "snapshots"
    )
    try:
        with flow_progress("starting the evaluate flow"):
            from pipelines.flows import evaluate_flow

            metrics = evaluate_flow(params)
    except PipelineError as exc:
        raise _fail(exc) from exc
    typer.echo(f"MASE {metrics['mase']:.4f}, coverage90 {metrics['coverage90']:.3f}")


def schedule(
    fleet: str = FLEET,
    source: Path | None = SOURCE,
    instances: int = INSTANCES,
    days: float = DAYS,
    seed: int = SEED,
    api_url: str | None = typer.Option(
        None,
        help="API the hourly market round calls; CREDITX_API_URL, else where `creditx serve` "
        "listens",
    ),
) -> None:
    """Serve the flows on cron: telemetry every 5 minutes, predict hourly, train daily.

    The market round runs hourly at minute 10, after predict, through the API (start
    `creditx serve`); evaluate runs weekly. The telemetry flow books the files dropped
    in CREDITX_HOME/telemetry/inbox. The market round's administrator token comes from
    CREDITX_ADMIN_TOKEN or, without it, from CREDITX_HOME/secrets/admin.token (mode
    0600), issued on the first schedule. Needs a Prefect server: `creditx prefect-ui`
    (or CREDITX_PREFECT_API_URL), whose UI shows the deployments and their runs and
    can start one now.
    """
    from pipelines.errors import StoreUnavailableError
    from serving.settings import get_settings

    settings = get_settings()
    # a bad --api-url is told in a second, before the Prefect server is looked for
    spec = _schedule_spec(
        settings, fleet, _ingest(settings, source, instances, days, seed), api_url
    )
    config = settings.orchestration_config()
    local = config.apply()
    if local is None and settings.prefect_api_url is None:
        raise StoreUnavailableError(
            "Prefect",
            config.local_url,
            "start `creditx prefect-ui` in another terminal first; the schedule runs there",
        )
    from pipelines.schedule import serve_command
    from pipelines.servers import run_supervised

    if ADMIN_TOKEN_ENV not in os.environ and ensure_admin_token_file(settings):
        typer.echo(f"issued the market round's administrator token: {settings.admin_token_file}")
    # The runner and its flow runs in a session of their own: a terminal's Ctrl-C
    # reaches this process only, which asks the runner to stop them in order.
    raise typer.Exit(run_supervised(serve_command(spec)))


#: The environment variable the ``market-round`` flow reads its administrator token from.
ADMIN_TOKEN_ENV = "CREDITX_ADMIN_TOKEN"


def ensure_admin_token_file(settings: Settings, name: str = "admin") -> bool:
    """Issue an administrator token into ``settings.admin_token_file`` unless it exists.

    The file is created with mode 0600 in a directory of mode 0700; only the token's
    SHA-256 is stored in the ledger's database. Return whether a token was issued.
    """
    from serving.tokens import TokenKind

    path = settings.admin_token_file
    if path.exists():
        return False
    token = issue_token(settings, TokenKind.ADMIN, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return True


def issue_token(settings: Settings, kind: TokenKind, subject: str) -> str:
    """Issue a token of ``kind`` for ``subject`` in the settings' store and return it."""
    from market.clock import system_clock
    from market.ledger import create_store_engine
    from serving.market_service import MarketService
    from serving.tokens import TokenStore

    settings.home.mkdir(parents=True, exist_ok=True)
    market = MarketService(
        create_store_engine(settings.ledger_url), system_clock, settings.tiers_config
    )
    try:
        return TokenStore(market.engine, system_clock).issue(kind, subject).token
    finally:
        market.close()


def _schedule_spec(
    settings: Settings, fleet: str, ingest_params: IngestParams, api_url: str | None = None
) -> ScheduleSpec:
    from pipelines.params import MarketRoundParams, TelemetryParams
    from pipelines.schedule import ScheduleSpec

    return ScheduleSpec(
        tracking=settings.tracking(fleet),
        ingest=ingest_params,
        home=settings.home,
        predictions_dir=settings.predictions_dir,
        telemetry=TelemetryParams(
            ledger_url=settings.ledger_url,
            telemetry_dir=settings.telemetry_dir,
            allowances_path=settings.allowances_path,
            tiers_config=settings.tiers_config,
            late_window_minutes=settings.late_window_minutes,
        ),
        market_round=MarketRoundParams(
            api_url=api_url or settings.base_url,
            token_env=ADMIN_TOKEN_ENV,
            token_file=settings.admin_token_file,
        ),
    )


def prefect_ui() -> None:
    """Run the local Prefect server and its UI; pipeline commands run their flows on it.

    Its state lives under CREDITX_HOME; Ctrl-C or SIGTERM stops it and its workers.
    """
    from pipelines.config import LOCAL_PREFECT_HOST
    from pipelines.errors import StoreUnavailableError
    from pipelines.servers import port_in_use, run_ui_server
    from serving.settings import get_settings

    settings = get_settings()
    config = settings.orchestration_config()
    base = f"http://{LOCAL_PREFECT_HOST}:{config.local_port}"
    if port_in_use(LOCAL_PREFECT_HOST, config.local_port):
        raise StoreUnavailableError("Prefect", base, "the port is in use; is it running already?")
    config.prefect_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **config.server_environment()}
    env.pop("PREFECT_API_URL", None)
    typer.echo(f"starting Prefect at {base} (state in {config.prefect_home}) ...")
    run_ui_server(
        "Prefect",
        prefect_server_command(LOCAL_PREFECT_HOST, config.local_port),
        f"{base}/api/health",
        env=env,
        ready=lambda: typer.echo(
            f"Prefect UI: {base}  (pipeline commands now run their flows here; Ctrl-C stops it)"
        ),
    )


def mlflow_ui(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(5000, help="Port to listen on."),
    fleet: str = FLEET,
) -> None:
    """Open the MLflow UI on the configured store, at the fleet's training runs.

    Ctrl-C or SIGTERM stops it and its workers.
    """
    from pipelines.config import check_tracking_store
    from pipelines.errors import StoreUnavailableError
    from pipelines.servers import port_in_use, run_ui_server
    from serving.settings import get_settings

    settings = get_settings()
    check_tracking_store(settings.tracking_uri)
    base = f"http://{host}:{port}"
    if port_in_use(host, port):
        raise StoreUnavailableError("MLflow", base, "the port is in use; choose --port")
    experiment = settings.tracking(fleet).experiment
    typer.echo(f"starting the MLflow UI at {base} ...")
    code = run_ui_server(
        "MLflow",
        mlflow_ui_command(settings, host, port),
        f"{base}/health",
        env={**os.environ, **MLFLOW_UI_ENVIRONMENT},
        ready=lambda: typer.echo(
            f"MLflow UI: {_experiment_url(base, experiment)}  (Ctrl-C stops it)"
        ),
    )
    raise typer.Exit(code)
