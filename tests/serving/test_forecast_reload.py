"""Forecasts reload when new predictions land, a moved champion shows as stale, and
requests never fail or wait for a reload."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from batch_predictions import publish_predictions
from serving_support import INSTANCES, START, Api, write_predictions

from market.clock import ManualClock
from serving.forecasts import ForecastStore, MlflowChampion


def _version(api: Api, instance_id: str = "vm-gold-1") -> str:
    response = api.client.get(
        f"/v1/instances/{instance_id}/forecast?horizon=hour", headers=api.admin()
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def test_new_batch_predictions_replace_the_old_ones(api: Api) -> None:
    assert _version(api) == "1"
    write_predictions(api.services.settings.predictions_dir, "2", level=50.0)
    assert api.services.forecasts.refresh() is True
    body = api.client.get("/v1/instances/vm-gold-1/forecast?horizon=hour", headers=api.admin())
    assert body.json()["model_version"] == "2"
    assert body.json()["points"][0]["yhat"] == pytest.approx(54.01)
    assert api.services.forecasts.refresh() is False


def test_a_broken_reload_keeps_serving_the_previous_forecasts(api: Api) -> None:
    directory = api.services.settings.predictions_dir
    (directory / "forecasts.parquet").write_bytes(b"not parquet")
    (directory / "manifest.json").write_text(
        '{"model_name": "m", "model_version": "9", "generated_at": "2026-11-24T16:00:00Z"}'
    )
    assert api.services.forecasts.refresh() is False
    assert _version(api) == "1"
    status = api.client.get("/v1/forecasts/status", headers=api.admin()).json()
    assert status["model_version"] == "1"
    assert status["last_error"]


def test_background_reloads_never_fail_or_block_requests(make_api) -> None:
    api = make_api(forecast_reload_seconds=0.02)
    directory = api.services.settings.predictions_dir
    # the predict flow publishes from a process of its own (and warnings filters are
    # process-wide state that pandas' catch_warnings blocks in two threads would race on)
    context = multiprocessing.get_context("spawn")
    published, stop = context.Event(), context.Event()
    publisher = context.Process(
        target=publish_predictions, args=(directory, published, stop), daemon=True
    )
    publisher.start()
    seen: set[str] = set()
    slowest = 0.0
    try:
        assert published.wait(60), "the publisher process wrote no predictions"
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            started = time.monotonic()
            seen.add(_version(api))
            slowest = max(slowest, time.monotonic() - started)
    finally:
        stop.set()
        publisher.join(30)
    assert publisher.exitcode == 0
    assert len(seen) >= 3
    # a request never waits for a reload (each parses a whole parquet file)
    assert slowest < 1.0


def _log_version(level: float, tracking_uri: str, name: str) -> str:
    import mlflow
    from mlflow.pyfunc import PythonModel

    class ConstantFleet(PythonModel):
        def __init__(self, level: float) -> None:
            self.level = level

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            rows = []
            for _, request in model_input.iterrows():
                for h in range(1, int(request["h"]) + 1):
                    rows.append(
                        {
                            "unique_id": request["unique_id"],
                            "ds": pd.Timestamp(START) + pd.Timedelta(hours=h),
                            "yhat": self.level,
                            "q50": self.level,
                            "q90": self.level + 1,
                            "model": "constant",
                            "source": "learned",
                        }
                    )
            return pd.DataFrame(rows)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ConstantFleet(level), registered_model_name=name
        )
    return str(info.registered_model_version)


@pytest.mark.slow
def test_a_moved_champion_is_reported_stale_until_the_predict_flow_catches_up(
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "creditx-fleet-forecaster"
    predictions = tmp_path / "predictions"
    first = _log_version(7.0, tracking_uri, name)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias(name, "champion", first)
    write_predictions(predictions, first, ("vm-gold-1", "vm-gold-2"))
    store = ForecastStore(predictions, MlflowChampion(tracking_uri, name), ManualClock(START))
    store.refresh()
    assert store.current is not None
    assert (store.current.origin, store.current.model_version) == ("batch", first)
    assert store.status()["stale"] is False

    second = _log_version(42.0, tracking_uri, name)
    client.set_registered_model_alias(name, "champion", second)
    assert store.refresh() is False  # the service never scores a model itself
    assert (store.current.origin, store.current.model_version) == ("batch", first)
    status = store.status()
    assert (status["champion_version"], status["stale"]) == (second, True)
    # once the predict flow catches up, its predictions are served and nothing is stale
    write_predictions(predictions, second, ("vm-gold-1", "vm-gold-2"), level=3.0)
    assert store.refresh() is True
    assert (store.current.origin, store.current.model_version) == ("batch", second)
    assert store.status()["stale"] is False


def test_instances_of_the_fixture_are_all_forecast(api: Api) -> None:
    snapshot = api.services.forecasts.current
    assert snapshot is not None
    assert snapshot.instance_ids == sorted(INSTANCES)
