"""The fleet replay: every policy side by side on one fleet, with exact credit books.

:func:`prepare_fleet` turns telemetry into a :class:`ReplayFleet` under a
:class:`Scenario` (:func:`load_scenario`); :func:`run_policy` replays one of
:data:`POLICIES` and returns a :class:`PolicyResult`. Errors derive from
:class:`ReplayError` (tree in :mod:`pipelines.replay.errors`).
"""

from pipelines.replay.engine import POLICIES, PolicyResult, run_policy
from pipelines.replay.errors import (
    ConservationError,
    ReplayError,
    ReportError,
    ScenarioError,
    TraceError,
)
from pipelines.replay.fleet import ReplayFleet, prepare_fleet
from pipelines.replay.run import ReplayRun, replay
from pipelines.replay.scenario import Scenario, load_scenario

__all__ = [
    "POLICIES",
    "ConservationError",
    "PolicyResult",
    "ReplayError",
    "ReplayFleet",
    "ReplayRun",
    "ReportError",
    "Scenario",
    "ScenarioError",
    "TraceError",
    "load_scenario",
    "prepare_fleet",
    "replay",
    "run_policy",
]
