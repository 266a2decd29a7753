"""The service as it runs: a restart on the same store, ``creditx tokens`` and
``creditx serve`` (uvicorn on loopback, real HTTP), and the PostgreSQL store."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from serving_support import START, Api
from typer.testing import CliRunner

from market.clock import ManualClock
from serving.cli import app as cli
from serving.main import create_app
from serving.services import build_services
from serving.tables import api_tokens


def _order(api: Api, instance_id: str, key: str, **fields: object) -> httpx.Response:
    return api.client.post(
        f"/v1/instances/{instance_id}/orders",
        json={"time_in_force": "gtc", **fields},
        headers={**api.agent(instance_id), "Idempotency-Key": key},
    )


def test_open_orders_and_keys_survive_a_restart(make_api) -> None:
    api = make_api()
    api.deposit("vm-gold-1", 100_000)
    first = _order(api, "vm-gold-1", "before", side="buy", price=100, quantity=5_000)
    assert first.status_code == 201
    order_id = first.json()["order"]["order_id"]
    settings = api.services.settings
    api.client.__exit__(None, None, None)
    api.services.close()

    services = build_services(settings, ManualClock(START), champion=None)
    with TestClient(create_app(settings, services=services)) as client:
        headers = {"Authorization": f"Bearer {api.agent_tokens['vm-gold-1']}"}
        depth = client.get("/v1/tiers/gold/depth", headers=headers).json()
        assert depth["bids"] == [{"price": 100, "quantity": 5_000, "orders": 1}]
        replay = client.post(
            "/v1/instances/vm-gold-1/orders",
            json={"side": "buy", "price": 100, "quantity": 5_000, "time_in_force": "gtc"},
            headers={**headers, "Idempotency-Key": "before"},
        )
        assert replay.status_code == 200
        assert replay.json()["order"]["order_id"] == order_id
        cancelled = client.delete(f"/v1/instances/vm-gold-1/orders/{order_id}", headers=headers)
        assert cancelled.json()["state"] == "cancelled"
        assert services.market.balances("vm-gold-1") == (0, 100_000)
    services.close()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITX_")}
    env["CREDITX_HOME"] = str(home)
    return env


def test_tokens_issue_prints_the_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["tokens", "issue", "--admin"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("cx_")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens)).one()
    engine.dispose()
    assert (row.kind, row.subject) == ("admin", "admin")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    listed = runner.invoke(cli, ["tokens", "list"], env=_env(tmp_path))
    assert token not in listed.stdout
    assert row.token_id in listed.stdout
    revoked = runner.invoke(cli, ["tokens", "revoke", row.token_id], env=_env(tmp_path))
    assert revoked.exit_code == 0
    assert "revoked" in revoked.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--instance", "vm-nowhere"], "unknown instance"),
        (["--admin", "--instance", "vm-gold-1"], "exactly one"),
        ([], "exactly one"),
    ],
)
def test_tokens_issue_refuses_bad_subjects(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["tokens", "issue", *arguments], env=_env(tmp_path))
    assert result.exit_code != 0
    assert message in result.output
    if (tmp_path / "ledger.db").exists():
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(api_tokens)).scalar() == 0
        engine.dispose()


@pytest.mark.slow
def test_creditx_serve_answers_real_http_on_loopback(tmp_path: Path) -> None:
    env = _env(tmp_path)
    issued = CliRunner().invoke(cli, ["tokens", "issue", "--instance", "vm-gold-1"], env=env)
    token = issued.stdout.strip().splitlines()[-1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from serving.cli import app; app()",
            "serve",
            "--port",
            str(port),
            "--no-follow-champion",
        ],
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, "creditx serve exited"
                assert time.monotonic() < deadline, "creditx serve did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "forecasts_loaded": False}
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers) as client:
            balances = client.get("/v1/instances/vm-gold-1/balances")
            assert balances.json() == {
                "instance_id": "vm-gold-1",
                "tier": "gold",
                "credits": 0,
                "funds": 0,
            }
            assert client.get("/v1/instances/vm-gold-2/balances").status_code == 403
            forecast = client.get("/v1/instances/vm-gold-1/forecast")
            assert forecast.status_code == 503
            assert forecast.headers["content-type"].startswith("application/problem+json")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.postgres
def test_orders_balances_and_replays_on_postgresql(pg_url: str, make_api) -> None:
    api = make_api(database_url=pg_url)
    api.grant_credits("vm-silver-2", 10_000)
    api.deposit("vm-silver-1", 100_000)
    assert (
        _order(api, "vm-silver-2", "s", side="sell", price=200, quantity=5_000).status_code == 201
    )
    buy = _order(api, "vm-silver-1", "b", side="buy", price=200, quantity=5_000)
    assert buy.status_code == 201
    assert buy.json()["order"]["state"] == "filled"
    replay = _order(api, "vm-silver-1", "b", side="buy", price=200, quantity=5_000)
    assert replay.status_code == 200
    assert replay.json() == buy.json()
    value = 5_000 * 200 // 1000
    fee = value * 20 // 10_000
    assert api.balances("vm-silver-1") == (5_000, 100_000 - value - fee)
    assert api.balances("vm-silver-2") == (5_000, value)
    other = api.client.get("/v1/instances/vm-silver-2/balances", headers=api.agent("vm-silver-1"))
    assert other.status_code == 403
    verify = api.client.get("/v1/admin/ledger/verify", headers=api.admin()).json()
    assert verify["ok"] is True
