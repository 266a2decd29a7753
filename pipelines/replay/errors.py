"""Errors of the fleet replay.

::

    PipelineError (pipelines.errors)
    └── ReplayError
        ├── ScenarioError      a scenario file or value is invalid (``field``, ``value``)
        ├── TraceError         the telemetry cannot be replayed (``reason``)
        ├── ReportError        a document is not a replay document (``reason``)
        └── ConservationError  credits appeared or vanished (``policy``, ``step``,
                               ``asset``, ``expected``, ``actual``)
"""

from __future__ import annotations

from pipelines.errors import PipelineError


class ReplayError(PipelineError):
    """Root of every error the fleet replay raises."""


class ScenarioError(ReplayError):
    """A scenario value is invalid; nothing was run."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"scenario {field}={value!r}: {why}")


class TraceError(ReplayError):
    """The telemetry frame cannot be replayed; nothing was run."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot replay this telemetry: {reason}")


class ReportError(ReplayError):
    """A document is not a replay document; nothing was written."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot report on this document: {reason}")


class ConservationError(ReplayError):
    """Credits appeared or vanished: the books and the replay's state disagree."""

    def __init__(self, policy: str, step: int, asset: str, expected: int, actual: int) -> None:
        self.policy = policy
        self.step = step
        self.asset = asset
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"policy {policy!r}, step {step}: {asset} should total {expected} "
            f"milli-credits but totals {actual}"
        )
