"""``creditx bench AREA``: one command per benchmark area.

Each area module (``benchmarks/<area>.py``) exposes ``register(bench_app)`` adding a
command named after its area with a ``--json OUT`` option. An area's module is
imported only when its command runs or is listed, so ``creditx --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from serving.helptext import readable_options

# Area modules in the order `creditx bench --help` lists them.
AREAS: tuple[str, ...] = (
    "forecast",
    "market",
    "ledger",
    "data",
    "pipelines",
    "replay",
    "agents",
    "serving",
    "crash",
    "live",
)


class _Areas(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(AREAS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in AREAS:
            return None
        if cmd_name not in self.commands:
            area = typer.Typer(add_completion=False)
            importlib.import_module(f"benchmarks.{cmd_name}").register(area)
            command = typer.main.get_command(area)
            readable_options(command)
            self.commands[cmd_name] = command
        return self.commands[cmd_name]


bench_app = typer.Typer(
    cls=_Areas,
    help="Run a benchmark area; print its figures and write them as JSON.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``creditx bench`` to the root app; its areas load on first use."""
    app.add_typer(bench_app, name="bench")
