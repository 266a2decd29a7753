"""The ``creditx`` command line: every command, one module per command group.

``app`` assembles them (``serving.cli.app``); ``data``, ``forecast``, ``pipeline``,
``replay``, ``exchange``, ``agents`` and ``serve`` each register one group. The
commands compose the settings (``serving.settings``) into explicit parameters for
the layers below, and import what they need only when they run.
"""

from serving.cli.app import app

__all__ = ["app"]
