"""Fixtures of the API tests: the app on a real SQLite (or PostgreSQL) store, real tokens.

The batch predictions are written in the ``predict`` flow's format (the outside world
of the service); balances are seeded through the ledger as accrual and deposits do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serving_support import START, Api, write_predictions

from market.clock import ManualClock
from serving.main import create_app
from serving.services import Services, build_services
from serving.settings import Settings
from serving.tokens import TokenKind

ApiFactory = Callable[..., Api]


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[ApiFactory]:
    """Build apps on fresh stores under ``tmp_path``; close them afterwards."""
    opened: list[tuple[TestClient, Services]] = []

    def factory(database_url: str | None = None, predictions: bool = True, **overrides: Any) -> Api:
        home = tmp_path / f"home{len(opened)}"
        options: dict[str, Any] = {
            "home": home,
            "rate_limit_per_second": 10_000.0,
            "rate_limit_burst": 10_000,
            "forecast_reload_seconds": 3600.0,
        }
        options.update(overrides)
        settings = Settings(database_url=database_url, **options)
        clock = ManualClock(START)
        services = build_services(settings, clock, champion=None)
        if predictions:
            write_predictions(settings.predictions_dir, "1")
        # The service has looked for forecasts once, found or not: none is loading.
        services.forecasts.refresh()
        app = create_app(settings, clock, services=services)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, services))
        admin = services.tokens.issue(TokenKind.ADMIN, "admin")
        return Api(client, services, clock, admin.token)

    yield factory
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()


@pytest.fixture
def api(make_api: ApiFactory) -> Api:
    """The app on a fresh SQLite store with batch predictions of model version 1."""
    return make_api()
