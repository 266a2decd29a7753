"""A newcomer's first day, end to end, with their own CloudWatch-style telemetry.

A fresh ``CREDITX_HOME``; a folder of ``timestamp,value`` CSV files, one per instance,
whose readings start at odd minutes and seconds; then the README's commands:
``pipeline ingest`` -> ``pipeline train`` -> ``pipeline predict`` -> ``serve`` ->
``tokens issue --instance`` -> ``GET`` the instance's forecast. Every step must exit 0.
The flows run on the session's Prefect test server; ``serve`` and ``tokens`` run as
the processes a user starts.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

INSTANCES = ("i-0a1b2c3d", "i-0e5f6a7b", "i-09c8d7e6")


def _cloudwatch_folder(folder: Path) -> Path:
    # Five-minute readings, each instance starting off the hour and off the minute grid.
    folder.mkdir()
    rng = np.random.default_rng(17)
    for k, instance in enumerate(INSTANCES):
        start = pd.Timestamp("2026-03-02 09:00", tz="UTC") + pd.Timedelta(
            minutes=7 + 11 * k, seconds=23
        )
        stamps = pd.date_range(start, periods=12 * 24 * 16, freq="5min")
        hour = stamps.hour.to_numpy()
        cpu = 15 + 25 * ((hour >= 9) & (hour < 18)) + rng.normal(0, 4, len(stamps))
        pd.DataFrame(
            {
                "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": np.clip(cpu, 0, 100).round(2),
            }
        ).to_csv(folder / f"{instance}.csv", index=False)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_own_telemetry_from_ingest_to_the_served_forecast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CREDITX_HOME", str(home))
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))
    telemetry = _cloudwatch_folder(tmp_path / "cloudwatch")

    ingested = _run("pipeline", "ingest", "--source", str(telemetry))
    assert "registered 3 new instances" in ingested
    _run("pipeline", "train", "--candidates", "naive,seasonal_naive")
    _run("pipeline", "predict")

    port = _free_port()
    env = {**os.environ, "CREDITX_API_PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "serve", "--no-follow-champion"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.startswith("forecasts: ready"):
                break
        assert any(f"http://127.0.0.1:{port}" in line for line in lines), lines
        assert lines[-1].startswith("forecasts: ready"), lines

        issued = subprocess.run(
            [sys.executable, "-m", "serving.cli", "tokens", "issue", "--instance", INSTANCES[1]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        assert re.fullmatch(r"\S{20,}", token)

        reply = httpx.get(
            f"http://127.0.0.1:{port}/v1/instances/{INSTANCES[1]}/forecast",
            params={"horizon": "day"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        forecast = reply.json()
        assert forecast["instance_id"] == INSTANCES[1]
        assert len(forecast["points"]) == 24
    finally:
        server.terminate()
        stopped = server.wait(timeout=60)
        assert server.stdout is not None
        server.stdout.close()
    assert stopped == 0
