"""The ``creditx`` command line.

Each package contributes its commands through a ``register(app)`` function in its own
``cli.py``; this module only assembles them, so no business rule lives here. Heavy
libraries are imported inside the commands to keep ``creditx --help`` fast.

A user's mistake (a missing or malformed file, a bad option, an unknown id, a refused
operation) ends the command with ``error: ...`` on stderr and exit code 2, without a
traceback unless ``--debug`` is given; an unexpected error still shows its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from benchmarks import cli as bench_cli
from serving.cli import agents, data, exchange, forecast, pipeline, replay, serve, telemetry
from serving.helptext import readable_options

#: Exit code of every user error, as click uses for a bad option.
USAGE_ERROR = 2

# The roots of every package's exception tree, named rather than imported so that
# catching them costs no import; the files a user names fail with these OSErrors.
_USER_ERRORS = frozenset(
    {
        "data.errors.TelemetryError",
        "models.errors.ForecastError",
        "market.errors.MarketError",
        "market.ledger._errors.LedgerError",
        "pipelines.errors.PipelineError",
        "serving.errors.ApiError",
        "pydantic_core._pydantic_core.ValidationError",
        "builtins.FileNotFoundError",
        "builtins.IsADirectoryError",
        "builtins.NotADirectoryError",
        "builtins.PermissionError",
    }
)

# Commands listed together in `creditx --help`, in the order a newcomer meets them.
_PANELS: dict[str, str] = {
    "demo": "Start here",
    "data": "Telemetry and forecasts",
    "forecast": "Telemetry and forecasts",
    "pipeline": "Pipelines and their UIs",
    "schedule": "Pipelines and their UIs",
    "prefect-ui": "Pipelines and their UIs",
    "mlflow-ui": "Pipelines and their UIs",
    "serve": "The API",
    "tokens": "The API",
    "telemetry": "The API",
    "store": "The exchange",
    "tiers": "The exchange",
    "pools": "The exchange",
    "balances": "The exchange",
    "accrue": "The exchange",
    "funds": "The exchange",
    "trade": "The exchange",
    "swap": "The exchange",
    "rates": "The exchange",
    "log": "The exchange",
    "ledger": "The exchange",
    "agents": "The exchange",
    "cem": "The exchange",
    "replay": "The fleet replay",
    "report": "The fleet replay",
    "bench": "Benchmarks",
}


def is_user_error(exc: BaseException) -> bool:
    """Return whether ``exc`` is a user's mistake rather than a defect of the program."""
    return any(f"{c.__module__}.{c.__qualname__}" in _USER_ERRORS for c in type(exc).__mro__)


def error_line(exc: BaseException) -> str:
    """Return the one or two lines that tell the user what went wrong."""
    lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    if isinstance(exc, OSError) and exc.filename is not None:
        lines = [f"{exc.strerror or type(exc).__name__}: {exc.filename}"]
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        # pydantic: the field and what is wrong with it, not its "1 validation error" header.
        lines = [
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
    return "\n".join(lines[:2])


class CommandLine(TyperGroup):
    """The root group: commands in panels, readable options, user errors as one line."""

    def main(self, args: Any = None, *rest: Any, **options: Any) -> Any:
        # `--debug` works wherever it is typed, not only before the command.
        argv = list(sys.argv[1:] if args is None else args)
        if "--debug" in argv[1:]:
            argv = ["--debug", *(a for a in argv if a != "--debug")]
        return super().main(argv, *rest, **options)

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        readable_options(self)
        for name, command in self.commands.items():
            command.rich_help_panel = _PANELS.get(name)  # type: ignore[attr-defined]

    def list_commands(self, ctx: Any) -> list[str]:
        # Panels in the order a newcomer meets them, then each panel's commands.
        order = list(dict.fromkeys(_PANELS.values()))
        known = [n for n in _PANELS if n in self.commands]
        known.sort(key=lambda n: order.index(_PANELS[n]))
        return known + [n for n in self.commands if n not in _PANELS]

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.Exit as stop:
            # A command that printed a user error itself: --debug still shows its cause.
            cause = stop.__cause__ or stop.__context__
            if ctx.meta.get("creditx.debug") and stop.exit_code == USAGE_ERROR and cause:
                raise cause from None
            raise
        except Exception as exc:
            if not is_user_error(exc) or ctx.meta.get("creditx.debug"):
                raise
            typer.secho(f"error: {error_line(exc)}", err=True, fg=typer.colors.RED)
            raise typer.Exit(USAGE_ERROR) from exc


app = typer.Typer(
    name="creditx",
    help="Forecast the CPU demand of a fleet and run a burstable-credit exchange on it.",
    cls=CommandLine,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # docstrings are wrapped prose: join their lines, keep their paragraphs
    rich_markup_mode="markdown",
)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of any error."),
) -> None:
    ctx.meta["creditx.debug"] = debug


for _register in (
    data.register,
    exchange.register,
    agents.register,
    forecast.register,
    pipeline.register,
    replay.register,
    serve.register,
    telemetry.register,
    bench_cli.register,
):
    _register(app)
