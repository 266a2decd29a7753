"""Fixtures of the pipeline tests: one Prefect test server, fresh MLflow stores.

Prefect's test harness (a temporary server on a temporary SQLite database) is
started once per session, as its documentation recommends; each test that tracks
gets its own MLflow SQLite store and artifact directory under ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from data.resample import to_hourly
from data.synthetic import generate_fleet
from pipelines.params import TrackingParams
from pipelines.snapshot import Snapshot, write_snapshot

FLEET_INSTANCES = 20
FLEET_DAYS = 21


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Run every flow of the session against one temporary Prefect server."""
    # The test server must not phone home: tests run without network.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def tracking(tmp_path: Path) -> TrackingParams:
    """A fresh MLflow SQLite store with local artifacts under ``tmp_path``."""
    return TrackingParams(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=(tmp_path / "mlartifacts").as_uri(),
        model_name="test-fleet",
        fleet="test",
    )


@pytest.fixture(scope="session")
def hourly_fleet() -> pd.DataFrame:
    """The hourly telemetry of a seeded synthetic fleet, 20 instances x 21 days."""
    return to_hourly(generate_fleet(FLEET_INSTANCES, FLEET_DAYS, seed=7, attributes=False))


@pytest.fixture(scope="session")
def fleet_snapshot(
    hourly_fleet: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Snapshot:
    """The synthetic fleet stored as a snapshot, shared read-only by the session."""
    return write_snapshot(hourly_fleet, tmp_path_factory.mktemp("snapshots"))
