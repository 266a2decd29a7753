"""An order's idempotency key commits with the order: a process killed before the
response is stored, or a key that cannot be recorded, never lets a retry place twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from serving_support import START, Api

from market.clock import ManualClock
from market.errors import MarketError
from market.venue.handling import OrderRequest, t_orders
from market.venue.orders import Side, TimeInForce
from serving.market_service import request_fingerprint
from serving.render import render_placement, render_stored_placement
from serving.schemas import GoodTillCancelledOrder
from serving.services import build_services
from serving.settings import Settings
from serving.tables import api_idempotency

BID = {"side": "buy", "price": 100, "quantity": 4_000, "time_in_force": "gtc"}


def _fingerprint(body: dict[str, object]) -> str:
    # as the route computes it, over the validated order with its defaults
    return request_fingerprint(GoodTillCancelledOrder(**body).model_dump(mode="json"))  # type: ignore[arg-type]


def _place_and_die(home: Path, first_response: Path) -> None:
    # the service as `creditx serve` runs it, up to the moment an order and its key
    # committed and the response is sent, but not yet stored
    services = build_services(Settings(home=home), ManualClock(START), champion=None)
    services.market.exchange.deposit_funds("vm-gold-1", 1_000_000, actor="admin")
    ticket = (
        OrderRequest("vm-gold-1", Side.BUY, 100, 4_000, TimeInForce.GTC, None),
        False,
        "orders:vm-gold-1",
        "crash-key",
        _fingerprint(BID),
    )
    (response,) = services.market.place_batch([ticket], render_placement, render_stored_placement)
    assert services.market.unsaved_responses == 1
    first_response.write_text(getattr(response, "body", repr(response)))
    os.kill(os.getpid(), signal.SIGKILL)


def _orders(api: Api, owner: str) -> list[sa.Row]:
    query = sa.select(t_orders).where(t_orders.c.owner == owner)
    with api.services.market.engine.connect() as conn:
        return list(conn.execute(query))


@pytest.mark.slow
def test_a_retry_after_a_kill_before_the_response_is_stored_places_nothing(
    tmp_path: Path, make_api
) -> None:
    home = tmp_path / "killed"
    first_file = tmp_path / "first.json"
    child = multiprocessing.get_context("spawn").Process(
        target=_place_and_die, args=(home, first_file)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    first = json.loads(first_file.read_text())
    order_id = first["order"]["order_id"]
    engine = sa.create_engine(f"sqlite:///{home / 'ledger.db'}")
    with engine.connect() as conn:
        record = conn.execute(sa.select(api_idempotency)).one()
    engine.dispose()
    assert (record.idempotency_key, record.status_code, record.body) == ("crash-key", 0, order_id)

    api = make_api(home=home, predictions=False)
    # the order rested; it filled after the first response, so the replay says so
    api.grant_credits("vm-gold-2", 10_000)
    sell = api.client.post(
        "/v1/instances/vm-gold-2/orders",
        json={"side": "sell", "price": 100, "quantity": 4_000, "time_in_force": "gtc"},
        headers={**api.agent("vm-gold-2"), "Idempotency-Key": "s"},
    )
    assert sell.status_code == 201, sell.text
    funds = api.balances("vm-gold-1")
    retry = api.client.post(
        "/v1/instances/vm-gold-1/orders",
        json=BID,
        headers={**api.agent("vm-gold-1"), "Idempotency-Key": "crash-key"},
    )
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    replayed = retry.json()
    assert replayed["order"]["order_id"] == order_id
    assert first["order"]["state"] == "open"
    assert (replayed["order"]["state"], replayed["order"]["filled"]) == ("filled", 4_000)
    assert [t["quantity"] for t in replayed["trades"]] == [4_000]
    assert [o.order_id for o in _orders(api, "vm-gold-1")] == [order_id]
    assert api.balances("vm-gold-1") == funds
    other = api.client.post(
        "/v1/instances/vm-gold-1/orders",
        json={**BID, "price": 101},
        headers={**api.agent("vm-gold-1"), "Idempotency-Key": "crash-key"},
    )
    assert other.status_code == 409


def test_responses_are_stored_once_the_desk_is_idle(api: Api) -> None:
    api.deposit("vm-bronze-1", 100_000)
    placed = api.client.post(
        "/v1/instances/vm-bronze-1/orders",
        json=BID,
        headers={**api.agent("vm-bronze-1"), "Idempotency-Key": "idle"},
    )
    assert placed.status_code == 201
    market = api.services.market
    stored = market.stored_responses([("orders:vm-bronze-1", "idle")])
    # stored with its key already; the body follows within the desk's idle wait
    assert stored[("orders:vm-bronze-1", "idle")][0] == _fingerprint(BID)
    deadline = time.monotonic() + 10
    while market.unsaved_responses and time.monotonic() < deadline:
        time.sleep(0.01)
    assert market.unsaved_responses == 0
    stored = market.stored_responses([("orders:vm-bronze-1", "idle")])
    assert stored[("orders:vm-bronze-1", "idle")][1:] == (201, placed.text)


def test_an_order_whose_key_cannot_be_recorded_is_not_placed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.deposit("vm-silver-1", 100_000)
    market = api.services.market
    with market.engine.begin() as conn:
        conn.execute(
            api_idempotency.insert().values(
                scope="orders:vm-silver-1",
                idempotency_key="taken",
                fingerprint="0" * 64,
                status_code=201,
                body="{}",
                created_at_us=0,
            )
        )
    # another writer recorded the key after this batch looked it up
    monkeypatch.setattr(market, "stored_responses", lambda keys: {})
    before = api.balances("vm-silver-1")
    ticket = (
        OrderRequest("vm-silver-1", Side.BUY, 100, 4_000, TimeInForce.GTC, None),
        False,
        "orders:vm-silver-1",
        "taken",
        _fingerprint(BID),
    )
    with pytest.raises(MarketError, match="refused"):
        market.place_batch([ticket], render_placement, render_stored_placement)
    assert api.balances("vm-silver-1") == before
    assert _orders(api, "vm-silver-1") == []
    monkeypatch.undo()
    # the venue holds nothing of it either: the same bid under a new key is placed
    again = api.client.post(
        "/v1/instances/vm-silver-1/orders",
        json=BID,
        headers={**api.agent("vm-silver-1"), "Idempotency-Key": "fresh"},
    )
    assert again.status_code == 201, again.text
    assert len(_orders(api, "vm-silver-1")) == 1
