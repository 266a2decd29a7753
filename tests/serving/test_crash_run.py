"""The short version of ``creditx bench crash``: the real server (``creditx serve`` in a
child process) under trading agents, SIGKILLed and restarted, on SQLite and PostgreSQL.
The long randomized run is the benchmark's (``creditx bench crash --kills N``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
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


# A client that sends a whole transaction in one round trip, COMMIT included, and is
# killed while its backend works through it (a server killed after sending COMMIT).
_CLIENT = """
import sys
import sqlalchemy as sa

raw = sa.create_engine(sys.argv[1]).raw_connection().driver_connection
raw.autocommit = True
print("sending", flush=True)
raw.execute(
    "BEGIN; INSERT INTO in_flight VALUES (1); SELECT pg_sleep(3);"
    " INSERT INTO in_flight VALUES (2); COMMIT"
)
"""


@pytest.mark.postgres
def test_a_killed_clients_transaction_commits_after_it_and_the_check_waits(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE in_flight (n int)")
    sessions = "creditx-in-flight-test"
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, f"{pg_url}&application_name={sessions}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    rows = "SELECT count(*) FROM in_flight"
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND wait_event = 'PgSleep'"
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "sending"
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while not conn.exec_driver_sql(sleeping, (sessions,)).scalar():
                conn.rollback()
                assert time.monotonic() < deadline, "the client's backend never slept"
                time.sleep(0.02)
    finally:
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
    with engine.connect() as conn:
        # the client is dead and its transaction not committed yet: a check now would
        # read a store that is still changing
        assert conn.exec_driver_sql(rows).scalar() == 0
    assert bench._wait_sessions_end(engine, sessions)
    with engine.connect() as conn:
        assert conn.exec_driver_sql(rows).scalar() == 2
    engine.dispose()
