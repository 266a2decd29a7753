"""The ``creditx`` command line.

Each package contributes its commands through a ``register(app)`` function in its own
``cli.py``; this module only assembles them, so no business rule lives here. Heavy
libraries are imported inside the commands to keep ``creditx --help`` fast.
"""

from __future__ import annotations

import typer

from benchmarks import cli as bench_cli
from data import cli as data_cli
from market import agents_cli
from market import cli as market_cli
from models import cli as models_cli
from pipelines import cli as pipelines_cli
from pipelines import replay_cli
from serving import commands as serving_commands

app = typer.Typer(
    name="creditx",
    help="Forecast the CPU demand of a fleet and run a burstable-credit exchange on it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for _register in (
    data_cli.register,
    market_cli.register,
    agents_cli.register,
    models_cli.register,
    pipelines_cli.register,
    replay_cli.register,
    serving_commands.register,
    bench_cli.register,
):
    _register(app)


if __name__ == "__main__":
    app()
