"""The ``creditx`` command line.

Each package contributes its commands through a ``register(app)`` function in its own
``cli.py``; this module only assembles them, so no business rule lives here. Heavy
libraries are imported inside the commands to keep ``creditx --help`` fast.
"""

from __future__ import annotations

import typer

from benchmarks import cli as bench_cli

app = typer.Typer(
    name="creditx",
    help="Forecast the CPU demand of a fleet and run a burstable-credit exchange on it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for _register in (bench_cli.register,):
    _register(app)


if __name__ == "__main__":
    app()
