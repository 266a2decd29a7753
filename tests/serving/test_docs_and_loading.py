"""What a newcomer meets first in the service: /docs offline, and honest 503s."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from serving_support import Api

from market.clock import system_clock
from market.ledger import FUNDS, EntryRequest, Transfer, instance_funds, mint_account
from serving.forecasts import ForecastStore
from serving.services import build_services
from serving.settings import Settings

ApiFactory = Callable[..., Api]

PROBLEM = "application/problem+json"


def test_docs_load_every_asset_from_the_service_itself(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        response = api.client.get(page)
        assert response.status_code == 200, page
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', response.text)
        assert assets, page
        # No CDN: every script, style sheet and icon is a path of this service.
        assert all(a.startswith("/") for a in assets), assets
        for asset in assets:
            assert api.client.get(asset).status_code == 200, asset


class _SlowChampion:
    # The outside world of the store: a champion that answers only when released.
    model_name = "creditx-fleet-forecaster"

    def __init__(self) -> None:
        self.release = threading.Event()

    def version(self) -> str | None:
        self.release.wait(timeout=30)
        return None

    def forecast(self, version: str, instance_ids: list[str]) -> object:
        raise AssertionError("no champion version to forecast with")


def test_forecasts_answer_loading_then_no_forecasts(make_api: ApiFactory) -> None:
    api = make_api(predictions=False)
    champion = _SlowChampion()
    store = ForecastStore(api.services.forecasts.predictions_dir, champion, api.clock)
    api.services.forecasts = store
    refresh = threading.Thread(target=store.refresh)
    refresh.start()
    try:
        loading = api.client.get("/v1/instances/vm-gold-1/forecast", headers=api.admin())
        assert loading.status_code == 503
        assert loading.headers["content-type"].startswith(PROBLEM)
        assert loading.json()["title"] == "Loading"
        assert loading.headers["retry-after"] == "2"
    finally:
        champion.release.set()
        refresh.join()
    empty = api.client.get("/v1/instances/vm-gold-1/forecast", headers=api.admin())
    assert empty.status_code == 503
    assert empty.json()["title"] != "Loading"
    assert "creditx pipeline predict" in empty.json()["detail"]
    assert "retry-after" not in empty.headers


# A restart of the service over a migrated store without predictions: it answers and
# trades, then names the heavy libraries it loaded.
_RESTART = """
import sys
from fastapi.testclient import TestClient
from serving.main import create_app
from serving.settings import Settings
from serving.tokens import TokenKind

app = create_app(Settings(), champion=None)
agent = app.state.services.tokens.issue(TokenKind.AGENT, "vm-gold-1").token
with TestClient(app) as client:
    assert client.get("/v1/health").status_code == 200
    placed = client.post(
        "/v1/instances/vm-gold-1/orders",
        json={"side": "buy", "price": 100, "quantity": 1000, "time_in_force": "gtc"},
        headers={"Authorization": f"Bearer {agent}", "Idempotency-Key": "k1"},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]
    cancelled = client.delete(
        f"/v1/instances/vm-gold-1/orders/{order_id}",
        headers={"Authorization": f"Bearer {agent}"},
    )
    assert cancelled.json()["state"] == "cancelled", cancelled.text
print(sorted(m for m in ("alembic", "pandas") if m in sys.modules))
"""


def test_a_restart_loads_neither_alembic_nor_pandas(tmp_path: Path) -> None:
    # they cost a restart more than a second of CPU: Alembic has nothing to do on a store
    # at the newest revision, and pandas waits for the first forecasts to read
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'creditx.db'}"
    services = build_services(Settings(home=home, database_url=url), system_clock, champion=None)
    deposit = Transfer(mint_account(FUNDS), instance_funds("vm-gold-1"), 10_000)
    services.market.ledger.post(EntryRequest((deposit,), "deposit", "test"))
    services.close()
    env = {"CREDITX_HOME": str(home), "CREDITX_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", _RESTART],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
