"""``creditx demo`` end to end on a small synthetic fleet: training tracked in MLflow,
promotion, forecasts for the API, every policy replayed, the report written, and the
fleet's last hours through the live loop against the API: every interval booked, a market
round done for each hour."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
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
    result = CliRunner().invoke(
        app,
        ["demo", "--instances", "12", "--days", "10", "--live-speed", "1440", "--live-hours", "8"],
    )
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

    _check_live_day(home, result.output, instances=12, hours=8)


def _check_live_day(home: Path, output: str, instances: int, hours: int) -> None:
    # The last hours of the fleet's last day, 2024-01-10 (10 days from 2024-01-01), in the
    # live store.
    end = datetime(2024, 1, 11, tzinfo=UTC)
    day = end - timedelta(hours=hours)
    intervals = hours * 12
    assert "Live day:" in output
    assert "/v1/admin/allowances?since=0" in output
    assert "/v1/admin/market/rounds" in output
    token_file = home / "secrets" / "admin.token"
    assert token_file.stat().st_mode & 0o077 == 0
    with sqlite3.connect(home / "ledger.db") as db:
        booked = db.execute(
            "SELECT count(*), count(DISTINCT instance_id), count(DISTINCT interval_us),"
            " min(interval_us), max(interval_us), sum(source = 'reading')"
            " FROM accrual_booked"
        ).fetchone()
        feed = db.execute("SELECT count(*), min(interval_us) FROM accrual_allowances").fetchone()
        rounds = db.execute("SELECT round_id, stage, record FROM market_rounds").fetchall()

    def micros(moment: datetime) -> int:
        return int(moment.timestamp()) * 1_000_000

    last = end - timedelta(minutes=5)
    # every instance's intervals booked from its reading, none missing
    assert booked == (
        instances * intervals,
        instances,
        intervals,
        micros(day),
        micros(last),
        instances * intervals,
    )
    # the allowance feed holds the whole fleet at the day's last interval
    assert feed == (instances, micros(last))
    done = sorted(r[0] for r in rounds)
    assert done == [f"{day + timedelta(hours=h):%Y-%m-%dT%H:00Z}" for h in range(hours)]
    assert {r[1] for r in rounds} == {"done"}
    records = [json.loads(r[2]) for r in rounds]
    assert sum(a["trades"] for r in records for a in r["auctions"]) > 0
