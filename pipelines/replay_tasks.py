"""The replay flow's outcome, under the name :mod:`pipelines.demo` reads it by.

The replay's tasks are :mod:`pipelines.tasks.replay`.
"""

from pipelines.tasks.replay import ReplayOutcome

__all__ = ["ReplayOutcome"]
