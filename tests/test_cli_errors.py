"""Every command on bad input, as a user types it: one clear error, exit 2, no traceback.

Each case runs ``creditx`` in a process of its own on a fresh ``CREDITX_HOME``: a file
that does not exist, a file that is not telemetry (or not what the command reads),
and an option the command does not have or a value it does not accept. Each must end
in at most two lines on stderr starting with ``error:`` (or click's usage error), exit
code 2, no traceback, within 5 seconds of CPU, and leave the home as it was.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds a refusal may take, start-up of the interpreter included. Counted in CPU
# seconds of the command's process, so other work on a shared machine does not count.
BUDGET_S = 5.0

MISSING = "no-such-file.csv"
MALFORMED = "malformed.csv"

CASES: dict[str, list[str]] = {
    # a missing file
    "data load, missing": ["data", "load", MISSING],
    "data validate, missing": ["data", "validate", MISSING],
    "data describe, missing": ["data", "describe", MISSING],
    "forecast, missing": ["forecast", MISSING, "--out", "out.csv"],
    "replay, missing": ["replay", "--data", MISSING],
    "replay scenario, missing": ["replay", "--data", MALFORMED, "--scenario", "none.toml"],
    "report, missing": ["report", "--json", "none.json"],
    "pipeline ingest, missing": ["pipeline", "ingest", "--source", MISSING],
    "pipeline train, missing": ["pipeline", "train", "--snapshot", "none.parquet"],
    "store init, missing": ["store", "init", "--config", "none.toml"],
    "agents run, missing": ["agents", "run", "--policies", "none.toml"],
    "telemetry post, missing": ["telemetry", "post", MISSING, "--token", "cx_x"],
    # a malformed file
    "data load, malformed": ["data", "load", MALFORMED],
    "data validate, malformed": ["data", "validate", MALFORMED],
    "forecast, malformed": ["forecast", MALFORMED, "--out", "out.csv"],
    "replay, malformed": ["replay", "--data", MALFORMED],
    "report, malformed": ["report", "--json", MALFORMED],
    "pipeline ingest, malformed": ["pipeline", "ingest", "--source", MALFORMED],
    "pipeline train, malformed": ["pipeline", "train", "--snapshot", MALFORMED],
    "store init, malformed": ["store", "init", "--config", MALFORMED],
    "telemetry post, malformed": ["telemetry", "post", MALFORMED, "--token", "cx_x"],
    # a bad option or value
    "data validate, bad choice": ["data", "validate", MALFORMED, "--duplicates", "ignore"],
    "pipeline ingest, bad column": ["pipeline", "ingest", "--source", MALFORMED, "--column", "x"],
    "pipeline train, bad number": ["pipeline", "train", "--shard-size", "many"],
    "pipeline train, unknown forecaster": ["pipeline", "train", "--candidates", "naive,ridge"],
    "serve, bad port": ["serve", "--port", "http"],
    "tokens issue, no subject": ["tokens", "issue"],
    "tokens issue, bad role": ["tokens", "issue", "--role", "root"],
    "telemetry post, no token": ["telemetry", "post", MALFORMED],
    "demo, bad option": ["demo", "--fleet-size", "3"],
    "demo, live clock not running": ["demo", "--live-speed", "0"],
    "schedule, api url without a scheme": ["schedule", "--api-url", "localhost:8000"],
    "mlflow-ui, bad port": ["mlflow-ui", "--port", "x"],
    "bench, unknown area": ["bench", "weather"],
    "unknown command": ["forcast", "data.csv"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("newcomer")
    (folder / MALFORMED).write_text("when,how much\nyesterday,lots\n")
    return folder


def _creditx(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "CREDITX_HOME": str(cwd / "home"), "COLUMNS": "100"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_bad_input_ends_in_one_clear_line_and_exit_2(args: list[str], workdir: Path) -> None:
    before = sorted(p.name for p in workdir.iterdir())
    result, seconds = _creditx(args, workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    assert "error" in result.stderr.lower(), output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if lines[0].startswith("error:"):
        assert len(lines) <= 2, output
    assert seconds < BUDGET_S, f"{seconds:.1f} CPU s: {args}"
    after = sorted(p.name for p in workdir.iterdir() if p.name != "home")
    assert after == [p for p in before if p != "home"]
    assert not (workdir / "out.csv").exists()


def test_debug_shows_the_traceback_of_the_same_error(workdir: Path) -> None:
    result, _ = _creditx(["--debug", "data", "load", MISSING], workdir)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "TelemetryFormatError" in result.stderr
