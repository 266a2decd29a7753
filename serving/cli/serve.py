"""``creditx serve`` and ``creditx tokens``: run the API and manage its bearer tokens."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from serving.market_service import MarketService
    from serving.tokens import TokenStore

tokens_app = typer.Typer(
    help="Issue, list and revoke the API's bearer tokens.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``tokens`` to the root ``creditx`` app."""
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind; CREDITX_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind; CREDITX_API_PORT.")] = None,
    follow_champion: Annotated[
        bool, typer.Option(help="Report where the MLflow champion alias points (stale forecasts).")
    ] = True,
    access_log: Annotated[bool, typer.Option(help="Log every request on stdout.")] = True,
) -> None:
    """Serve the API (uvicorn, one worker) on the stores the CREDITX_* settings name.

    Prints the URL once it answers and when the forecasts are loaded; stops cleanly on
    Ctrl-C or SIGTERM.
    """
    import threading

    import uvicorn

    from serving.main import create_app
    from serving.settings import Settings

    settings = Settings()
    app = create_app(settings, settings.market_clock(), champion=True if follow_champion else None)
    config = uvicorn.Config(
        app,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=1,
        access_log=access_log,
        log_level=None,  # the levels of _log_config hold
        log_config=_log_config(),
    )
    server = uvicorn.Server(config)
    announcer = threading.Thread(
        target=_announce, args=(server, app.state.services.forecasts), daemon=True
    )
    announcer.start()
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again
    # with the handler it found: this one, so the command ends with status 0.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo("creditx API stopped")


class _Stopped(Exception):
    pass


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped


def _log_config() -> dict[str, Any]:
    # Requests as one short line each; uvicorn's own start-up chatter stays quiet,
    # since _announce says where the API is and when it is ready.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s',
                "datefmt": "%H:%M:%S",
            },
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
            },
        },
        "handlers": {
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }


def _announce(server: Any, forecasts: Any) -> None:
    import time

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    config = server.config
    url = f"http://{config.host}:{config.port}"
    typer.echo(f"creditx API listening on {url}  (docs {url}/docs; Ctrl-C stops it)")
    if forecasts.loading:
        typer.echo("forecasts: loading ...")
    # The batch predictions serve as soon as they are read; following the MLflow
    # champion may take a while longer.
    while forecasts.current is None and not forecasts.loaded.wait(0.1):
        pass
    status = forecasts.status()
    if status["instances"]:
        typer.echo(
            f"forecasts: ready, {status['instances']} instances from "
            f"{status['model_name']} v{status['model_version']}"
        )
    else:
        typer.echo("forecasts: none yet; run `creditx pipeline train` then `pipeline predict`")


def _token_store() -> tuple[MarketService, TokenStore]:
    from market.clock import system_clock
    from market.ledger import create_store_engine
    from serving.market_service import MarketService
    from serving.settings import Settings
    from serving.tokens import TokenStore

    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    market = MarketService(
        create_store_engine(settings.ledger_url), system_clock, settings.tiers_config
    )
    return market, TokenStore(market.engine, system_clock)


@tokens_app.command("issue")
def issue(
    instance: Annotated[
        str | None, typer.Option("--instance", help="issue an agent token for this instance")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="issue an administrator token")] = False,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="agent (with --instance), admin, or collector: posts telemetry, nothing else",
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(help="the administrator's (audited) or the collector's name")
    ] = "",
) -> None:
    """Issue a token and print it once; only its SHA-256 is stored."""
    kind = _role(role, instance, admin)
    from market.errors import InstanceNotFound
    from serving.tokens import TokenKind

    market, store = _token_store()
    try:
        if kind == "agent":
            assert instance is not None
            try:
                market.tiers.instance(instance)
            except InstanceNotFound as exc:
                raise typer.BadParameter(str(exc), param_hint="--instance") from exc
            issued = store.issue(TokenKind.AGENT, instance)
        elif kind == "collector":
            issued = store.issue(TokenKind.COLLECTOR, name or "collector")
        else:
            name = name or "admin"
            if name not in market.tiers.exchange.administrators:
                typer.echo(
                    f"warning: {name!r} is not among the CEM's administrators; "
                    "its rate changes and swaps will be refused",
                    err=True,
                )
            issued = store.issue(TokenKind.ADMIN, name)
    finally:
        market.close()
    typer.echo(
        f"token_id {issued.record.token_id} ({issued.record.kind.value} {issued.record.subject})",
        err=True,
    )
    typer.echo(issued.token)


def _role(role: str | None, instance: str | None, admin: bool) -> str:
    # one subject: --instance ID (an agent), --admin, or --role admin|collector|agent
    if role is not None and role not in ("agent", "admin", "collector"):
        raise typer.BadParameter(
            f"{role!r} is not a role: agent, admin or collector", param_hint="--role"
        )
    kinds = {k for k in (role, "admin" if admin else None) if k is not None}
    if instance is not None:
        kinds.add("agent")
    if len(kinds) != 1:
        raise typer.BadParameter(
            "give exactly one of --admin, --instance ID or --role admin|collector"
        )
    kind = kinds.pop()
    if kind == "agent" and instance is None:
        raise typer.BadParameter("an agent's token needs --instance ID", param_hint="--role")
    return kind


@tokens_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="the token's id")]) -> None:
    """Revoke a token by its id."""
    market, store = _token_store()
    try:
        record = store.revoke(token_id)
    finally:
        market.close()
    if record is None:
        raise typer.BadParameter(f"no token with id {token_id!r}", param_hint="TOKEN_ID")
    typer.echo(f"revoked {record.token_id} ({record.kind.value} {record.subject})")


@tokens_app.command("list")
def list_tokens() -> None:
    """List every token's id, kind, subject and state (never the secret)."""
    market, store = _token_store()
    try:
        records = store.list()
    finally:
        market.close()
    for r in records:
        state = "revoked" if r.revoked_at else "active"
        typer.echo(f"{r.token_id}  {r.kind.value:9}  {r.subject}  {state}")
