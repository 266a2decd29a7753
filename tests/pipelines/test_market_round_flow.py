"""The ``market-round`` flow against a real API (uvicorn on a free port, a SQLite store):
the round runs once per hour, its record becomes a table artifact, a refusal fails the
run with the API's reason, and the token never travels as a parameter."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.clock import ManualClock
from market.ledger import EntryRequest, Transfer, credits_asset, mint_account, pool_account
from pipelines.errors import InvalidParametersError, MarketRoundError
from pipelines.market_round import (
    ARTIFACT_KEY,
    market_round_flow,
    read_admin_token,
    round_table,
)
from pipelines.params import MarketRoundParams
from serving.main import create_app
from serving.services import Services, build_services
from serving.settings import Settings
from serving.tokens import TokenKind
from tests.serving.batch_predictions import START, write_predictions

pytestmark = pytest.mark.usefixtures("prefect_harness")

TOKEN_ENV = "CREDITX_TEST_ROUND_TOKEN"
FUNDS = 10_000_000


@dataclass
class LiveApi:
    """The API served over HTTP, its services and an administrator token file."""

    url: str
    services: Services
    token_file: Path

    def params(self, **overrides: Any) -> MarketRoundParams:
        """Return the flow's parameters against this API, the token read from the file."""
        return MarketRoundParams(
            api_url=self.url, token_env=TOKEN_ENV, token_file=self.token_file, **overrides
        )

    def entries(self) -> int:
        """Return how many entries the ledger's journal holds."""
        return self.services.market.ledger.verify().entries


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seed_scarce_gold(services: Services, url: str, admin: str) -> None:
    # Gold's pool full, every instance funded, two gold owners who value a credit
    # very differently: the auction has something to clear.
    market = services.market
    capacity = market.tiers.pool_capacity("gold")
    transfer = Transfer(mint_account(credits_asset("gold")), pool_account("gold"), capacity)
    market.ledger.post(EntryRequest((transfer,), "seed", "t"))
    with httpx.Client(base_url=url, timeout=30) as client:
        for instance in market.tiers.instances():
            reply = client.post(
                "/v1/admin/deposits",
                json={"instance_id": instance.id, "amount": FUNDS},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert reply.status_code == 201, reply.text
        for instance_id, value in (("vm-gold-1", 900), ("vm-gold-2", 20)):
            agent = services.tokens.issue(TokenKind.AGENT, instance_id).token
            reply = client.put(
                f"/v1/instances/{instance_id}/owner-value",
                json={"value": value},
                headers={"Authorization": f"Bearer {agent}"},
            )
            assert reply.status_code == 200, reply.text


@pytest.fixture
def live_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveApi]:
    """The app served by uvicorn in a thread, on a fresh SQLite store at ``START``."""
    import uvicorn

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = Settings(
        home=tmp_path / "home", rate_limit_per_second=10_000.0, rate_limit_burst=10_000
    )
    services = build_services(settings, ManualClock(START), champion=None)
    write_predictions(settings.predictions_dir, "1")
    services.forecasts.refresh()
    app = create_app(settings, services.clock, services=services)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    admin = services.tokens.issue(TokenKind.ADMIN, "admin").token
    token_file = tmp_path / "secrets" / "admin.token"
    token_file.parent.mkdir()
    token_file.write_text(admin + "\n")
    token_file.chmod(0o600)
    url = f"http://127.0.0.1:{port}"
    _seed_scarce_gold(services, url, admin)
    try:
        yield LiveApi(url, services, token_file)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        services.close()


def _artifact_rows(flow_run_id: Any) -> list[dict[str, Any]]:
    # The server's REST API, filtered by the flow run: what the UI's Artifacts tab reads.
    from prefect.settings import PREFECT_API_URL

    reply = httpx.post(
        f"{PREFECT_API_URL.value()}/artifacts/filter",
        json={
            "artifacts": {"key": {"any_": [ARTIFACT_KEY]}},
            "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
            "sort": "CREATED_DESC",
        },
        timeout=30,
    )
    reply.raise_for_status()
    found = reply.json()
    assert len(found) == 1, found
    assert found[0]["type"] == "table"
    data = found[0]["data"]
    return list(json.loads(data) if isinstance(data, str) else data)


def test_the_flow_runs_the_hours_round_once_and_records_its_clearing_prices(
    live_api: LiveApi,
) -> None:
    state = market_round_flow(live_api.params(), return_state=True)
    run = state.result()
    assert run.round_id == "2026-11-24T15:00Z"
    assert run.stage == "done"
    rows = _artifact_rows(state.state_details.flow_run_id)
    auctions = {a["tier"]: a for a in run.record["auctions"]}
    assert {r["tier"] for r in rows} == set(run.record["pools_before"])
    for row in rows:
        assert row["clearing_price"] == auctions[row["tier"]]["clearing_price"]
        assert row["trades"] == auctions[row["tier"]]["trades"]
        assert row["paid"] == auctions[row["tier"]]["paid"]
        assert row["draw_price"] == run.record["pool"]["draw_prices"][row["tier"]]
    gold = next(r for r in rows if r["tier"] == "gold")
    assert gold["trades"] > 0
    assert gold["paid"] > 0
    assert gold["pool_offered"] > 0
    # the record the API keeps is the one the flow saw
    stored = httpx.get(
        f"{live_api.url}/v1/admin/market/rounds/{run.round_id}",
        headers={"Authorization": f"Bearer {live_api.token_file.read_text().strip()}"},
        timeout=30,
    ).json()
    assert stored["record"] == run.record


def test_a_second_run_of_the_same_hour_books_nothing(live_api: LiveApi) -> None:
    first = market_round_flow(live_api.params(hour=START))
    entries = live_api.entries()
    second = market_round_flow(live_api.params(hour=START.replace(minute=42)))
    assert second.round_id == first.round_id
    assert second.record == first.record
    assert live_api.entries() == entries


def test_a_server_error_after_the_round_committed_is_retried_and_books_nothing_twice(
    live_api: LiveApi,
) -> None:
    from market.crashpoints import set_crash_hook

    failures: list[str] = []

    def fail_once(name: str) -> None:
        # the round is committed, its answer lost: the API answers 500
        if name == "round.finish.after_commit" and not failures:
            failures.append(name)
            raise RuntimeError("lost answer")

    previous = set_crash_hook(fail_once)
    try:
        state = market_round_flow(live_api.params(hour=START), return_state=True)
    finally:
        set_crash_hook(previous)
    assert failures == ["round.finish.after_commit"]
    run = state.result()
    assert run.stage == "done"
    entries = live_api.entries()
    again = market_round_flow(live_api.params(hour=START))
    assert again.record == run.record
    assert live_api.entries() == entries
    assert _task_run_counts(state.state_details.flow_run_id) == [2]


def _task_run_counts(flow_run_id: Any) -> list[int]:
    from prefect.settings import PREFECT_API_URL

    reply = httpx.post(
        f"{PREFECT_API_URL.value()}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}},
        timeout=30,
    )
    reply.raise_for_status()
    return [int(t["run_count"]) for t in reply.json()]


def test_a_wrong_token_fails_the_run_with_the_apis_reason(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = live_api.entries()
    monkeypatch.setenv(TOKEN_ENV, "cx_not-a-token")
    state = market_round_flow(live_api.params(), return_state=True)
    assert state.is_failed()
    with pytest.raises(MarketRoundError, match="answered 401") as failed:
        state.result()
    assert failed.value.status == 401
    assert not failed.value.transient
    # a collector's token is a valid token, but not an administrator's
    collector = live_api.services.tokens.issue(TokenKind.COLLECTOR, "rack-7").token
    monkeypatch.setenv(TOKEN_ENV, collector)
    state = market_round_flow(live_api.params(), return_state=True)
    with pytest.raises(MarketRoundError, match="answered 403"):
        state.result()
    assert live_api.entries() == entries


def test_a_future_hour_is_refused_with_409(live_api: LiveApi) -> None:
    later = START.replace(hour=START.hour + 2)
    state = market_round_flow(live_api.params(hour=later), return_state=True)
    assert state.is_failed()
    with pytest.raises(MarketRoundError, match=r"answered 409.*before its hour"):
        state.result()


def test_an_api_that_does_not_answer_fails_after_the_retries(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("cx_whatever")
    token.chmod(0o600)
    params = MarketRoundParams(
        api_url=f"http://127.0.0.1:{_free_port()}",
        token_env=TOKEN_ENV,
        token_file=token,
        timeout_seconds=2,
    )
    state = market_round_flow(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(MarketRoundError, match="did not answer") as failed:
        state.result()
    assert failed.value.transient


def test_the_token_comes_from_the_environment_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = tmp_path / "admin.token"
    params = MarketRoundParams(api_url="http://x", token_env=TOKEN_ENV, token_file=path)
    with pytest.raises(InvalidParametersError, match="cannot read"):
        read_admin_token(params)
    path.write_text("cx_secret\n")
    path.chmod(0o644)
    with pytest.raises(InvalidParametersError, match="mode 0644; make it 0600"):
        read_admin_token(params)
    path.chmod(0o600)
    assert read_admin_token(params) == "cx_secret"
    monkeypatch.setenv(TOKEN_ENV, "cx_from_env")
    assert read_admin_token(params) == "cx_from_env"
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(InvalidParametersError, match=f"set {TOKEN_ENV} or give token_file"):
        read_admin_token(params.model_copy(update={"token_file": None}))
    # the token is no parameter: nothing of it shows in what the Prefect UI displays
    assert "cx_secret" not in params.model_dump_json()
    assert os.stat(path).st_mode & 0o077 == 0


_TIERS = st.sampled_from(["bronze", "silver", "gold", "platinum"])
_SWAPS = st.lists(
    st.tuples(_TIERS, _TIERS, st.integers(0, 10**9), st.integers(0, 10**9)).filter(
        lambda s: s[0] != s[1]
    ),
    max_size=6,
)


@given(swaps=_SWAPS, levels=st.lists(st.integers(0, 10**9), min_size=4, max_size=4))
def test_the_table_keeps_every_swapped_credit_and_one_row_per_tier(
    swaps: list[tuple[str, str, int, int]], levels: list[int]
) -> None:
    tiers = ["bronze", "silver", "gold", "platinum"]
    record = {
        "pools_before": dict(zip(tiers, levels, strict=True)),
        "offers": [
            {"seller": f"pool-{t}", "price": 1, "quantity": n}
            for t, n in zip(tiers, levels, strict=True)
        ],
        "auctions": [],
        "swaps": [{"from": a, "to": b, "in": i, "out": o} for a, b, i, o in swaps],
        "rates": {t: 1_000_000 for t in tiers},
    }
    rows = round_table(record)
    assert sorted(r["tier"] for r in rows) == sorted(tiers)
    assert sum(r["swapped_out"] for r in rows) == sum(s[2] for s in swaps)
    assert sum(r["swapped_in"] for r in rows) == sum(s[3] for s in swaps)
    assert {r["tier"]: r["pool_offered"] for r in rows} == record["pools_before"]
