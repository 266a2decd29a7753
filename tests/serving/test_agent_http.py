"""The agent as an HTTP client of the real app: trading, retries, idempotency, refusals,
and the decision logs it leaves behind."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from serving_support import Api

from market.agents.decision import OwnerPolicy
from market.cem.automation import CemAutomation, TierState, apply_decision
from market.decisions import SqlDecisionLog
from market.errors import TransportError
from market.ledger import EntryRequest, Transfer, credits_asset, mint_account, pool_account
from serving.agent_client import ApiTransport, HttpAgent
from serving.main import create_app

SELLER, BUYER = "vm-gold-1", "vm-gold-2"  # 4 and 8 vCPUs of gold (20 % baseline)


class Network:
    """The outside world between agent and API: it can lose responses or refuse service."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lose_order_responses = 0
        self.unavailable = 0
        self.down = False
        self.refuse_cancels = False
        self.posts: list[str | None] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused")
        if self.unavailable:
            self.unavailable -= 1
            return httpx.Response(503, headers={"retry-after": "0"}, text="busy")
        if method == "DELETE" and self.refuse_cancels:
            # the order filled between the agent's read and its cancel
            return httpx.Response(409, json={"title": "Conflict", "detail": "order is filled"})
        response = self.client.request(method, url, **kwargs)
        if method == "POST" and url.endswith("/orders"):
            self.posts.append((kwargs.get("headers") or {}).get("Idempotency-Key"))
            if self.lose_order_responses:
                self.lose_order_responses -= 1
                raise httpx.ReadError("connection reset after the request was sent")
        return response


def token(api: Api, instance_id: str) -> str:
    return api.agent(instance_id)["Authorization"].removeprefix("Bearer ")


def agent(api: Api, instance_id: str, vcpus: int, network: Network | None = None, **policy: Any):
    waits: list[float] = []
    transport = ApiTransport(network or api.client, token(api, instance_id), sleep=waits.append)
    return HttpAgent(transport, instance_id, vcpus, OwnerPolicy(**policy), clock=api.clock), waits


def busy(api: Api, instance_id: str, level: float = 90.0) -> None:
    response = api.client.put(
        f"/v1/instances/{instance_id}/user-forecast",
        json={"kind": "daily", "values": [level] * 24},
        headers=api.agent(instance_id),
    )
    assert response.status_code == 200, response.text


def decisions(api: Api, instance_id: str, **params: Any) -> list[dict]:
    response = api.client.get(
        f"/v1/instances/{instance_id}/decisions", params=params, headers=api.agent(instance_id)
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_seller_and_a_buyer_trade_through_the_api(api: Api) -> None:
    api.grant_credits(SELLER, 200_000)
    api.deposit(BUYER, 2_000_000)
    busy(api, BUYER)
    # the buyer values credits more than the seller: they trade
    seller, _ = agent(api, SELLER, 4, throttle_cost=400)
    buyer, _ = agent(api, BUYER, 8, throttle_cost=300)
    sold, results = seller.run_once()
    assert sold.outcome == "orders"
    assert [r.error for r in results] == [None]
    bought, results = buyer.run_once()
    assert bought.outcome == "orders"
    assert [r.error for r in results] == [None]
    seller_credits, _ = api.balances(SELLER)
    buyer_credits, buyer_funds = api.balances(BUYER)
    assert seller_credits < 200_000 - sold.intents[0].quantity + 1  # the ask holds the rest
    assert buyer_credits > 0
    assert buyer_funds < 2_000_000
    trades = api.client.get(f"/v1/instances/{BUYER}/trades", headers=api.agent(BUYER)).json()
    assert trades
    assert trades[0]["side"] == "buy"
    # the market is expected to pay less than its median need is worth to the seller,
    # so it offers only what its upper quantile needs, at three tenths of its value
    assert sold.spare <= sold.intents[0].quantity <= 200_000
    assert sold.intents[0].price == 120
    # the buyer bids what its median need is worth, net of the fee
    assert bought.intents[0].price == 224
    logged = decisions(api, SELLER)
    assert logged[0]["outcome"] == "orders"
    assert logged[0]["detail"]["valuation"]["ask_price"] == sold.intents[0].price
    admin_view = api.client.get(
        "/v1/admin/decisions", params={"kind": "agent"}, headers=api.admin()
    ).json()
    assert {d["subject"] for d in admin_view} == {SELLER, BUYER}
    assert api.client.get("/v1/admin/ledger/verify", headers=api.admin()).json()["ok"]


def test_a_lost_response_is_retried_under_the_same_key_and_books_once(api: Api) -> None:
    api.grant_credits(SELLER, 200_000)
    network = Network(api.client)
    network.lose_order_responses = 1
    seller, waits = agent(api, SELLER, 4, network)
    decision, results = seller.run_once()
    assert [r.error for r in results] == [None]
    assert len(network.posts) == 2
    assert network.posts[0] == network.posts[1] == decision.intents[0].key
    assert waits == [pytest.approx(0.2)]
    listed = api.client.get(
        f"/v1/instances/{SELLER}/orders", headers=api.agent(SELLER), params={"state": "open"}
    ).json()
    assert [o["order_id"] for o in listed] == [results[0].order_id]
    credits, _ = api.balances(SELLER)
    assert credits == 200_000 - decision.intents[0].quantity  # escrowed once


def test_503_is_retried_and_a_dead_api_raises_after_every_retry(api: Api) -> None:
    network = Network(api.client)
    network.unavailable = 2
    transport = ApiTransport(network, token(api, SELLER), sleep=lambda _s: None)
    assert transport.json("GET", f"/v1/instances/{SELLER}/balances")["tier"] == "gold"
    network.down = True
    waits: list[float] = []
    dead = ApiTransport(network, "cx_x", retries=3, backoff=0.5, sleep=waits.append)
    with pytest.raises(TransportError, match="no answer: ConnectError"):
        dead.request("GET", "/v1/tiers")
    assert waits == [0.5, 1.0, 2.0]


def test_a_market_refusal_is_logged_visible_and_moves_nothing(api: Api) -> None:
    api.deposit(BUYER, 2_000_000)
    busy(api, BUYER)
    with api.services.market.lock:
        api.services.market.venue.set_limits(BUYER, max_bid=1)
    buyer, _ = agent(api, BUYER, 8)
    decision, results = buyer.run_once()
    assert decision.outcome == "orders"
    (refused,) = results
    assert refused.error is not None
    assert "at most 1" in refused.error
    assert api.balances(BUYER) == (0, 2_000_000)
    (logged,) = decisions(api, BUYER, outcome="rejected")
    assert logged["detail"]["error_type"] == "Standing limit violation"


def test_an_owner_budget_of_zero_blocks_buying_and_says_so(api: Api) -> None:
    busy(api, BUYER)
    buyer, _ = agent(api, BUYER, 8, budget=0)
    decision, results = buyer.run_once()
    assert decision.outcome == "blocked"
    assert results == []
    (logged,) = decisions(api, BUYER)
    assert logged["outcome"] == "blocked"
    assert "budget 0" in logged["detail"]["reasons"][0]


def test_without_forecasts_the_agent_falls_back_and_says_so(make_api) -> None:
    api = make_api(predictions=False)
    api.grant_credits(SELLER, 200_000)
    seller, _ = agent(api, SELLER, 4)
    decision, _ = seller.run_once()
    assert decision.outcome == "fallback"
    assert not [i for i in decision.intents if i.side == "sell"]
    (logged,) = decisions(api, SELLER)
    assert logged["outcome"] == "fallback"
    assert "no forecast" in logged["detail"]["reasons"][0]


def test_decision_logs_are_private_and_manual_rates_are_released_by_admins(api: Api) -> None:
    other = api.client.get(f"/v1/instances/{BUYER}/decisions", headers=api.agent(SELLER))
    assert other.status_code == 403
    forged = api.client.post(
        f"/v1/instances/{BUYER}/decisions", json={"outcome": "orders"}, headers=api.agent(SELLER)
    )
    assert forged.status_code == 403
    bad = api.client.post(
        f"/v1/instances/{SELLER}/decisions",
        json={"outcome": "Bad Word!"},
        headers=api.agent(SELLER),
    )
    assert bad.status_code == 422
    assert api.client.get("/v1/admin/decisions", headers=api.agent(SELLER)).status_code == 403
    rate = api.client.put(
        "/v1/admin/exchange-rates/gold",
        json={"exchange_rate_micro": 2_500_000, "reason": "new hardware"},
        headers=api.admin(),
    )
    assert rate.status_code == 200, rate.text
    pins = api.client.get("/v1/admin/cem/manual-rates", headers=api.admin()).json()
    assert pins == [{"tier": "gold", "exchange_rate_micro": 2_500_000}]
    api.clock.advance(timedelta(seconds=1))
    released = api.client.post("/v1/admin/cem/manual-rates/gold/release", headers=api.admin())
    assert released.status_code == 201
    assert released.json()["outcome"] == "manual_rate_released"
    assert api.client.get("/v1/admin/cem/manual-rates", headers=api.admin()).json() == []
    missing = api.client.post("/v1/admin/cem/manual-rates/iron/release", headers=api.admin())
    assert missing.status_code == 404


@pytest.mark.postgres
def test_the_agent_and_its_log_work_on_postgresql(pg_url: str, make_api) -> None:
    api = make_api(database_url=pg_url)
    api.grant_credits(SELLER, 200_000)
    seller, _ = agent(api, SELLER, 4)
    decision, results = seller.run_once()
    assert [r.error for r in results] == [None]
    (logged,) = decisions(api, SELLER)
    assert logged["outcome"] == decision.outcome == "orders"
    assert logged["detail"]["spare"] == decision.spare


def test_a_failed_cancel_holds_back_the_replacement(api: Api) -> None:
    api.grant_credits(SELLER, 200_000)
    network = Network(api.client)
    seller, _ = agent(api, SELLER, 4, network, throttle_cost=400)
    first, _ = seller.run_once()
    (ask,) = first.intents
    busy(api, SELLER, 15.0)  # a busier forecast: the agent wants a smaller ask
    network.refuse_cancels = True
    second, results = seller.run_once()
    assert [(i.action, i.side) for i in second.intents] == [("cancel", "sell"), ("place", "sell")]
    assert [r.error_type for r in results] == ["Conflict", "CancelFailed"]
    credits, _ = api.balances(SELLER)
    assert credits == 200_000 - ask.quantity  # only the first ask holds credits
    logged = decisions(api, SELLER, outcome="rejected")
    assert {d["detail"]["error_type"] for d in logged} == {"Conflict", "CancelFailed"}


def test_the_agent_over_a_real_socket(api: Api) -> None:
    api.grant_credits(SELLER, 200_000)
    app = create_app(api.services.settings, api.clock, services=api.services)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            transport = ApiTransport(client, token(api, SELLER), sleep=lambda _s: None)
            decision, results = HttpAgent(transport, SELLER, 4, clock=api.clock).run_once()
    finally:
        server.should_exit = True
        thread.join(10)
    assert decision.outcome == "orders"
    assert [r.error for r in results] == [None]
    assert api.balances(SELLER)[0] == 200_000 - decision.intents[0].quantity
    assert decisions(api, SELLER)[0]["outcome"] == "orders"


def test_an_administrator_sees_why_a_rate_moved_and_a_swap_happened(api: Api) -> None:
    market = api.services.market
    market.ledger.post(
        EntryRequest(
            (Transfer(mint_account(credits_asset("silver")), pool_account("silver"), 900_000),),
            "seed",
            "test",
        )
    )
    states = [
        TierState(
            p.tier, p.exchange_rate, 400_000 if p.tier == "gold" else 0, p.available, p.capacity
        )
        for p in market.tiers.pools(market.ledger)
    ]
    automation = CemAutomation()
    with market.lock:
        decision = automation.step(states, api.clock())
        apply_decision(market.exchange, decision, automation.policy, SqlDecisionLog(market.engine))
    swaps = api.client.get(
        "/v1/admin/decisions", params={"kind": "cem", "outcome": "swap"}, headers=api.admin()
    ).json()
    assert [(s["subject"], s["detail"]["source_tier"]) for s in swaps] == [("gold", "silver")]
    (gold,) = api.client.get(
        "/v1/admin/decisions",
        params={"kind": "cem", "subject": "gold", "outcome": "rate"},
        headers=api.admin(),
    ).json()
    assert gold["detail"]["demand"] == 400_000
    assert gold["detail"]["new_rate"] > gold["detail"]["old_rate"]
    changes = api.client.get("/v1/admin/exchange-rate-changes", headers=api.admin()).json()
    assert changes[-1]["reason"].startswith("cem-auto:")


def test_the_owner_sets_its_value_and_its_agent_prices_from_it(api: Api) -> None:
    path = f"/v1/instances/{BUYER}/owner-value"
    assert api.client.get(path, headers=api.agent(BUYER)).status_code == 404
    for bad in (0, -5, 10**10, "100", 1.5, True, None):
        refused = api.client.put(path, json={"value": bad}, headers=api.agent(BUYER))
        assert refused.status_code == 422, bad
    # another instance's agent may not set it
    assert api.client.put(path, json={"value": 9}, headers=api.agent(SELLER)).status_code in (
        403,
        404,
    )
    assert api.client.get(path, headers=api.agent(BUYER)).status_code == 404
    stored = api.client.put(path, json={"value": 400}, headers=api.agent(BUYER))
    assert stored.status_code == 200
    assert stored.json()["value"] == 400
    assert api.client.get(path, headers=api.admin()).json()["value"] == 400
    api.deposit(BUYER, 2_000_000)
    busy(api, BUYER)
    buyer, _ = agent(api, BUYER, 8, throttle_cost=100)
    bought, _ = buyer.run_once()
    # three quarters of 400, net of the 20 bps fee: the API's value, not the policy's 100
    assert bought.valuation is not None
    assert bought.valuation.value == 400
    assert bought.intents[0].price == 299
    assert api.client.delete(path, headers=api.agent(BUYER)).status_code == 204
    assert api.client.delete(path, headers=api.agent(BUYER)).status_code == 404
