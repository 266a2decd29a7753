"""Scheduled deployments: predict hourly, the market round hourly after it, train daily,
evaluate weekly, and book the dropped telemetry every five minutes.

:func:`deployments` builds the deployments with their cron schedules and
parameters; :func:`serve` runs them on a Prefect runner, so scheduled runs, failed
ones included, show in the Prefect UI. ``python -m pipelines.schedule SPEC`` serves a
:class:`ScheduleSpec` in a process of its own: what ``creditx schedule`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipelines.params import (
    EvaluateParams,
    IngestParams,
    MarketRoundParams,
    PredictParams,
    TelemetryParams,
    TrackingParams,
    TrainParams,
)

#: Cron schedules (UTC): forecasts a few minutes past each hour, training at night,
#: evaluation on Monday morning once the week's telemetry is in.
PREDICT_CRON = "5 * * * *"
TRAIN_CRON = "30 1 * * *"
EVALUATE_CRON = "0 4 * * 1"
#: A minute into each 5-minute interval, when the last interval's readings are in.
TELEMETRY_CRON = "1-59/5 * * * *"
#: Five minutes after predict, so each hour's round trades on that hour's forecasts.
MARKET_ROUND_CRON = "10 * * * *"

#: Seconds a flow run in flight gets to stop when the schedule stops, before its
#: processes are killed.
FLOW_RUN_STOP_GRACE_S = 3.0


def deployments(
    tracking: TrackingParams,
    ingest: IngestParams,
    home: Path,
    predictions_dir: Path,
    telemetry: TelemetryParams | None = None,
    market_round: MarketRoundParams | None = None,
) -> list[Any]:
    """Return the predict, train and evaluate deployments with their cron schedules,
    the telemetry flow's when ``telemetry`` is given and the market round's when
    ``market_round`` is.

    Parameters
    ----------
    tracking
        MLflow store, model name and fleet every flow uses.
    ingest
        The telemetry source the daily training ingests first.
    home
        Working directory; snapshots are read from ``home/snapshots``.
    predictions_dir
        Where the hourly forecasts are written for the API.
    telemetry
        The drop directory, store and allowances snapshot of the telemetry flow.
    market_round
        The API and token source of the hourly market round (its ``hour`` unset: each
        run asks for the API's current hour).
    """
    from pipelines.flows import evaluate_flow, predict_flow, train_flow

    snapshots = home / "snapshots"
    predict = PredictParams(tracking=tracking, output_dir=predictions_dir, snapshots_dir=snapshots)
    train = TrainParams(tracking=tracking, ingest=ingest)
    evaluate = EvaluateParams(tracking=tracking, snapshots_dir=snapshots)
    built = [
        predict_flow.to_deployment(
            name=f"{tracking.fleet}-predict-hourly",
            cron=PREDICT_CRON,
            parameters={"params": predict.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
        train_flow.to_deployment(
            name=f"{tracking.fleet}-train-daily",
            cron=TRAIN_CRON,
            parameters={"params": train.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
        evaluate_flow.to_deployment(
            name=f"{tracking.fleet}-evaluate-weekly",
            cron=EVALUATE_CRON,
            parameters={"params": evaluate.model_dump(mode="json")},
            tags=["creditx", tracking.fleet],
        ),
    ]
    if telemetry is not None:
        from pipelines.telemetry import telemetry_flow

        built.append(
            telemetry_flow.to_deployment(
                name=f"{tracking.fleet}-telemetry-5min",
                cron=TELEMETRY_CRON,
                parameters={"params": telemetry.model_dump(mode="json")},
                tags=["creditx", tracking.fleet],
            )
        )
    if market_round is not None:
        from pipelines.market_round import market_round_flow

        built.append(
            market_round_flow.to_deployment(
                name=f"{tracking.fleet}-market-round-hourly",
                cron=MARKET_ROUND_CRON,
                parameters={"params": market_round.model_dump(mode="json")},
                tags=["creditx", tracking.fleet],
            )
        )
    return built


class ScheduleSpec(BaseModel):
    """What ``creditx schedule`` serves: the arguments of :func:`deployments`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking: TrackingParams
    ingest: IngestParams
    home: Path
    predictions_dir: Path
    telemetry: TelemetryParams | None = None
    market_round: MarketRoundParams | None = None


def serve_command(spec: ScheduleSpec) -> list[str]:
    """Return the command line of a process that serves ``spec``'s deployments.

    ``creditx schedule`` runs it in a session of its own (:func:`pipelines.servers.run_supervised`),
    so a terminal's Ctrl-C reaches neither it nor the flow runs it starts: the
    command asks it to stop, and it stops them in order.
    """
    return [sys.executable, "-m", "pipelines.schedule", spec.model_dump_json()]


def serve(*deployment: Any, ready: Callable[[], None] = lambda: None) -> None:
    """Serve the deployments until SIGTERM or SIGINT, running each at its scheduled times.

    ``ready`` is called once every deployment is registered. Either signal stops the
    serving without a traceback: the runner stops polling, cancels the flow runs it
    started (marked *Cancelled*, their processes ended) and pauses the schedules until
    they are served again.
    """
    # Stopped by a signal, the runner has shut down in order by the time these reach
    # here: nothing is left to report.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_serve(deployment, ready))


async def _serve(deployments: tuple[Any, ...], ready: Callable[[], None]) -> None:
    from prefect.runner import Runner

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None  # asyncio.run runs this coroutine as a task
    stopping: list[asyncio.Task[None]] = []

    def stop(*_: object) -> None:
        # The runner's own stop, awaited in its loop: it cancels the flow runs in
        # flight and ends its polling, and its context then exits in order. Prefect's
        # SIGTERM handler instead calls that coroutine without awaiting it and exits
        # mid-loop. Before the runner starts, or at a second signal, the main task is
        # cancelled, as Ctrl-C does under asyncio.run.
        if runner.started and not stopping:
            loop.call_soon_threadsafe(begin_stop)
        elif not main.cancelling():
            loop.call_soon_threadsafe(main.cancel)

    def begin_stop() -> None:
        for output in outputs:
            output.open = False
        stopping.append(loop.create_task(runner.astop()))
        loop.call_later(FLOW_RUN_STOP_GRACE_S, _kill_flow_runs)

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            stop()

    runner = _Runner(pause_on_shutdown=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    for deployment in deployments:
        await runner.aadd_deployment(deployment)
    ready()
    # The runner copies its flow runs' output to this process's sys.stdout and
    # sys.stderr as it starts them.
    streams = sys.stdout, sys.stderr
    outputs = (_FlowRunOutput(sys.stdout), _FlowRunOutput(sys.stderr))
    sys.stdout, sys.stderr = outputs
    try:
        await runner.start()
    finally:
        sys.stdout, sys.stderr = streams


class _FlowRunOutput:
    # Once the runner stops its flow runs, what they print about being stopped (a
    # crash "by a termination signal") is no news and is dropped; it stays in the
    # Prefect UI with the rest of their logs.
    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.open = True

    def write(self, text: str) -> int:
        return self.stream.write(text) if self.open else len(text)

    def flush(self) -> None:
        if self.open:
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _kill_flow_runs() -> None:
    # A flow run stopped in the middle of a shard finishes the shard before its process
    # exits, and the runner would wait up to 30 s for each: past the grace, its
    # processes (and any Dask workers they started) are killed, and the runner records
    # the runs as cancelled.
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _announce(spec: ScheduleSpec, served: list[Any]) -> None:
    api = os.environ.get("PREFECT_API_URL", "")
    lines = [f"serving the {spec.tracking.fleet} fleet's flows on {api}:"]
    for deployment in served:
        crons = ", ".join(s.schedule.cron for s in deployment.schedules)
        lines.append(f"  {deployment.flow_name}/{deployment.name}  (cron {crons}, UTC)")
    lines.append(f"their runs show at {api.removesuffix('/api')}/deployments; Ctrl-C stops serving")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    """Serve the deployments of the :class:`ScheduleSpec` given as JSON in ``argv[0]``."""
    spec = ScheduleSpec.model_validate_json(argv[0])
    served = deployments(
        spec.tracking,
        spec.ingest,
        spec.home,
        spec.predictions_dir,
        spec.telemetry,
        spec.market_round,
    )
    serve(*served, ready=lambda: _announce(spec, served))


if __name__ == "__main__":
    main(sys.argv[1:])
