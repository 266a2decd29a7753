"""Idempotent order placement over any sequence of keys and bodies: the first body of a
key wins, a replay returns its first response, another body is 409, and each key
places at most one order."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import Api

from market.venue.handling import t_orders

_RUN = itertools.count()


def _orders(api: Api) -> int:
    query = (
        sa.select(sa.func.count()).select_from(t_orders).where(t_orders.c.owner == "vm-bronze-1")
    )
    with api.services.market.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([10, 20])),
        min_size=1,
        max_size=12,
    )
)
def test_each_key_places_at_most_one_order(api: Api, steps: list[tuple[int, int]]) -> None:
    run = next(_RUN)
    if run == 0:
        api.deposit("vm-bronze-1", 10**9)
        api.grant_credits("vm-bronze-1", 10**9)
    before = _orders(api)
    first: dict[str, tuple[dict, dict]] = {}
    for key_number, price in steps:
        key = f"r{run}-k{key_number}"
        # bids only, so the instance never meets its own orders
        body = {"side": "buy", "price": price, "quantity": 1_000, "time_in_force": "gtc"}
        response = api.client.post(
            "/v1/instances/vm-bronze-1/orders",
            json=body,
            headers={**api.agent("vm-bronze-1"), "Idempotency-Key": key},
        )
        if key not in first:
            assert response.status_code == 201, response.text
            first[key] = (body, response.json())
        elif first[key][0] == body:
            assert response.status_code == 200
            assert response.json() == first[key][1]
        else:
            assert response.status_code == 409
    assert _orders(api) - before == len(first)
