"""How far a running flow has got, for the command that started it to show.

A flow opens a stage with :func:`begin` (a key, what it does, its total of units) and
reports work done with :func:`advance` and :func:`describe`, from any thread of the
process (tasks run on a thread pool). A command that shows progress installs a
:class:`ProgressListener` with :func:`listening` around the flow call; without one (a
scheduled run, a test, a task on a Dask worker) reporting costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressListener(Protocol):
    """What shows progress: one bar per stage, by key."""

    def begin(self, key: str, description: str, total: float) -> None:
        """Open the stage ``key`` with ``total`` units to do."""

    def advance(self, key: str, units: float) -> None:
        """Count ``units`` more of the stage ``key`` as done."""

    def describe(self, key: str, description: str) -> None:
        """Say anew what the stage ``key`` is doing."""


_lock = threading.Lock()
_listener: ProgressListener | None = None
_open: set[str] = set()


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Send the progress of the flows run in this block to ``listener``."""
    global _listener
    with _lock:
        previous, _listener = _listener, listener
        _open.clear()
    try:
        yield
    finally:
        with _lock:
            _listener = previous
            _open.clear()


def begin(key: str, description: str, total: float) -> None:
    """Open (or reopen) the stage ``key``: ``description``, ``total`` units to do."""
    with _lock:
        if _listener is None:
            return
        _open.add(key)
        _listener.begin(key, description, total)


def advance(key: str, units: float = 1.0) -> None:
    """Count ``units`` more of the stage ``key`` as done; nothing if it is not open."""
    with _lock:
        if _listener is not None and key in _open:
            _listener.advance(key, units)


def describe(key: str, description: str) -> None:
    """Say anew what the stage ``key`` is doing; nothing if it is not open."""
    with _lock:
        if _listener is not None and key in _open:
            _listener.describe(key, description)


def stages(prefix: str) -> Callable[[str, int], Callable[[int], None]]:
    """Return a factory of stages named ``prefix: name``, in the replay's progress shape.

    ``factory(name, total)`` opens a stage and returns the function that advances it:
    what :func:`pipelines.replay.run.replay` reports through.
    """

    def factory(name: str, total: int) -> Callable[[int], None]:
        key = f"{prefix}: {name}"
        begin(key, key, total)
        return lambda units: advance(key, units)

    return factory
