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
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance
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


def _parquet_bodies() -> list[bytes]:
    # a real batch of readings, one in the frame contract's columns, one of neither
    import io
    from datetime import timedelta

    import pandas as pd

    bodies = []
    interval = START - timedelta(minutes=10)
    for frame in (
        pd.DataFrame({"instance_id": [AGENT], "interval_start": [interval], "cpu_percent": [5.0]}),
        pd.DataFrame({"unique_id": [AGENT], "ds": [interval], "y": [150.0]}),
        pd.DataFrame({"host": ["h"], "cpu": [1.0]}),
    ):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        bodies.append(buffer.getvalue())
    return bodies


schemathesis.openapi.media_type(
    "application/vnd.apache.parquet",
    st.sampled_from(_parquet_bodies()) | st.binary(max_size=64),
)


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


def _excluded(case: Any) -> list[Any]:
    # a batch of readings is checked against the fleet and the clock (an instance it
    # does not know, an interval not ended yet), which no schema can say: a batch the
    # schema allows may still be refused with 422, as the route documents
    if case.operation.path == "/v1/telemetry":
        return [positive_data_acceptance]
    return []


@pytest.mark.slow
@admin_schema.parametrize()
@_SETTINGS
def test_fuzzed_as_an_administrator(case: Any) -> None:
    case.call_and_validate(excluded_checks=_excluded(case))


@pytest.mark.slow
@agent_schema.parametrize()
@_SETTINGS
def test_fuzzed_as_an_agent(case: Any) -> None:
    case.call_and_validate(excluded_checks=_excluded(case))


def test_the_fuzzed_ledger_still_verifies() -> None:
    report = _API.services.market.ledger.verify()
    assert report.ok, report
