"""``creditx demo`` end to end on a small synthetic fleet: training tracked in MLflow,
promotion, forecasts for the API, every policy replayed, the report written."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pipelines.replay import POLICIES
from serving.cli import app


@pytest.mark.slow
def test_demo_runs_the_whole_product_on_a_small_fleet(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CREDITX_HOME", str(home))
    # The demo exports Prefect's home into the environment: restore it afterwards.
    for key in (
        "PREFECT_HOME",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "PREFECT_SERVER_ANALYTICS_ENABLED",
    ):
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    result = CliRunner().invoke(app, ["demo", "--instances", "12", "--days", "10"])
    assert result.exit_code == 0, result.output

    report = home / "replay" / "report.html"
    assert f"Report:     {report.resolve()}" in result.output
    assert "creditx mlflow-ui" in result.output
    assert "creditx serve" in result.output
    assert "<img" in report.read_text()

    document = json.loads((home / "replay" / "replay.json").read_text())
    assert list(document["policies"]) == list(POLICIES)
    assert document["instances"] == 12
    assert all(p["conservation_violations"] == 0 for p in document["policies"].values())

    # The training run is in MLflow and its version carries the champion alias.
    tracking_uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("creditx-demo")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert any(r.info.status == "FINISHED" for r in runs)
    champion = client.get_model_version_by_alias("creditx-fleet-forecaster", "champion")
    assert str(champion.version) == "1"
    # The API's forecasts are written for every instance.
    written = list((home / "predictions").rglob("*"))
    assert any(p.is_file() for p in written)
