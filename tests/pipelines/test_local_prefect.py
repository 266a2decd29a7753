"""The persistent local Prefect server and what runs on it, as real processes.

``creditx prefect-ui`` runs the server on its own database under a fresh
``CREDITX_HOME``; ``creditx pipeline ingest`` must run its flow there (the ingest
command's environment does not name that database, so a temporary server of its own
would leave the run elsewhere). ``creditx schedule`` serves the deployments on it,
whose schedules the server must turn into runs; a terminal's Ctrl-C (SIGINT to its
process group) with a training run in flight must stop it without a traceback or a
warning, leaving no process behind and the run cancelled. (SIGTERM reaches the runner
the same way: ``tests/pipelines/test_servers.py``.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow

# What a clean start and stop must never print.
NEVER = ("Traceback", "never awaited", "database is locked", "Failed to send telemetry")


@dataclass(frozen=True)
class LocalPrefect:
    env: dict[str, str]
    api: str
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _creditx(*args: str) -> list[str]:
    return [sys.executable, "-m", "serving.cli", *args]


def _wait_for_line(stream: IO[str], start: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    for line in stream:
        if line.startswith(start):
            return line
        assert time.monotonic() < deadline, f"no line starting {start!r} in {timeout} s"
    raise AssertionError(f"the process ended without a line starting {start!r}")


@pytest.fixture(scope="module")
def local_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    folder = tmp_path_factory.mktemp("local-prefect")
    port = _free_port()
    env = {
        **os.environ,
        "CREDITX_HOME": str(folder / "home"),
        "CREDITX_PREFECT_PORT": str(port),
    }
    for name in ("PREFECT_API_URL", "CREDITX_PREFECT_API_URL", "CREDITX_PREFECT_DATABASE_URL"):
        env.pop(name, None)
    server_env = {**env, "CREDITX_PREFECT_DATABASE_URL": f"sqlite:///{folder / 'ui.db'}"}
    log = folder / "prefect-ui.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            _creditx("prefect-ui"), env=server_env, stdout=subprocess.PIPE, stderr=sink, text=True
        )
        try:
            assert server.stdout is not None
            _wait_for_line(server.stdout, "Prefect UI: ", timeout=240)
            yield LocalPrefect(env, f"http://127.0.0.1:{port}/api", log)
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
            if server.stdout is not None:
                server.stdout.close()
    assert code == 0
    printed = log.read_text()
    assert not [n for n in NEVER if n in printed], printed[-3000:]


def _flow_runs(api: str, flow: str) -> list[dict]:
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flows": {"name": {"any_": [flow]}}, "sort": "START_TIME_DESC", "limit": 10},
        timeout=30,
    )
    runs.raise_for_status()
    return list(runs.json())


def test_ingest_runs_on_the_local_server(local_prefect: LocalPrefect) -> None:
    # How soon it starts is measured, not asserted: on a shared machine the seconds
    # vary threefold. What makes it start in seconds is that it starts no server.
    ingest = subprocess.run(
        _creditx("pipeline", "ingest", "--instances", "3", "--days", "3"),
        env=local_prefect.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stderr
    runs = _flow_runs(local_prefect.api, "ingest")
    assert len(runs) == 1, "the ingest flow did not run on the local server"
    assert runs[0]["state"]["type"] == "COMPLETED"
    assert not [n for n in NEVER if n in ingest.stderr], ingest.stderr


def _schedule(local_prefect: LocalPrefect, *args: str) -> tuple[subprocess.Popen[str], Path]:
    stderr = Path(local_prefect.log.parent / f"schedule-{time.monotonic_ns()}.err")
    env = {**local_prefect.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    with stderr.open("w") as sink:
        schedule = subprocess.Popen(
            _creditx("schedule", *args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    assert schedule.stdout is not None
    _wait_for_line(schedule.stdout, "their runs show at", timeout=240)
    return schedule, stderr


def _stopped_cleanly(
    schedule: subprocess.Popen[str], stderr: Path, processes: list[psutil.Process]
) -> None:
    assert schedule.wait(timeout=90) == 0
    if schedule.stdout is not None:
        schedule.stdout.close()
    printed = stderr.read_text()
    assert not [n for n in NEVER if n in printed], printed
    alive = [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], "processes outlived the schedule"


def _deployment(local_prefect: LocalPrefect, name: str) -> dict:
    found = httpx.post(
        f"{local_prefect.api}/deployments/filter",
        json={"deployments": {"name": {"any_": [name]}}, "limit": 1},
        timeout=30,
    ).json()
    assert found, f"no deployment {name}"
    return dict(found[0])


def test_the_schedule_schedules_runs_and_ctrl_c_cancels_the_run_in_flight(
    local_prefect: LocalPrefect,
) -> None:
    schedule, stderr = _schedule(local_prefect, "--instances", "40", "--days", "21")
    try:
        # The server's scheduler turns the hourly cron into runs to come.
        predict = _deployment(local_prefect, "default-predict-hourly")
        deadline = time.monotonic() + 120
        scheduled: list[dict] = []
        while not scheduled and time.monotonic() < deadline:
            time.sleep(1)
            scheduled = httpx.post(
                f"{local_prefect.api}/flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [predict["id"]]}},
                    "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
                    "limit": 5,
                },
                timeout=30,
            ).json()
        assert scheduled, "the server scheduled no run of the hourly deployment"
        train = _deployment(local_prefect, "default-train-daily")
        run = httpx.post(
            f"{local_prefect.api}/deployments/{train['id']}/create_flow_run", json={}, timeout=30
        ).json()
        deadline = time.monotonic() + 180
        state = ""
        while state != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
            state = httpx.get(f"{local_prefect.api}/flow_runs/{run['id']}").json()["state"]["type"]
        assert state == "RUNNING"
        processes = psutil.Process(schedule.pid).children(recursive=True)
        assert any("prefect.engine" in " ".join(p.cmdline()) for p in processes), processes
        os.killpg(schedule.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _stopped_cleanly(schedule, stderr, processes)
    finally:
        if schedule.poll() is None:
            os.killpg(schedule.pid, signal.SIGKILL)
    final = httpx.get(f"{local_prefect.api}/flow_runs/{run['id']}").json()["state"]
    assert final["type"] == "CANCELLED", final
