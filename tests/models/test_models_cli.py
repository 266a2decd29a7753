"""``creditx forecast`` end to end on a telemetry file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from data.synthetic import generate_fleet
from serving.cli import app


def test_forecast_command_writes_every_instance(tmp_path: Path) -> None:
    telemetry = tmp_path / "fleet.parquet"
    generate_fleet(3, 12, seed=5, freq="1h", attributes=False).to_parquet(telemetry)
    out = tmp_path / "forecast.csv"
    result = CliRunner().invoke(app, ["forecast", str(telemetry), "--out", str(out), "--h", "6"])
    assert result.exit_code == 0, result.output
    forecast = pd.read_csv(out)
    assert len(forecast) == 3 * 6
    assert list(forecast.columns) == [
        "unique_id",
        "ds",
        "yhat",
        "q10",
        "q50",
        "q90",
        "model",
        "source",
    ]
    assert (forecast["q90"] >= forecast["q50"]).all()
    assert (forecast["q50"] >= forecast["q10"]).all()
    # A readable table of the best-ranked models, not a Python dict.
    assert "models ranked first" in result.output
    assert "next week" in result.output
    assert "{" not in result.output


def test_forecast_command_rejects_a_bad_quantile(tmp_path: Path) -> None:
    telemetry = tmp_path / "fleet.parquet"
    generate_fleet(2, 4, seed=5, freq="1h", attributes=False).to_parquet(telemetry)
    result = CliRunner().invoke(
        app, ["forecast", str(telemetry), "--out", str(tmp_path / "f.csv"), "--quantile", "1.5"]
    )
    assert result.exit_code != 0
    assert "strictly between 0 and 1" in result.output
    assert not (tmp_path / "f.csv").exists()
