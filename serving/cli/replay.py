"""``creditx replay``, ``creditx report`` and ``creditx demo``.

``replay`` runs every policy on a trace file and writes the figures as JSON;
``report`` turns that JSON into one HTML page and prints the summary table; ``demo``
runs the whole product on a synthetic fleet. Long stages show progress bars.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from serving.cli.progress import progress_bars

_DEFAULT_JSON = Path(".creditx/replay/replay.json")
_DEFAULT_HTML = Path(".creditx/replay/report.html")


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from pipelines.report import headers, summary_rows

    table = Table(title="fleet replay")
    for i, title in enumerate(headers()):
        table.add_column(title, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in summary_rows(document):
        table.add_row(*row)
    # Nine columns need more than a default 80-column terminal to stay readable.
    Console(width=max(Console().width, 150)).print(table)
    for key, value in (document.get("targets") or {}).items():
        shown = "n/a" if value is None else f"{100 * value:.1f} %"
        typer.echo(f"{key.replace('_', ' ')}: {shown}")


def _tracked_replay(
    data: Path, scenario: Path | None, policies: str, json_out: Path, fleet: str
) -> None:
    """``creditx replay --track``: the replay flow, its run in the fleet's replay experiment."""
    from pipelines.errors import PipelineError
    from pipelines.replay import ReplayError
    from serving.settings import get_settings

    settings = get_settings()
    settings.orchestration_config().apply()
    from data.errors import TelemetryError
    from pipelines.flows import replay_flow
    from pipelines.params import ReplayParams
    from pipelines.tasks.replay import experiment_name

    tracking = settings.tracking(fleet)
    chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
    try:
        outcome = replay_flow(
            ReplayParams(
                source=data,
                scenario=None if scenario is None else str(scenario),
                policies=chosen,
                out_dir=json_out.parent,
                tracking=tracking,
            )
        )
    except (ReplayError, TelemetryError, PipelineError) as exc:
        raise _fail(exc) from exc
    for note in outcome.document.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    if outcome.replay_json != json_out:
        json_out.write_text(outcome.replay_json.read_text())
    _print_table(outcome.document)
    typer.echo(f"figures written to {json_out}; report {outcome.report}")
    typer.echo(f"MLflow run {outcome.run_id} in experiment {experiment_name(tracking)}")


def replay_command(
    data: Path = typer.Option(..., help="telemetry file in a schema `data` reads"),
    scenario: Path | None = typer.Option(None, help="scenario TOML; the standard one without"),
    json_out: Path = typer.Option(_DEFAULT_JSON, "--json", help="where the figures go"),
    policies: str = typer.Option("", help="comma-separated policies; every policy without"),
    track: bool = typer.Option(
        False, "--track", help="run it as the replay flow and log it as an MLflow run"
    ),
    fleet: str = typer.Option("default", help="the fleet whose MLflow experiment it joins"),
) -> None:
    """Replay every policy on a trace and write the figures per policy as JSON."""
    from data.sources import check_source

    check_source(data)  # a bad file fails in a second, before the libraries load
    if track:
        _tracked_replay(data, scenario, policies, json_out, fleet)
        return
    from data.errors import TelemetryError
    from pipelines.replay import POLICIES, ReplayError, load_scenario, replay
    from pipelines.replay.trace import read_trace

    chosen = tuple(p.strip() for p in policies.split(",") if p.strip()) or POLICIES
    try:
        spec = load_scenario(scenario)
        frame, notes = read_trace(data)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        with progress_bars() as factory:
            run = replay(frame, spec, chosen, progress=factory)
    except (ReplayError, TelemetryError) as exc:
        raise _fail(exc) from exc
    document = run.document(source=str(data))
    document["notes"] = notes
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(document, indent=1))
    _print_table(document)
    typer.echo(f"figures written to {json_out}")


def report_command(
    json_in: Path = typer.Option(_DEFAULT_JSON, "--json", help="a `creditx replay` document"),
    out: Path = typer.Option(_DEFAULT_HTML, help="where the HTML page goes"),
) -> None:
    """Write the replay's HTML report and print its summary table."""
    try:
        document = json.loads(json_in.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        typer.secho(f"error: cannot read {json_in}: {reason}", err=True, fg="red")
        raise typer.Exit(code=2) from exc
    from pipelines.replay import ReportError
    from pipelines.report import write_report

    try:
        write_report(document, out)
    except ReportError as exc:
        raise _fail(exc) from exc
    _print_table(document)
    typer.echo(f"report written to {out}")


def demo_command(
    instances: int = typer.Option(48, min=4, help="instances of the synthetic fleet"),
    days: float = typer.Option(14.0, min=3.0, help="days of the synthetic fleet"),
    seed: int = typer.Option(0, help="seed of the synthetic fleet"),
    live_day: bool = typer.Option(
        True, help="end with a day of the fleet through the live loop against the API"
    ),
    live_speed: float = typer.Option(
        600.0, min=1.0, help="how many times faster than life the live day's API clock runs"
    ),
    live_hours: int = typer.Option(
        24, min=1, max=24, help="hours of the fleet's last day the live day plays"
    ),
) -> None:
    """Run the whole product on a synthetic fleet: train, promote, replay, report, and
    a day of the fleet through the live API (telemetry, hourly market rounds)."""
    from pipelines.demo import run_demo
    from pipelines.errors import PipelineError
    from serving.cli.live_day import print_live_day, run_demo_live_day
    from serving.settings import get_settings

    settings = get_settings()
    try:
        with progress_bars("starting the demo"):
            outcome = run_demo(
                settings.workspace(), instances=instances, days=days, seed=seed, say=typer.echo
            )
    except PipelineError as exc:
        raise _fail(exc) from exc
    document = json.loads(outcome.replay_json.read_text())
    _print_table(document)
    live = None
    if live_day:
        try:
            live = run_demo_live_day(settings, outcome, live_speed, live_hours)
        except PipelineError as exc:
            raise _fail(exc) from exc
    typer.echo("")
    typer.echo(f"Report:     {outcome.report.resolve()}")
    typer.echo(f"            open it in a browser: file://{outcome.report.resolve()}")
    typer.echo(f"Figures:    {outcome.replay_json.resolve()}")
    home = f"CREDITX_HOME={settings.home.resolve()} .venv/bin/creditx"
    base = f"http://{settings.api_host}:{settings.api_port}"
    instance = (
        str(document["forecast_samples"][0]["instance"])
        if document.get("forecast_samples")
        else "vm-000000"
    )
    typer.echo(f"MLflow UI:  {home} mlflow-ui --fleet demo   (prints the runs' URL)")
    typer.echo(f"Prefect UI: {home} prefect-ui   (flows then run there)")
    if live is not None:
        print_live_day(settings, live)
    typer.echo(f"API:        {home} serve   (then {base}/docs)")
    typer.echo(f"            TOKEN=$({home} tokens issue --instance {instance})")
    typer.echo(
        f'            curl -H "Authorization: Bearer $TOKEN" '
        f'"{base}/v1/instances/{instance}/forecast?horizon=day"'
    )


def register(app: typer.Typer) -> None:
    """Add the replay, report and demo commands to the root ``creditx`` app."""
    app.command("replay")(replay_command)
    app.command("report")(report_command)
    app.command("demo")(demo_command)
