"""``creditx bench AREA``: one command per benchmark area.

Each area module (``benchmarks/<area>.py``) exposes ``register(bench_app)`` adding a
command named after its area with a ``--json OUT`` option.
"""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(help="Run a benchmark area; print its figures and write them as JSON.")

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
)


def register(app: typer.Typer) -> None:
    for area in AREAS:
        importlib.import_module(f"benchmarks.{area}").register(bench_app)
    app.add_typer(bench_app, name="bench")
