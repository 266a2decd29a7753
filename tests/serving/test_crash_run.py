"""The short version of ``creditx bench crash``: the real server (``creditx serve`` in a
child process) under trading agents, SIGKILLed and restarted, on SQLite and PostgreSQL.
The long randomized run is the benchmark's (``creditx bench crash --kills N``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from serving_support import START, Api

from benchmarks import crash as bench
from benchmarks.crash import CrashTally, run_crash


def _check(kills: int, **options: str) -> None:
    tally = run_crash(kills, traffic_seconds=(1.0, 2.0), **options)
    assert tally.problems == []
    assert tally.kills == kills
    assert len(tally.restart_seconds) == kills
    assert tally.clean
    # the agents really traded through the kills
    assert tally.acknowledged > 20


def test_the_served_venue_survives_kills_on_sqlite() -> None:
    _check(2)


@pytest.mark.postgres
def test_the_served_venue_survives_kills_on_postgres(pg_server_url: str) -> None:
    _check(1, store="postgres", pg_url=pg_server_url)


def test_a_cancel_that_finds_its_order_expired_acknowledges_the_expiry(api: Api) -> None:
    # the venue expires a good-till-time order when it next touches its book: a cancel
    # that comes first finds it due, and the expiry wins; the answer (200) says so
    owner = "vm-silver-1"
    api.deposit(owner, 50_000)
    expires = START + timedelta(seconds=5)
    body = {"side": "buy", "price": 200, "quantity": 1_000, "time_in_force": "gtt"}
    placed = api.client.post(
        f"/v1/instances/{owner}/orders",
        json={**body, "expires_at": expires.isoformat()},
        headers={**api.agent(owner), "Idempotency-Key": "g1"},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order"]["order_id"]
    api.clock.advance(timedelta(seconds=10))
    acks = bench._Acks(orders={order_id: ("open", 0)})
    api.client.headers.update(api.agent(owner))
    bench._cancel(api.client, owner, order_id, acks)
    tally = CrashTally()
    bench._check(api.services.market.engine, acks, tally)
    assert tally.problems == []
    assert tally.acknowledged_missing == 0
    assert acks.requests == 1
    assert acks.orders[order_id] == ("expired", 0)
    assert acks.cancels == set()
    assert api.balances(owner) == (0, 50_000)


def test_a_cancel_acknowledged_is_looked_up_in_the_store(api: Api) -> None:
    owner = "vm-silver-1"
    api.deposit(owner, 50_000)
    placed = api.client.post(
        f"/v1/instances/{owner}/orders",
        json={"side": "buy", "price": 200, "quantity": 1_000, "time_in_force": "gtc"},
        headers={**api.agent(owner), "Idempotency-Key": "c1"},
    )
    order_id = placed.json()["order"]["order_id"]
    acks = bench._Acks(orders={order_id: ("open", 0)})
    api.client.headers.update(api.agent(owner))
    bench._cancel(api.client, owner, order_id, acks)
    assert acks.cancels == {order_id}
    engine = api.services.market.engine
    tally = CrashTally()
    bench._check(engine, acks, tally)
    assert tally.problems == []
    # a store that lost the cancel is caught
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE market_orders SET state = 'open' WHERE order_id = ?", (order_id,)
        )
    bench._check(engine, acks, tally)
    assert tally.acknowledged_missing == 2
    assert f"cancel of {order_id}" in tally.missing_writes
    assert f"order {order_id}" in tally.missing_writes
