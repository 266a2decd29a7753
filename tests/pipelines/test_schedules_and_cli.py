from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.params import (
    EvaluateParams,
    IngestParams,
    PredictParams,
    SyntheticFleet,
    TrackingParams,
    TrainParams,
)
from pipelines.schedule import (
    EVALUATE_CRON,
    PREDICT_CRON,
    TELEMETRY_CRON,
    TRAIN_CRON,
    deployments,
)
from serving.cli import app
from serving.cli.pipeline import mlflow_ui_command
from serving.settings import Settings


def test_deployments_run_predict_hourly_train_daily_and_evaluate_weekly(tmp_path: Path) -> None:
    tracking = TrackingParams(tracking_uri="sqlite:///x.db", artifact_root="file:///x", fleet="f1")
    ingest = IngestParams(synthetic=SyntheticFleet(), home=tmp_path)
    built = deployments(tracking, ingest, tmp_path, tmp_path / "predictions")
    crons = {d.name: [s.schedule.cron for s in d.schedules] for d in built}
    assert crons == {
        "f1-predict-hourly": [PREDICT_CRON],
        "f1-train-daily": [TRAIN_CRON],
        "f1-evaluate-weekly": [EVALUATE_CRON],
    }
    models = {"predict": PredictParams, "train": TrainParams, "evaluate": EvaluateParams}
    for deployment in built:
        kind = deployment.name.split("-")[1]
        # Each deployment's parameters validate as its flow's typed model.
        params = models[kind].model_validate(deployment.parameters["params"])
        assert params.tracking == tracking
    train = TrainParams.model_validate(built[1].parameters["params"])
    assert train.ingest == ingest
    assert train.snapshot is None


def test_the_telemetry_flow_runs_every_five_minutes_when_given(tmp_path: Path) -> None:
    from pipelines.params import TelemetryParams

    tracking = TrackingParams(tracking_uri="sqlite:///x.db", artifact_root="file:///x", fleet="f1")
    ingest = IngestParams(synthetic=SyntheticFleet(), home=tmp_path)
    telemetry = TelemetryParams(
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        telemetry_dir=tmp_path / "telemetry",
        allowances_path=tmp_path / "allowances.parquet",
    )
    built = deployments(tracking, ingest, tmp_path, tmp_path / "p", telemetry)
    last = built[-1]
    assert last.name == "f1-telemetry-5min"
    assert [s.schedule.cron for s in last.schedules] == [TELEMETRY_CRON]
    assert TelemetryParams.model_validate(last.parameters["params"]) == telemetry
    assert TELEMETRY_CRON == "1-59/5 * * * *"


def test_train_params_need_exactly_one_source_of_telemetry(tmp_path: Path) -> None:
    tracking = TrackingParams(tracking_uri="sqlite:///x.db", artifact_root="file:///x")
    with pytest.raises(ValueError, match="exactly one of snapshot or ingest"):
        TrainParams(tracking=tracking)
    with pytest.raises(ValueError, match="exactly one of snapshot or ingest"):
        TrainParams(
            tracking=tracking,
            snapshot=tmp_path / "s.parquet",
            ingest=IngestParams(synthetic=SyntheticFleet(), home=tmp_path),
        )


def test_the_cli_offers_the_flows_the_schedule_and_the_ui() -> None:
    result = CliRunner().invoke(app, ["pipeline", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("ingest", "train", "promote", "predict", "evaluate"):
        assert command in result.output
    top = CliRunner().invoke(app, ["--help"])
    assert "schedule" in top.output
    assert "mlflow-ui" in top.output


def test_the_mlflow_ui_opens_on_the_configured_store(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, mlflow_tracking_uri="postgresql://db/mlflow")
    command = mlflow_ui_command(settings, "127.0.0.1", 5055)
    store = command[command.index("--backend-store-uri") + 1]
    artifacts = command[command.index("--default-artifact-root") + 1]
    assert store == "postgresql://db/mlflow"
    assert artifacts == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert command[-2:] == ["--port", "5055"]


@pytest.mark.usefixtures("prefect_harness")
def test_predict_from_the_cli_before_any_training_exits_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITX_HOME", str(tmp_path))
    # The command points Prefect at the home; the variables are restored afterwards.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    result = CliRunner().invoke(app, ["pipeline", "predict", "--fleet", "cli"])
    assert result.exit_code == 2
    assert "no registered model version creditx-fleet-forecaster@champion" in result.output
    assert not (tmp_path / "predictions").exists()


def test_the_market_round_runs_hourly_after_predict_with_no_token_in_its_parameters(
    tmp_path: Path,
) -> None:
    from pipelines.params import MarketRoundParams
    from pipelines.schedule import MARKET_ROUND_CRON
    from serving.cli.pipeline import _ingest, _schedule_spec

    settings = Settings(home=tmp_path, api_port=8123)
    spec = _schedule_spec(settings, "f1", _ingest(settings, None, 4, 3.0, 0))
    assert spec.market_round is not None
    assert spec.market_round.api_url == "http://127.0.0.1:8123"
    assert spec.market_round.token_file == (tmp_path / "secrets" / "admin.token").resolve()
    built = deployments(
        spec.tracking,
        spec.ingest,
        spec.home,
        spec.predictions_dir,
        spec.telemetry,
        spec.market_round,
    )
    crons = {d.name: [s.schedule.cron for s in d.schedules] for d in built}
    assert crons["f1-market-round-hourly"] == [MARKET_ROUND_CRON] == ["10 * * * *"]
    assert crons["f1-predict-hourly"] == [PREDICT_CRON]
    # minute 10 comes after predict's minute 5 of the same hour
    assert int(MARKET_ROUND_CRON.split()[0]) > int(PREDICT_CRON.split()[0])
    last = built[-1]
    assert last.flow_name == "market-round"
    assert MarketRoundParams.model_validate(last.parameters["params"]) == spec.market_round
    assert "hour" not in {k for k, v in last.parameters["params"].items() if v is not None}


def test_the_schedule_issues_the_market_rounds_token_once_into_a_private_file(
    tmp_path: Path,
) -> None:
    import stat

    from market.clock import system_clock
    from serving.cli.pipeline import ensure_admin_token_file
    from serving.services import build_services

    settings = Settings(home=tmp_path / "home")
    assert ensure_admin_token_file(settings) is True
    path = settings.admin_token_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text().strip()
    assert ensure_admin_token_file(settings) is False
    assert path.read_text().strip() == token  # kept, not replaced
    services = build_services(settings, system_clock, champion=None)
    try:
        principal = services.tokens.authenticate(token)
        assert principal is not None
        assert principal.is_admin
    finally:
        services.close()
