from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.config import check_tracking_store
from pipelines.errors import StoreUnavailableError
from pipelines.params import TrackingParams
from serving.settings import Settings


def test_a_closed_database_port_is_reported_quickly() -> None:
    uri = "postgresql+psycopg://127.0.0.1:1/mlflow"
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError, match="MLflow store at postgresql") as caught:
        check_tracking_store(uri)
    assert caught.value.uri == uri
    # MLflow's own engine retries for minutes; the check answers at once.
    assert time.perf_counter() - started < 10


def test_a_sqlite_store_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        TrackingParams(
            tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}",
            artifact_root=tmp_path.as_uri(),
            model_name="m",
        ).client()


def test_defaults_keep_every_store_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    tracking = settings.tracking()
    assert tracking.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert tracking.artifact_root == (tmp_path.resolve() / "mlartifacts").as_uri()
    env = settings.orchestration_config().environment()
    assert env == {"PREFECT_HOME": str(tmp_path.resolve() / "prefect")}


def test_prefect_moves_to_postgresql_through_its_async_driver(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        prefect_database_url="postgresql+psycopg://db:5432/prefect",
        prefect_api_url="http://prefect:4200/api",
    )
    env = settings.orchestration_config().environment()
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://db:5432/prefect"
    assert env["PREFECT_API_URL"] == "http://prefect:4200/api"
