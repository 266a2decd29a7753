"""Broken object-level authorisation: every route that takes an instance id, called with
another instance's token, is refused (403) or finds nothing (404), and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from serving_support import Api

VICTIM = "vm-gold-2"
ATTACKER = "vm-gold-1"

# (method, path, json body, extra headers) of every route with an instance id
INSTANCE_ROUTES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("get", "/v1/instances/{id}/forecast", None, {}),
    ("put", "/v1/instances/{id}/user-forecast", {"kind": "daily", "values": [0.0] * 24}, {}),
    ("get", "/v1/instances/{id}/user-forecast", None, {}),
    ("delete", "/v1/instances/{id}/user-forecast", None, {}),
    ("get", "/v1/instances/{id}/balances", None, {}),
    ("get", "/v1/instances/{id}/trades", None, {}),
    (
        "post",
        "/v1/instances/{id}/orders",
        {"side": "sell", "price": 1, "quantity": 1_000, "time_in_force": "gtc"},
        {"Idempotency-Key": "steal"},
    ),
    ("get", "/v1/instances/{id}/orders", None, {}),
    ("get", "/v1/instances/{id}/orders/{order}", None, {}),
    ("delete", "/v1/instances/{id}/orders/{order}", None, {}),
]


def _state(api: Api) -> tuple[Any, ...]:
    market = api.services.market
    orders = market.order_rows(VICTIM, state=None, limit=100, offset=0)
    return (
        api.balances(VICTIM),
        [(o.order_id, o.state, o.filled) for o in orders],
        api.services.user_forecasts.get(VICTIM),
    )


@pytest.fixture
def victim(api: Api) -> str:
    """Give the victim credits, funds, a resting order and a user forecast; return its order."""
    api.grant_credits(VICTIM, 20_000)
    api.deposit(VICTIM, 50_000)
    placed = api.client.post(
        f"/v1/instances/{VICTIM}/orders",
        json={"side": "sell", "price": 500, "quantity": 5_000, "time_in_force": "gtc"},
        headers={**api.agent(VICTIM), "Idempotency-Key": "victim-order"},
    )
    assert placed.status_code == 201
    put = api.client.put(
        f"/v1/instances/{VICTIM}/user-forecast",
        json={"kind": "daily", "values": [5.0] * 24},
        headers=api.agent(VICTIM),
    )
    assert put.status_code == 200
    return str(placed.json()["order"]["order_id"])


@pytest.mark.parametrize(("method", "path", "body", "headers"), INSTANCE_ROUTES)
def test_another_instances_token_is_refused_and_changes_nothing(
    api: Api, victim: str, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    before = _state(api)
    url = path.format(id=VICTIM, order=victim)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    response = api.client.request(method, url, headers={**api.agent(ATTACKER), **headers}, **kwargs)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ATTACKER in response.json()["detail"]
    assert _state(api) == before


@pytest.mark.parametrize("method", ["get", "delete"])
def test_own_path_with_anothers_order_id_finds_nothing(api: Api, victim: str, method: str) -> None:
    before = _state(api)
    response = api.client.request(
        method, f"/v1/instances/{ATTACKER}/orders/{victim}", headers=api.agent(ATTACKER)
    )
    assert response.status_code == 404
    assert _state(api) == before


def test_batch_forecasts_naming_another_instance_are_refused(api: Api, victim: str) -> None:
    response = api.client.post(
        "/v1/forecasts/batch",
        json={"instance_ids": [ATTACKER, VICTIM], "horizon": "hour"},
        headers=api.agent(ATTACKER),
    )
    assert response.status_code == 403
    own = api.client.post(
        "/v1/forecasts/batch",
        json={"instance_ids": [ATTACKER], "horizon": "hour"},
        headers=api.agent(ATTACKER),
    )
    assert [f["instance_id"] for f in own.json()["forecasts"]] == [ATTACKER]


def test_a_body_cannot_name_another_owner(api: Api, victim: str) -> None:
    before = _state(api)
    response = api.client.post(
        f"/v1/instances/{ATTACKER}/orders",
        json={
            "side": "sell",
            "price": 1,
            "quantity": 1_000,
            "time_in_force": "gtc",
            "instance_id": VICTIM,
        },
        headers={**api.agent(ATTACKER), "Idempotency-Key": "x"},
    )
    assert response.status_code == 422
    assert _state(api) == before


@pytest.mark.parametrize(("method", "path", "body", "headers"), INSTANCE_ROUTES)
def test_administrators_read_any_instance_but_do_not_act_for_it(
    api: Api, victim: str, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    before = _state(api)
    url = path.format(id=VICTIM, order=victim)
    kwargs: dict[str, Any] = {"json": body} if body is not None else {}
    response = api.client.request(method, url, headers={**api.admin(), **headers}, **kwargs)
    if method == "get":
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert "administrators" in response.json()["detail"]
    assert _state(api) == before
