"""The API over real HTTP (httpx through the ASGI app) on a real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from serving_support import START, Api

from market.ledger import EntryRequest, Transfer, credits_asset, mint_account, pool_account
from serving.tables import api_tokens

PROBLEM = "application/problem+json"


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# health, documents


def test_health_needs_no_token_and_says_forecasts_are_loaded(api: Api) -> None:
    response = api.client.get("/v1/health")
    assert response.json() == {"status": "ok", "forecasts_loaded": True}


def test_openapi_documents_problems_examples_and_bearer_auth(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert "Problem" in document["components"]["schemas"]
    place = document["paths"]["/v1/instances/{instance_id}/orders"]["post"]
    assert set(place["responses"]) >= {"201", "401", "403", "409", "413", "422", "429"}
    assert list(place["responses"]["422"]["content"]) == [PROBLEM]
    assert "Retry-After" in place["responses"]["429"]["headers"]
    with_examples = [
        name for name, schema in document["components"]["schemas"].items() if "examples" in schema
    ]
    assert {"OrderPublic", "BalancesPublic", "ForecastPublic", "DepthPublic"} <= set(with_examples)


# authentication


def test_missing_unknown_and_revoked_tokens_get_401(api: Api) -> None:
    body = _problem(api.client.get("/v1/tiers"), 401)
    assert "Bearer" in body["detail"]
    assert api.client.get("/v1/tiers").headers["www-authenticate"].startswith("Bearer")
    _problem(api.client.get("/v1/tiers", headers={"Authorization": "Bearer cx_nope"}), 401)
    headers = api.agent("vm-gold-1")
    assert api.client.get("/v1/tiers", headers=headers).status_code == 200
    token_id = api.services.tokens.list(subject="vm-gold-1")[0].token_id
    revoked = api.client.delete(f"/v1/admin/tokens/{token_id}", headers=api.admin())
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    _problem(api.client.get("/v1/tiers", headers=headers), 401)


def test_token_is_shown_once_and_stored_only_as_its_sha256(api: Api) -> None:
    response = api.client.post(
        "/v1/admin/tokens", json={"kind": "agent", "subject": "vm-silver-1"}, headers=api.admin()
    )
    assert response.status_code == 201
    issued = response.json()
    token = issued["token"]
    assert token.startswith("cx_")
    assert len(token) >= 3 + 43
    with api.services.market.engine.connect() as conn:
        row = conn.execute(
            sa.select(api_tokens).where(api_tokens.c.token_id == issued["token_id"])
        ).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    database = api.services.settings.home / "ledger.db"
    assert token.encode() not in database.read_bytes()
    listed = api.client.get("/v1/admin/tokens", headers=api.admin()).json()
    assert all("token" not in t for t in listed)
    ok = api.client.get(
        "/v1/instances/vm-silver-1/balances", headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status_code == 200


def test_tokens_for_unknown_instances_are_refused(api: Api) -> None:
    response = api.client.post(
        "/v1/admin/tokens", json={"kind": "agent", "subject": "vm-nowhere"}, headers=api.admin()
    )
    assert _problem(response, 404)["instance_id"] == "vm-nowhere"
    assert api.services.tokens.list(subject="vm-nowhere") == []


# forecasts


def test_forecast_gives_point_quantiles_version_and_generated_at(api: Api) -> None:
    response = api.client.get(
        "/v1/instances/vm-gold-1/forecast",
        params={"horizon": "day"},
        headers=api.agent("vm-gold-1"),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "1"
    assert body["generated_at"].startswith("2026-11-24T15:00:00")
    assert body["origin"] == "batch"
    assert len(body["points"]) == 24
    first = body["points"][0]
    # vm-gold-1 is the fifth instance of the fixture: level 10 + 4, plus h/100
    assert first["yhat"] == pytest.approx(14.01)
    assert first["q50"] < first["yhat"] < first["q90"]
    hour = api.client.get(
        "/v1/instances/vm-gold-1/forecast",
        params={"horizon": "hour"},
        headers=api.agent("vm-gold-1"),
    )
    assert len(hour.json()["points"]) == 1


def test_forecast_rejects_bad_horizons_and_reports_missing_ones(api: Api) -> None:
    headers = api.admin()
    body = _problem(
        api.client.get("/v1/instances/vm-gold-1/forecast?horizon=month", headers=headers), 422
    )
    assert body["errors"][0]["loc"] == ["query", "horizon"]
    _problem(api.client.get("/v1/instances/vm-unknown/forecast", headers=headers), 404)


def test_forecasts_before_any_prediction_are_503(make_api) -> None:
    api = make_api(predictions=False)
    response = api.client.get("/v1/instances/vm-gold-1/forecast", headers=api.admin())
    assert "predict flow" in _problem(response, 503)["detail"]


def test_batch_forecasts_list_found_and_missing(api: Api) -> None:
    response = api.client.post(
        "/v1/forecasts/batch",
        json={"instance_ids": ["vm-gold-1", "vm-absent", "vm-bronze-2"], "horizon": "hour"},
        headers=api.admin(),
    )
    body = response.json()
    assert [f["instance_id"] for f in body["forecasts"]] == ["vm-gold-1", "vm-bronze-2"]
    assert body["missing"] == ["vm-absent"]
    too_many = {"instance_ids": [f"vm-{i}" for i in range(101)], "horizon": "hour"}
    _problem(api.client.post("/v1/forecasts/batch", json=too_many, headers=api.admin()), 422)


def test_user_forecast_set_read_apply_and_clear(api: Api) -> None:
    headers = api.agent("vm-gold-1")
    url = "/v1/instances/vm-gold-1/user-forecast"
    profile = [float(h) for h in range(24)]
    put = api.client.put(url, json={"kind": "daily", "values": profile}, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()["forecast"] == {"kind": "daily", "values": profile}
    assert put.json()["updated_by"] == "vm-gold-1"
    forecast = api.client.get(
        "/v1/instances/vm-gold-1/forecast?horizon=day", headers=headers
    ).json()
    # the day after 15:00 starts at 16:00 UTC, so the profile's hour 16 comes first
    assert [p["yhat"] for p in forecast["points"][:3]] == [16.0, 17.0, 18.0]
    assert {p["source"] for p in forecast["points"]} == {"user"}
    assert forecast["points"][0]["q90"] == 16.0
    assert api.client.get(url, headers=api.admin()).json()["forecast"]["values"] == profile
    assert api.client.delete(url, headers=headers).status_code == 204
    _problem(api.client.get(url, headers=headers), 404)
    learned = api.client.get("/v1/instances/vm-gold-1/forecast?horizon=day", headers=headers)
    assert {p["source"] for p in learned.json()["points"]} == {"learned"}
    _problem(api.client.delete(url, headers=headers), 404)


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "daily", "values": [1.0] * 23},
        {"kind": "weekly", "values": [1.0] * 24},
        {"kind": "daily", "values": [-1.0] * 24},
        {"kind": "daily", "values": [1.0] * 24, "source": "learned"},
        {"kind": "hourly", "values": [1.0] * 24},
    ],
)
def test_bad_user_forecasts_are_422_and_store_nothing(api: Api, document: dict) -> None:
    url = "/v1/instances/vm-gold-1/user-forecast"
    _problem(api.client.put(url, json=document, headers=api.agent("vm-gold-1")), 422)
    assert api.services.user_forecasts.get("vm-gold-1") is None


# market reads


def test_tiers_pools_and_rates_are_exact_integers(api: Api) -> None:
    headers = api.agent("vm-bronze-1")
    tiers = api.client.get("/v1/tiers", headers=headers).json()
    assert [t["name"] for t in tiers] == ["bronze", "silver", "gold", "platinum"]
    gold = api.client.get("/v1/tiers/gold", headers=headers).json()
    assert gold["exchange_rate_micro"] == 2_200_000
    assert gold["exchange_rate"] == "2.2"
    rates = api.client.get("/v1/exchange-rates", headers=headers).json()
    assert {r["tier"]: r["exchange_rate_micro"] for r in rates}["silver"] == 1_500_000
    pools = api.client.get("/v1/pools", headers=headers).json()
    assert all(p["headroom"] == p["capacity"] - p["available"] for p in pools)
    _problem(api.client.get("/v1/tiers/diamond", headers=headers), 404)


# orders


def _place(api: Api, instance_id: str, key: str, **order) -> object:
    body = {"time_in_force": "gtc", **order}
    return api.client.post(
        f"/v1/instances/{instance_id}/orders",
        json=body,
        headers={**api.agent(instance_id), "Idempotency-Key": key},
    )


def test_crossing_orders_trade_and_settle_exactly(api: Api) -> None:
    api.grant_credits("vm-gold-2", 10_000)
    api.deposit("vm-gold-1", 100_000)
    sell = _place(api, "vm-gold-2", "s1", side="sell", price=100, quantity=4_000)
    assert sell.status_code == 201, sell.text
    assert sell.json()["order"]["state"] == "open"
    depth = api.client.get("/v1/tiers/gold/depth", headers=api.agent("vm-gold-1")).json()
    assert depth["asks"] == [{"price": 100, "quantity": 4_000, "orders": 1}]
    buy = _place(api, "vm-gold-1", "b1", side="buy", price=120, quantity=3_000)
    assert buy.status_code == 201, buy.text
    placed = buy.json()
    assert placed["order"]["state"] == "filled"
    (trade,) = placed["trades"]
    assert trade["side"] == "buy"
    assert trade["price"] == 100
    assert trade["quantity"] == 3_000
    value, fee = 3_000 * 100 // 1000, trade["fee"]
    assert trade["value"] == value
    assert fee == value * 20 // 10_000
    assert api.balances("vm-gold-1") == (3_000, 100_000 - value - fee)
    # the seller's remaining 1,000 milli-credits stay in escrow
    assert api.balances("vm-gold-2") == (10_000 - 4_000, value)
    own = api.client.get("/v1/instances/vm-gold-2/trades", headers=api.agent("vm-gold-2")).json()
    assert [(t["side"], t["quantity"]) for t in own] == [("sell", 3_000)]
    tape = api.client.get("/v1/tiers/gold/trades", headers=api.agent("vm-gold-1")).json()
    assert len(tape) == 1
    assert "buyer" not in tape[0]
    assert "seller" not in tape[0]
    orders = api.client.get("/v1/instances/vm-gold-2/orders", headers=api.agent("vm-gold-2"))
    assert [(o["state"], o["remaining"]) for o in orders.json()] == [("partially_filled", 1_000)]


def test_cancel_returns_escrow_and_a_finished_order_cannot_be_cancelled(api: Api) -> None:
    api.deposit("vm-silver-1", 50_000)
    placed = _place(api, "vm-silver-1", "k1", side="buy", price=200, quantity=10_000).json()
    order_id = placed["order"]["order_id"]
    assert api.balances("vm-silver-1")[1] < 50_000
    url = f"/v1/instances/vm-silver-1/orders/{order_id}"
    cancelled = api.client.delete(url, headers=api.agent("vm-silver-1"))
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert api.balances("vm-silver-1") == (0, 50_000)
    again = _problem(api.client.delete(url, headers=api.agent("vm-silver-1")), 409)
    assert again["state"] == "cancelled"
    assert api.client.get(url, headers=api.agent("vm-silver-1")).json()["state"] == "cancelled"


def test_idempotent_replay_returns_the_first_response_and_places_once(api: Api) -> None:
    api.deposit("vm-bronze-1", 10_000)
    first = _place(api, "vm-bronze-1", "same-key", side="buy", price=50, quantity=2_000)
    assert first.status_code == 201
    assert first.headers["idempotent-replayed"] == "false"
    after_first = api.balances("vm-bronze-1")
    replay = _place(api, "vm-bronze-1", "same-key", side="buy", price=50, quantity=2_000)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert api.balances("vm-bronze-1") == after_first
    orders = api.client.get("/v1/instances/vm-bronze-1/orders", headers=api.agent("vm-bronze-1"))
    assert len(orders.json()) == 1


def test_same_key_with_another_body_is_409_and_changes_nothing(api: Api) -> None:
    api.deposit("vm-bronze-1", 10_000)
    _place(api, "vm-bronze-1", "k", side="buy", price=50, quantity=2_000)
    before = api.balances("vm-bronze-1")
    body = _problem(_place(api, "vm-bronze-1", "k", side="buy", price=51, quantity=2_000), 409)
    assert body["idempotency_key"] == "k"
    assert api.balances("vm-bronze-1") == before
    # the key is scoped to the instance: another instance may use it
    api.deposit("vm-bronze-2", 10_000)
    assert _place(api, "vm-bronze-2", "k", side="buy", price=51, quantity=2_000).status_code == 201


def test_concurrent_requests_with_one_key_place_one_order(api: Api) -> None:
    api.deposit("vm-platinum-1", 100_000)
    headers = {**api.agent("vm-platinum-1"), "Idempotency-Key": "burst"}
    order = {"side": "buy", "price": 10, "quantity": 1_000, "time_in_force": "gtc"}

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/instances/vm-platinum-1/orders", json=order, headers=headers)
                    for _ in range(8)
                )
            )

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["order"]["order_id"] for r in responses}) == 1
    rows = api.services.market.order_rows("vm-platinum-1", state=None, limit=100, offset=0)
    assert len(rows) == 1
    assert api.balances("vm-platinum-1")[1] == 100_000 - 10 - 0  # 1 credit at 10, fee 0


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({"side": "buy", "price": 10, "quantity": 1_000, "owner": "vm-gold-2"}, "owner"),
        ({"side": "buy", "price": 10, "quantity": 1_000, "tier": "platinum"}, "tier"),
        ({"side": "buy", "price": 10.5, "quantity": 1_000}, "price"),
        ({"side": "buy", "price": 10, "quantity": "1000"}, "quantity"),
        ({"side": "buy", "price": 0, "quantity": 1_000}, "price"),
        ({"side": "hold", "price": 10, "quantity": 1_000}, "side"),
        ({"side": "buy", "price": 10, "quantity": 10**16}, "quantity"),
    ],
)
def test_malformed_orders_are_422_and_change_nothing(api: Api, order: dict, field: str) -> None:
    api.deposit("vm-gold-1", 10_000)
    body = _problem(_place(api, "vm-gold-1", "bad", **order), 422)
    assert any(field in e["loc"] for e in body["errors"])
    assert api.balances("vm-gold-1") == (0, 10_000)
    assert api.services.market.order_rows("vm-gold-1", state=None, limit=5, offset=0) == []


def test_orders_need_an_idempotency_key(api: Api) -> None:
    response = api.client.post(
        "/v1/instances/vm-gold-1/orders",
        json={"side": "buy", "price": 10, "quantity": 1_000, "time_in_force": "gtc"},
        headers=api.agent("vm-gold-1"),
    )
    assert _problem(response, 422)["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_unfunded_and_expired_orders_are_409_with_their_fields(api: Api) -> None:
    api.deposit("vm-gold-1", 100)
    body = _problem(_place(api, "vm-gold-1", "poor", side="buy", price=100, quantity=5_000), 409)
    assert body["title"] == "Insufficient escrow"
    assert body["balance"] == 100
    assert body["required"] > 100
    past = (START - timedelta(hours=1)).isoformat()
    late = _place(
        api,
        "vm-gold-1",
        "late",
        side="buy",
        price=1,
        quantity=1,
        time_in_force="gtt",
        expires_at=past,
    )
    assert _problem(late, 409)["field"] == "expires_at"
    assert api.balances("vm-gold-1") == (0, 100)


def test_auction_orders_wait_and_clear_when_an_admin_runs_the_auction(api: Api) -> None:
    api.grant_credits("vm-silver-2", 5_000)
    api.deposit("vm-silver-1", 10_000)
    ask = _place(api, "vm-silver-2", "a", side="sell", price=90, quantity=5_000, venue="auction")
    bid = _place(api, "vm-silver-1", "b", side="buy", price=110, quantity=5_000, venue="auction")
    assert ask.json()["order"]["venue"] == "auction"
    assert bid.json()["order"]["state"] == "open"
    _problem(
        api.client.post("/v1/admin/tiers/silver/auctions", headers=api.agent("vm-silver-1")), 403
    )
    result = api.client.post("/v1/admin/tiers/silver/auctions", headers=api.admin())
    assert result.status_code == 201, result.text
    assert result.json()["volume"] == 5_000
    assert 90 <= result.json()["clearing_price"] <= 110
    listed = api.client.get("/v1/tiers/silver/auctions", headers=api.agent("vm-silver-1")).json()
    assert [a["auction_id"] for a in listed] == [result.json()["auction_id"]]
    assert api.balances("vm-silver-1")[0] == 5_000


# administrators


def test_admin_sets_rates_with_an_audit_and_swaps_pools_exactly(api: Api) -> None:
    response = api.client.put(
        "/v1/admin/exchange-rates/gold",
        json={"exchange_rate_micro": 2_400_000, "reason": "gold saturated"},
        headers=api.admin(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["old_rate_micro"] == 2_200_000
    changes = api.client.get("/v1/admin/exchange-rate-changes", headers=api.admin()).json()
    assert [(c["tier"], c["actor"], c["reason"]) for c in changes] == [
        ("gold", "admin", "gold saturated")
    ]
    market = api.services.market
    market.ledger.post(
        EntryRequest(
            (Transfer(mint_account(credits_asset("bronze")), pool_account("bronze"), 100_000),),
            "accrual",
            "test",
        )
    )
    swap = api.client.post(
        "/v1/admin/swaps",
        json={"source_tier": "bronze", "destination_tier": "gold", "amount": 10_001},
        headers={**api.admin(), "Idempotency-Key": "swap-1"},
    ).json()
    assert swap["amount_in"] * swap["source_rate_micro"] == (
        swap["amount_out"] * swap["destination_rate_micro"] + swap["remainder"]
    )
    assert swap["destination_rate_micro"] == 2_400_000
    replay = api.client.post(
        "/v1/admin/swaps",
        json={"source_tier": "bronze", "destination_tier": "gold", "amount": 10_001},
        headers={**api.admin(), "Idempotency-Key": "swap-1"},
    ).json()
    assert replay["entry_id"] == swap["entry_id"]
    assert market.ledger.balance(pool_account("bronze")) == 100_000 - 10_001
    verify = api.client.get("/v1/admin/ledger/verify", headers=api.admin()).json()
    assert verify["ok"] is True
    assert verify["entries"] >= 2


def test_admin_rate_changes_outside_the_domain_are_refused(api: Api) -> None:
    body = {"exchange_rate_micro": 0, "reason": "free credits"}
    _problem(api.client.put("/v1/admin/exchange-rates/gold", json=body, headers=api.admin()), 422)
    body = {"exchange_rate_micro": 1_000_000, "reason": "x", "actor": "root"}
    _problem(api.client.put("/v1/admin/exchange-rates/gold", json=body, headers=api.admin()), 422)
    assert api.client.get("/v1/admin/exchange-rate-changes", headers=api.admin()).json() == []


def test_an_admin_token_outside_the_cem_administrators_is_refused_by_the_cem(api: Api) -> None:
    from serving.tokens import TokenKind

    other = api.services.tokens.issue(TokenKind.ADMIN, "mallory").token
    response = api.client.put(
        "/v1/admin/exchange-rates/gold",
        json={"exchange_rate_micro": 9_000_000, "reason": "mine"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert _problem(response, 403)["actor"] == "mallory"
    assert api.services.market.tiers.tier("gold").exchange_rate == 2_200_000


ADMIN_ROUTES = [
    ("put", "/v1/admin/exchange-rates/gold", {"exchange_rate_micro": 1, "reason": "x"}),
    ("get", "/v1/admin/exchange-rate-changes", None),
    ("post", "/v1/admin/swaps", {"source_tier": "bronze", "destination_tier": "gold", "amount": 1}),
    ("post", "/v1/admin/deposits", {"instance_id": "vm-gold-1", "amount": 1_000_000}),
    ("post", "/v1/admin/tiers/gold/auctions", None),
    ("get", "/v1/admin/ledger/verify", None),
    ("post", "/v1/admin/tokens", {"kind": "admin", "subject": "admin"}),
    ("get", "/v1/admin/tokens", None),
    ("delete", "/v1/admin/tokens/0123abcd", None),
]


@pytest.mark.parametrize(("method", "url", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_agents_with_403(api: Api, method: str, url: str, body) -> None:
    before = api.balances("vm-gold-1")
    kwargs = {"json": body} if body is not None else {}
    response = api.client.request(method, url, headers=api.agent("vm-gold-1"), **kwargs)
    assert "administrators" in _problem(response, 403)["detail"]
    assert api.balances("vm-gold-1") == before
    assert api.services.market.tiers.tier("gold").exchange_rate == 2_200_000


# limits


def test_rate_limit_is_per_token_with_retry_after(make_api) -> None:
    api = make_api(rate_limit_per_second=0.5, rate_limit_burst=3)
    gold = api.agent("vm-gold-1")
    codes = [api.client.get("/v1/tiers", headers=gold).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.client.get("/v1/tiers", headers=gold)
    body = _problem(limited, 429)
    assert int(limited.headers["retry-after"]) == 2
    assert "retry" in body["detail"]
    assert api.client.get("/v1/tiers", headers=api.agent("vm-gold-2")).status_code == 200


def test_page_sizes_are_capped(api: Api) -> None:
    headers = api.agent("vm-gold-1")
    response = api.client.get("/v1/instances/vm-gold-1/orders?limit=101", headers=headers)
    assert _problem(response, 422)["errors"][0]["loc"] == ["query", "limit"]
    assert (
        api.client.get("/v1/instances/vm-gold-1/orders?limit=100", headers=headers).status_code
        == 200
    )


def test_bodies_over_the_cap_are_413_declared_or_streamed(make_api) -> None:
    api = make_api(max_body_bytes=2048)
    headers = {
        **api.agent("vm-gold-1"),
        "Idempotency-Key": "big",
        "content-type": "application/json",
    }
    big = b'{"side": "buy", "pad": "' + b"x" * 4096 + b'"}'
    url = "/v1/instances/vm-gold-1/orders"
    declared = api.client.post(url, content=big, headers=headers)
    assert _problem(declared, 413)["max_bytes"] == 2048

    def chunks():
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    streamed = api.client.post(url, content=chunks(), headers=headers)
    _problem(streamed, 413)
    assert api.services.market.order_rows("vm-gold-1", state=None, limit=5, offset=0) == []


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    _problem(api.client.get("/v1/nowhere"), 404)
    response = api.client.patch("/v1/tiers", headers=api.admin())
    _problem(response, 405)
    assert "GET" in response.headers["allow"]
