"""The FastAPI service and the ``creditx`` command line.

``create_app(settings, clock=...)`` builds the API; ``Settings`` configures it from
``CREDITX_*``. Both load lazily, so the command line starts without the web stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from serving.main import create_app

        return create_app
    if name == "Settings":
        from serving.settings import Settings

        return Settings
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
