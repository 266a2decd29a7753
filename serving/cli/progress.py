"""Progress bars on stderr for the flows a command runs (:mod:`pipelines.progress`).

:func:`flow_progress` shows what the command is starting until the flow opens its
first stage, then one bar per stage: training counts the fleet's instances done as
its shards' steps finish and says how many shards are done; the other flows count
their steps. Results stay on stdout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: ``factory(name, total)`` opens a bar and returns the function that advances it.
BarFactory = Callable[[str, int], Callable[[int], None]]


class _Bars:
    # pipelines.progress.ProgressListener on a rich Progress: one task per stage.
    def __init__(self, bars: Any, starting: Any) -> None:
        self._bars = bars
        self._starting = starting
        self._tasks: dict[str, Any] = {}

    def begin(self, key: str, description: str, total: float) -> None:
        if self._starting is not None:
            self._bars.remove_task(self._starting)
            self._starting = None
        task = self._tasks.get(key)
        if task is None:
            self._tasks[key] = self._bars.add_task(description, total=total)
        else:
            self._bars.reset(task, total=total, description=description)

    def advance(self, key: str, units: float) -> None:
        self._bars.advance(self._tasks[key], units)

    def describe(self, key: str, description: str) -> None:
        self._bars.update(self._tasks[key], description=description)


@contextmanager
def progress_bars(
    starting: str | None = None,
) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Show the progress of the flows run in this block, on stderr, until it ends.

    ``starting`` (a spinner) says what begins until the first stage opens. Yields a
    factory of further bars, ``factory(name, total) -> advance``, for work run outside
    the flows (the replay's policies).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from pipelines import progress

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bars:
        spinner = None if starting is None else bars.add_task(starting, total=None)
        listener = _Bars(bars, spinner)

        def factory(name: str, total: int) -> Callable[[int], None]:
            listener.begin(name, name, total)
            return lambda units: listener.advance(name, units)

        with progress.listening(listener):
            yield factory


@contextmanager
def flow_progress(starting: str) -> Iterator[None]:
    """Show the progress of the flows run in this block; ``starting`` until they begin."""
    with progress_bars(starting):
        yield
