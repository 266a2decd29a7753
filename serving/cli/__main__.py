"""``python -m serving.cli``: the ``creditx`` command line."""

from serving.cli.app import app

app()
