"""The local Prefect server ``creditx prefect-ui`` runs, with its scheduler working.

Prefect 3.8's scheduler inserts the runs it schedules in one bulk INSERT whose rows
carry their first state under ``state``, a hybrid property of Prefect's ORM models.
SQLAlchemy 2.0 ignored that key; SQLAlchemy 2.1 refuses a hybrid property in a bulk
INSERT unless it has a ``bulk_dml`` hook, so no scheduled run is ever created and the
server logs a traceback every few seconds. The scheduler writes those states itself
right after the INSERT, so the hook added here drops the key, as 2.0 did.

``python -m pipelines.prefect_server ARGS`` runs ``prefect server start ARGS`` in this
process with the hook in place.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any


def _state_is_written_apart(_cls: type, row: MutableMapping[str, Any], _value: object) -> None:
    row.pop("state", None)


def add_bulk_insert_hook() -> bool:
    """Give the ``state`` hybrid of Prefect's flow-run model a bulk-INSERT hook.

    Returns whether it was added: not when it has one already (a Prefect that fixed
    it, or a second call).
    """
    from prefect.server.database import orm_models

    state = orm_models.FlowRun.__dict__.get("state")
    if state is None or getattr(state, "bulk_dml_setter", False) is not None:
        return False
    state.bulk_dml_setter = _state_is_written_apart
    return True


def main(argv: list[str]) -> None:
    """Run ``prefect server start`` with ``argv`` after adding the hook."""
    add_bulk_insert_hook()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's command line reads them
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
