"""``creditx telemetry``: post readings to the API, book the drop directory, read allowances.

``post FILE`` sends a file of 5-minute readings (Parquet or CSV, in the API's columns
or the frame contract) to ``POST /v1/telemetry`` of a running API with a collector's
(or an administrator's) token; ``book`` runs the ``telemetry`` flow once on the
drop directory ``<home>/telemetry/inbox``; ``allowance INSTANCE`` reads what an
instance may use next from the store. A refused batch or an unknown instance ends in
one ``error:`` line and exit code 2, having booked nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from serving.settings import Settings

telemetry_app = typer.Typer(
    help="Telemetry in (5-minute readings), allowances out.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``creditx telemetry`` to the root app."""
    app.add_typer(telemetry_app, name="telemetry")


def _settings() -> Settings:
    from serving.settings import get_settings

    return get_settings()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _credits(milli: int) -> str:
    whole, part = divmod(abs(milli), 1000)
    return f"{'-' if milli < 0 else ''}{whole:,}.{part:03d}"


@telemetry_app.command("post")
def post(
    file: Annotated[Path, typer.Argument(help="Parquet or CSV of readings")],
    api: Annotated[
        str | None,
        typer.Option(help="the API's base URL; default CREDITX_API_HOST:CREDITX_API_PORT"),
    ] = None,
    token: Annotated[
        str,
        typer.Option(envvar="CREDITX_COLLECTOR_TOKEN", help="a collector's or admin's token"),
    ] = "",
) -> None:
    """Post a file of 5-minute readings to the API; print what was booked."""
    import io

    import httpx

    from data.readings import ReadingBatch

    if not token:
        raise _fail(
            "give --token or set CREDITX_COLLECTOR_TOKEN (`creditx tokens issue --role collector`)"
        )
    batch = ReadingBatch.read(file)
    frame = batch.to_frame().rename(
        columns={"unique_id": "instance_id", "ds": "interval_start", "y": "cpu_percent"}
    )
    body = io.BytesIO()
    frame.to_parquet(body, index=False)
    settings = _settings()
    base = api or f"http://{settings.api_host}:{settings.api_port}"
    try:
        response = httpx.post(
            f"{base.rstrip('/')}/v1/telemetry",
            content=body.getvalue(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/vnd.apache.parquet",
            },
            timeout=120,
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the API at {base}: {exc}") from exc
    document: dict[str, Any] = response.json() if response.content else {}
    if response.status_code != 200:
        detail = document.get("detail", response.text)
        raise _fail(f"{response.status_code} {document.get('title', '')}: {detail}")
    _summary(document)


def _summary(document: dict[str, Any]) -> None:
    typer.echo(
        f"{document['received']} readings: {document['accepted']} accepted, "
        f"{len(document['duplicates'])} duplicates, {len(document['refused'])} refused"
    )
    for note in document["refused"]:
        typer.echo(f"  refused {note['instance_id']} {note['interval_start']}: {note['reason']}")
    for booked in document["booked"]:
        typer.echo(
            f"  booked {booked['interval_start']}: {booked['instances']} instances "
            f"({booked['missing']} as zero usage), throttled {_credits(booked['throttled'])}"
        )


@telemetry_app.command("book")
def book(
    now: Annotated[
        datetime | None,
        typer.Option(help="the time of the run (UTC); default now", formats=["%Y-%m-%dT%H:%M:%S"]),
    ] = None,
) -> None:
    """Book the files in CREDITX_HOME/telemetry/inbox and write the allowances snapshot."""
    from datetime import UTC

    from pipelines.params import TelemetryParams

    settings = _settings()
    settings.orchestration_config().apply()
    params = TelemetryParams(
        ledger_url=settings.ledger_url,
        telemetry_dir=settings.telemetry_dir,
        allowances_path=settings.allowances_path,
        tiers_config=settings.tiers_config,
        late_window_minutes=settings.late_window_minutes,
        now=None if now is None else now.replace(tzinfo=UTC),
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    from pipelines.telemetry import telemetry_flow

    run = telemetry_flow(params)
    for outcome in run.files:
        where = "done" if outcome.booked else "rejected"
        typer.echo(f"{outcome.path.name}: {where}; {outcome.reason or _counts(outcome)}")
    typer.echo(
        f"{len(run.closed)} intervals closed; {run.allowances} allowances written to {run.snapshot}"
    )


def _counts(outcome: Any) -> str:
    return (
        f"{outcome.accepted} accepted, {outcome.duplicates} duplicates, "
        f"{outcome.refused} refused, {outcome.intervals} intervals booked"
    )


@telemetry_app.command("allowance")
def allowance(instance: Annotated[str, typer.Argument(help="the instance id")]) -> None:
    """Print what an instance may use next, from the store."""
    from market.cem.live import LiveAccrual
    from market.cem.registry import Registry
    from market.clock import system_clock
    from market.ledger import Ledger, SqlStore
    from market.migrations import current

    settings = _settings()
    if current(settings.ledger_url) is None:
        raise _fail(f"no creditx store at {settings.ledger_url}: run `creditx store init`")
    store = SqlStore(settings.ledger_url)
    try:
        live = LiveAccrual(Ledger(store, system_clock), Registry(store.engine).load())
        found = live.allowance(instance)
    finally:
        store.close()
    if found is None:
        raise _fail(f"instance {instance!r} has no booked interval yet")
    state = "throttled to baseline" if found.throttled else "may burst"
    typer.echo(
        f"{found.instance_id} ({found.tier}) after {found.interval_start.isoformat()}: "
        f"{found.vcpu_minutes} vCPU-minutes, {state} (cursor {found.seq})"
    )
