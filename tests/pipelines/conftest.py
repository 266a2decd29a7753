"""Fixtures of the pipeline tests: one Prefect test server, fresh MLflow stores.

Prefect's test harness (a temporary server on a temporary SQLite database) is
started once per session, as its documentation recommends; each test that tracks
gets its own MLflow SQLite store and artifact directory under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from typer.testing import CliRunner

if TYPE_CHECKING:
    from pipelines.snapshot import Snapshot

FLEET_INSTANCES = 20
FLEET_DAYS = 21


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Run every flow of the session against one temporary Prefect server."""
    # The test server must not phone home: tests run without network.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of headless Chromium; skipped without it, except under ``CI=true``."""
    found = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if found is None:
        reason = "headless Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires the browser tests")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def hourly_fleet() -> pd.DataFrame:
    """The hourly telemetry of a seeded synthetic fleet, 20 instances x 21 days."""
    from data.resample import to_hourly
    from data.synthetic import generate_fleet

    return to_hourly(generate_fleet(FLEET_INSTANCES, FLEET_DAYS, seed=7, attributes=False))


@pytest.fixture(scope="session")
def fleet_snapshot(
    hourly_fleet: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Snapshot:
    """The synthetic fleet stored as a snapshot, shared read-only by the session."""
    from pipelines.snapshot import write_snapshot

    return write_snapshot(hourly_fleet, tmp_path_factory.mktemp("snapshots"))


@pytest.fixture(scope="session")
def replay_document(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A replay of every policy on a Parquet trace of 8 synthetic instances x 3 days."""
    from data.synthetic import generate_fleet
    from serving.cli import app

    folder = tmp_path_factory.mktemp("replay")
    trace = folder / "trace.parquet"
    generate_fleet(8, 3, seed=3, attributes=False).to_parquet(trace)
    out = folder / "replay.json"
    result = CliRunner().invoke(app, ["replay", "--data", str(trace), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "figures written to" in result.output
    return json.loads(out.read_text())
