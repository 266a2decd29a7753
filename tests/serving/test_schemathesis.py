"""Schemathesis against the app's own OpenAPI document, with all its default checks.

Two identities fuzz every operation of one app on a real SQLite store: an
administrator, and an instance's agent whose own instance id fills the
``instance_id`` path parameter. The schema is loaded from the running app at
collection, as ``@schema.parametrize()`` needs it then.
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from serving_support import START, Api, write_predictions

from market.clock import ManualClock
from serving.main import create_app
from serving.services import build_services
from serving.settings import Settings
from serving.tokens import TokenKind

MAX_EXAMPLES = 8
AGENT = "vm-gold-1"


def _fuzzed_app() -> Api:
    home = Path(tempfile.mkdtemp(prefix="creditx-fuzz-"))
    settings = Settings(
        home=home, rate_limit_per_second=1e6, rate_limit_burst=1_000_000, database_url=None
    )
    clock = ManualClock(START)
    services = build_services(settings, clock, champion=None)
    write_predictions(settings.predictions_dir, "1")
    services.forecasts.refresh()
    app = create_app(settings, clock, services=services)
    api = Api(
        TestClient(app), services, clock, services.tokens.issue(TokenKind.ADMIN, "admin").token
    )
    api.grant_credits(AGENT, 50_000)
    api.deposit(AGENT, 500_000)
    atexit.register(services.close)
    return api


_API = _fuzzed_app()


def _schema(token: str, parameters: dict[str, Any]) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"bearerToken": {"bearer": token}}},
            "parameters": parameters,
            "generation": {"max-examples": MAX_EXAMPLES},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", _API.client.app, config=config)


admin_schema = _schema(_API.admin_token, {})
agent_schema = _schema(
    _API.agent(AGENT)["Authorization"].removeprefix("Bearer "), {"instance_id": AGENT}
)

_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@admin_schema.parametrize()
@_SETTINGS
def test_fuzzed_as_an_administrator(case: Any) -> None:
    case.call_and_validate()


@pytest.mark.slow
@agent_schema.parametrize()
@_SETTINGS
def test_fuzzed_as_an_agent(case: Any) -> None:
    case.call_and_validate()


def test_the_fuzzed_ledger_still_verifies() -> None:
    report = _API.services.market.ledger.verify()
    assert report.ok, report
