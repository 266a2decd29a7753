"""Every route authorises its caller before it reads the request: no token, a bad one,
another instance's or an agent's on an administrator route is refused (401/403) however
malformed the body, headers and parameters are. Bodies are parsed strictly: a key twice
in one object is refused with 400 naming the key, a non-finite number with 422, and
neither changes anything."""

from __future__ import annotations

import re
from typing import Any

import pytest
from serving_support import Api

from serving.routes import (
    admin,
    allowances,
    decisions,
    forecasts,
    health,
    instances,
    orders,
    rounds,
    telemetry,
    tiers,
    tokens,
)
from serving.routing import Access, GuardedRoute, route_access

VICTIM = "vm-gold-2"
ATTACKER = "vm-gold-1"
# a body that breaks every rule at once: a duplicate key, a non-finite number, wrong types
GARBAGE = b'{"side": "sell", "side": 7, "price": NaN, "quantity": 1e400, "values": "x"}'
PLACEHOLDERS = {
    "instance_id": VICTIM,
    "tier": "gold",
    "order_id": "x",
    "token_id": "x",
    "round_id": "2026-11-24T15:00Z",
}


ROUTERS = (
    admin,
    allowances,
    decisions,
    forecasts,
    health,
    instances,
    orders,
    rounds,
    telemetry,
    tiers,
    tokens,
)


def _routes() -> list[tuple[str, str, Access | None]]:
    """Every (method, path, access rule) of the service's routers."""
    return [
        (method, route.path, route_access(route.endpoint, route.dependant))
        for module in ROUTERS
        for route in module.router.routes
        if isinstance(route, GuardedRoute)
        for method in sorted(route.methods)
    ]


def _secured_routes() -> list[tuple[str, str, Access]]:
    return [
        (method, re.sub(r"\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], path), rule)
        for method, path, rule in _routes()
        if rule is not None
    ]


def _state(api: Api) -> tuple[Any, ...]:
    market = api.services.market
    orders = market.order_rows(VICTIM, state=None, limit=100, offset=0)
    return (
        api.balances(VICTIM),
        api.balances(ATTACKER),
        [(o.order_id, o.state, o.filled) for o in orders],
        api.services.user_forecasts.get(VICTIM),
        len(api.services.tokens.list()),
    )


def _garbage(api: Api, method: str, path: str, headers: dict[str, str]) -> Any:
    return api.client.request(
        method,
        f"{path}?limit=abc&offset=-1&horizon=century",
        content=GARBAGE,
        headers={**headers, "Content-Type": "application/json", "Idempotency-Key": "bad key!"},
    )


def test_every_route_but_health_needs_a_token(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    served = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    routes = _routes()
    # the routers checked here are every route the app serves
    assert {(m, p) for m, p, _ in routes} == served
    assert {(m, p) for m, p, rule in routes if rule is None} == {("GET", "/v1/health")}
    assert ("POST", "/v1/instances/{instance_id}/orders", Access.ACT) in routes
    assert ("GET", "/v1/instances/{instance_id}/forecast", Access.READ) in routes
    assert len(routes) >= 25


def test_no_token_or_a_bad_one_is_401_whatever_the_request(api: Api) -> None:
    before = _state(api)
    for method, path, _ in _secured_routes():
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = _garbage(api, method, path, headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "errors" not in response.json()
    assert _state(api) == before


def test_a_token_the_route_refuses_is_403_whatever_the_request(api: Api) -> None:
    api.grant_credits(VICTIM, 20_000)
    attacker = api.agent(ATTACKER)
    before = _state(api)
    refused = 0
    for method, path, rule in _secured_routes():
        if rule is Access.TOKEN:
            continue
        # another instance's agent on the victim's routes and on administrator routes
        response = _garbage(api, method, path, attacker)
        assert response.status_code == 403, (method, path, response.text)
        assert "errors" not in response.json()
        refused += 1
        if rule is Access.ACT:
            # administrators do not act for instances
            response = _garbage(api, method, path, api.admin())
            assert response.status_code == 403, (method, path, response.text)
    assert refused >= 15
    assert _state(api) == before


def test_a_collector_token_is_refused_everywhere_but_telemetry(api: Api) -> None:
    from serving.tokens import TokenKind

    token = api.services.tokens.issue(TokenKind.COLLECTOR, "collector-1").token
    collector = {"Authorization": f"Bearer {token}"}
    before = _state(api)
    secured = _secured_routes()
    assert [(m, p) for m, p, rule in secured if rule is Access.COLLECT] == [
        ("POST", "/v1/telemetry")
    ]
    for method, path, rule in secured:
        response = _garbage(api, method, path, collector)
        if rule is Access.COLLECT:
            # authorised: then the body is read, and this one is no batch of readings
            assert response.status_code == 400, response.text
            continue
        assert response.status_code == 403, (method, path, response.text)
        assert "collector" in response.json()["detail"]
    assert _state(api) == before


def test_an_authorised_caller_then_gets_the_body_checked(api: Api) -> None:
    response = _garbage(api, "post", f"/v1/instances/{ATTACKER}/orders", api.agent(ATTACKER))
    # the parser meets the NaN before the object with the duplicate key closes
    assert response.status_code == 422
    assert response.json()["number"] == "NaN"


ORDER = '{"side": "sell", "price": 500, "quantity": 1000, "time_in_force": "gtc"'


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (ORDER + ', "price": 400}', "price"),
        (ORDER + ', "side": "buy"}', "side"),
        ('{"side": "sell", "side": "sell", "price": 500, "quantity": 1000}', "side"),
    ],
)
def test_an_order_naming_a_key_twice_is_refused_and_places_nothing(
    api: Api, body: str, key: str
) -> None:
    api.grant_credits(ATTACKER, 20_000)
    api.agent(ATTACKER)
    before = _state(api)
    response = api.client.post(
        f"/v1/instances/{ATTACKER}/orders",
        content=body,
        headers={**api.agent(ATTACKER), "Content-Type": "application/json", "Idempotency-Key": "d"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["key"] == key
    assert repr(key) in problem["detail"]
    assert _state(api) == before
    # the key was not spent: the same key with a proper body places the order
    placed = api.client.post(
        f"/v1/instances/{ATTACKER}/orders",
        content=ORDER + "}",
        headers={**api.agent(ATTACKER), "Content-Type": "application/json", "Idempotency-Key": "d"},
    )
    assert placed.status_code == 201, placed.text


def test_a_nested_duplicate_key_is_named(api: Api) -> None:
    response = api.client.post(
        f"/v1/instances/{ATTACKER}/decisions",
        content='{"outcome": "hold", "detail": {"why": 1, "why": 2}}',
        headers={**api.agent(ATTACKER), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["key"] == "why"


def _decisions(api: Api) -> list[Any]:
    listed = api.client.get(f"/v1/instances/{ATTACKER}/decisions", headers=api.agent(ATTACKER))
    assert listed.status_code == 200
    return list(listed.json())


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_a_non_finite_decision_detail_is_refused_not_stored_as_null(api: Api, number: str) -> None:
    before = _decisions(api)
    response = api.client.post(
        f"/v1/instances/{ATTACKER}/decisions",
        content=f'{{"outcome": "hold", "detail": {{"spread": {number}}}}}',
        headers={**api.agent(ATTACKER), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["number"] == number
    assert _decisions(api) == before
    finite = api.client.post(
        f"/v1/instances/{ATTACKER}/decisions",
        content='{"outcome": "hold", "detail": {"spread": 1e300}}',
        headers={**api.agent(ATTACKER), "Content-Type": "application/json"},
    )
    assert finite.status_code == 201
    assert finite.json()["detail"] == {"spread": 1e300}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/instances/{id}/orders", '{"side": "sell", "price": NaN, "quantity": 1000}'),
        ("/v1/instances/{id}/user-forecast", '{"kind": "daily", "values": [Infinity]}'),
    ],
)
def test_non_finite_numbers_are_refused_on_every_body(api: Api, path: str, body: str) -> None:
    api.agent(ATTACKER)
    before = _state(api)
    method = "post" if path.endswith("orders") else "put"
    response = api.client.request(
        method,
        path.format(id=ATTACKER),
        content=body,
        headers={**api.agent(ATTACKER), "Content-Type": "application/json", "Idempotency-Key": "n"},
    )
    assert response.status_code == 422, response.text
    assert _state(api) == before
