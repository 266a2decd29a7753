"""The end-to-end demo: the whole product on a seeded synthetic fleet.

:func:`run_demo` generates a synthetic fleet, ingests it, runs the training flow
(tracked in MLflow) with the promotion gate, writes the champion's forecasts for the
API, replays every policy on the fleet and writes the HTML report. Every store lives
under the settings' working directory (``CREDITX_HOME``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from pipelines.config import OrchestrationConfig
    from pipelines.flows import TrainOutcome
    from pipelines.params import SyntheticFleet, TrackingParams
    from pipelines.tasks.replay import ReplayOutcome

FLEET = "demo"


@dataclass(frozen=True, slots=True)
class Workspace:
    """Every store the demo writes: MLflow, Prefect, the ledger and the served forecasts."""

    home: Path
    tracking: TrackingParams
    orchestration: OrchestrationConfig
    ledger_url: str
    tiers_config: Path | None
    predictions_dir: Path


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    """Where the demo left its results."""

    snapshot: Path
    model_version: str
    promoted: bool
    promotion_reason: str
    predictions: Path
    replay_json: Path
    report: Path
    summary: dict[str, dict[str, object]]
    fleet: SyntheticFleet
    instances: tuple[str, ...]


def run_demo(
    workspace: Workspace,
    *,
    instances: int = 48,
    days: float = 14.0,
    seed: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> DemoOutcome:
    """Run the whole product once on a synthetic fleet and return where it all went.

    Parameters
    ----------
    workspace
        Stores and working directory.
    instances, days, seed
        The synthetic fleet.
    say
        Called with one line per finished stage. The flows report their progress
        through :mod:`pipelines.progress`.

    Raises
    ------
    PipelineError
        If a flow fails (the stores cannot be reached, nothing could be fitted).
    ReplayError
        If the replay fails, a conservation check included.
    """
    from data.columns import DEFAULT_TIER
    from pipelines.params import IngestParams, SyntheticFleet
    from pipelines.registration import register_instances
    from pipelines.snapshot import read_snapshot

    workspace.orchestration.apply()
    from pipelines.flows import ingest_flow

    fleet = SyntheticFleet(instances=instances, days=days, seed=seed)
    snapshot = ingest_flow(IngestParams(synthetic=fleet, home=workspace.home))
    say(f"ingested {instances} instances x {days:g} days: {snapshot.path}")
    _, hourly = read_snapshot(snapshot.path)
    registration = register_instances(hourly, workspace.ledger_url, workspace.tiers_config)
    say(registration.summary(DEFAULT_TIER))
    outcome = _train(workspace, snapshot.path)
    say(f"trained version {outcome.record.version} (MASE {outcome.record.metrics['mase']:.3f})")
    promoted = bool(outcome.decision is not None and outcome.decision.promote)
    reason = outcome.decision.reason if outcome.decision is not None else "not gated"
    say(f"promotion: {reason}")
    predictions = _predict(workspace, snapshot.path)
    say(f"forecasts for the API: {predictions}")
    replayed = _replay(workspace, fleet)
    say(f"replay logged to MLflow (experiment {workspace.tracking.experiment}-replay)")
    summary = {
        name: {k: v for k, v in figures.items() if not isinstance(v, dict)}
        for name, figures in replayed.document["policies"].items()
    }
    return DemoOutcome(
        snapshot=snapshot.path,
        model_version=str(outcome.record.version),
        promoted=promoted,
        promotion_reason=reason,
        predictions=predictions,
        replay_json=replayed.replay_json,
        report=replayed.report,
        summary=summary,
        fleet=fleet,
        instances=tuple(sorted(hourly["unique_id"].astype(str).unique())),
    )


def _train(workspace: Workspace, snapshot: Path) -> TrainOutcome:
    from pipelines.flows import train_flow
    from pipelines.params import TrainParams

    params = TrainParams(snapshot=snapshot, tracking=workspace.tracking)
    return cast("TrainOutcome", train_flow(params, return_state=True).result())


def _predict(workspace: Workspace, snapshot: Path) -> Path:
    from pipelines.flows import predict_flow
    from pipelines.params import PredictParams

    params = PredictParams(
        tracking=workspace.tracking, output_dir=workspace.predictions_dir, snapshot=snapshot
    )
    return Path(predict_flow(params))


def _replay(workspace: Workspace, fleet: SyntheticFleet) -> ReplayOutcome:
    from pipelines.flows import replay_flow
    from pipelines.params import ReplayParams

    params = ReplayParams(
        synthetic=fleet, out_dir=workspace.home / "replay", tracking=workspace.tracking
    )
    return replay_flow(params)
