"""``creditx agents`` and ``creditx cem`` on a real SQLite store and batch predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from market.decisions import DecisionQuery, SqlDecisionLog
from market.ledger import (
    EntryRequest,
    Ledger,
    SqlStore,
    Transfer,
    credits_asset,
    instance_credits,
    mint_account,
    pool_account,
)
from serving.cli import app

runner = CliRunner()


def _predictions(path: Path, generated_at: datetime, levels: dict[str, float]) -> Path:
    rows = []
    for unique_id, level in levels.items():
        for horizon, hours in (("hour", 1), ("day", 24), ("week", 168)):
            for h in range(1, hours + 1):
                rows.append(
                    {
                        "unique_id": unique_id,
                        "horizon": horizon,
                        "ds": pd.Timestamp(generated_at + timedelta(hours=h)),
                        "yhat": level,
                        "q50": level,
                        "q90": min(100.0, level + 3),
                        "model_version": "4",
                        "generated_at": pd.Timestamp(generated_at),
                    }
                )
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CREDITX_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = runner.invoke(app, ["store", "init", "--url", url])
    assert result.exit_code == 0, result.output
    return url


def _post(url: str, transfers: list[Transfer]) -> None:
    store = SqlStore(url)
    try:
        Ledger(store, lambda: datetime.now(UTC)).post(
            EntryRequest(tuple(transfers), "seed", "test")
        )
    finally:
        store.close()


def test_agents_and_cem_run_on_the_store_and_log_why(store: str, tmp_path: Path) -> None:
    gold = credits_asset("gold")
    _post(
        store,
        [
            Transfer(mint_account(gold), instance_credits("vm-gold-1"), 300_000),
            Transfer(mint_account(credits_asset("silver")), pool_account("silver"), 5_000_000),
        ],
    )
    predictions = _predictions(
        tmp_path / "forecasts.parquet",
        datetime.now(UTC),
        {"vm-gold-1": 2.0, "vm-gold-2": 80.0, "vm-silver-1": 1.0},
    )
    owners = tmp_path / "owners.toml"
    owners.write_text('["vm-gold-1"]\nmin_ask = 150\nrisk_quantile = "q50"\n')
    ran = runner.invoke(
        app,
        [
            *("agents", "run", "--url", store),
            *("--predictions", str(predictions), "--policies", str(owners)),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert "fallback" in ran.output  # the instances the predictions do not cover
    cem = runner.invoke(app, ["cem", "run", "--url", store, "--predictions", str(predictions)])
    assert cem.exit_code == 0, cem.output
    assert "silver->gold" in cem.output
    shown = runner.invoke(app, ["cem", "log", "--url", store, "--outcome", "swap"])
    assert shown.exit_code == 0
    assert '"destination_tier": "gold"' in shown.output

    store_engine = SqlStore(store).engine
    log = SqlDecisionLog(store_engine)
    (seller,) = log.query(DecisionQuery(kind="agent", subject="vm-gold-1"))
    assert seller.outcome == "orders"
    assert seller.detail["inputs"]["model_version"] == "4"
    assert seller.detail["inputs"]["risk_quantile"] == "q50"  # the owner's own setting
    assert [i["price"] for i in seller.detail["intents"]] == [150]
    (gold_rate,) = log.query(DecisionQuery(kind="cem", subject="gold", outcome="rate"))
    assert gold_rate.detail["new_rate"] > gold_rate.detail["old_rate"]
    store_engine.dispose()


def test_a_bad_policy_is_refused_before_anything_runs(store: str) -> None:
    result = runner.invoke(app, ["agents", "run", "--url", store, "--risk", "p90"])
    assert result.exit_code == 2
    assert "risk_quantile" in result.output
    log = SqlDecisionLog(SqlStore(store).engine)
    assert log.query(DecisionQuery()) == []


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ('["vm-nowhere"]\nbudget = 5\n', "unknown instances"),
        ('["vm-gold-1"]\nbudget = -5\n', "budget"),
        ('["vm-gold-1"]\ncolour = "red"\n', "colour"),
    ],
)
def test_bad_owner_policies_are_refused(
    store: str, tmp_path: Path, policies: str, message: str
) -> None:
    owners = tmp_path / "owners.toml"
    owners.write_text(policies)
    result = runner.invoke(app, ["agents", "run", "--url", store, "--policies", str(owners)])
    assert result.exit_code == 2
    assert message in result.output
    log = SqlDecisionLog(SqlStore(store).engine)
    assert log.query(DecisionQuery()) == []
