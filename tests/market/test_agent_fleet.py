"""Fleet decisions: many agents at once decide exactly as each would alone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.agents.decision import (
    Agent,
    AgentState,
    FleetState,
    MarketView,
    OwnerPolicy,
    affordable_quantity,
    balance_path,
    balance_paths,
    decide_agents,
    decide_fleet,
    hourly_need,
)
from market.agents.forecast import HorizonForecast, InstanceForecast
from market.agents.valuation import NEED_SHARE, bid_prices
from market.errors import InvalidAgentInput

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
MARKETS = (
    MarketView((100, 96, 104), Fraction(1, 2), 1, 20),
    MarketView((), Fraction(4, 5), 5, 0),
)

percent = st.floats(0.0, 100.0, allow_nan=False, width=32)


@st.composite
def forecasts(draw: st.DrawFn, layout: tuple[tuple[str, int], ...]) -> InstanceForecast | None:
    kind = draw(st.sampled_from(["usable", "usable", "usable", "missing", "stale"]))
    if kind == "missing":
        return None
    horizons = {}
    # a day's profile, repeated over a week: small examples that still vary by hour
    day = draw(st.lists(percent, min_size=24, max_size=24))
    for name, hours in layout:
        mid = tuple((day * 7)[:hours])
        spread = draw(st.floats(0.0, 40.0))
        high = tuple(min(100.0, v + spread) for v in mid)
        horizons[name] = HorizonForecast(mid, {"q50": mid, "q90": high})
    age = timedelta(hours=5 if kind == "stale" else 0)
    return InstanceForecast(NOW - age, horizons, "1")


@st.composite
def fleets(draw: st.DrawFn) -> tuple[OwnerPolicy, list[AgentState], int]:
    layout = draw(
        st.sampled_from([(("hour", 1), ("day", 24)), (("hour", 1),), (("day", 24), ("week", 168))])
    )
    policy = OwnerPolicy(
        throttle_cost=draw(st.integers(1, 300)),
        risk_quantile=draw(st.sampled_from(["q50", "q90"])),
        safety_margin=draw(st.integers(0, 20_000)),
        max_bid=draw(st.one_of(st.none(), st.integers(0, 150))),
        min_ask=draw(st.one_of(st.none(), st.integers(0, 150))),
        budget=draw(st.one_of(st.none(), st.integers(0, 50_000))),
        buy_horizon_hours=draw(st.sampled_from([1, 6, 24])),
        min_order=draw(st.sampled_from([1, 1_000])),
        fallback_reserve_hours=draw(st.integers(0, 2)),
    )
    states = []
    for i in range(draw(st.integers(1, 6))):
        vcpus = draw(st.sampled_from([1, 2, 8]))
        earn = vcpus * draw(st.sampled_from([600, 6_000]))
        states.append(
            AgentState(
                instance_id=f"vm-{i}",
                tier=f"t{i % 2}",
                vcpus=vcpus,
                now=NOW,
                credits=draw(st.integers(0, 30 * earn)),
                funds=draw(st.sampled_from([0, 7, 5_000, 10**7])),
                earn_rate=earn,
                cap=24 * earn,
                forecast=draw(forecasts(layout)),
                market=MARKETS[i % 2],
            )
        )
    return policy, states, max(hours for _name, hours in layout)


def fleet_of(policy: OwnerPolicy, states: list[AgentState], hours: int = 0) -> FleetState:
    """The fleet's arrays, each row read from an agent's state as the agent reads it."""
    usable, need = [], {"q50": [], "q90": []}
    for s in states:
        forecast = s.forecast
        fresh = forecast is not None and NOW - forecast.generated_at <= policy.max_forecast_age
        usable.append(fresh)
        for column, rows in need.items():
            rows.append(hourly_need(forecast, column, s.vcpus) if fresh else [0] * hours)  # type: ignore[arg-type]
    ints = np.array
    markets = tuple(dict.fromkeys(s.market for s in states))
    return FleetState(
        holdings=ints([s.credits for s in states]),
        money=ints([s.funds for s in states]),
        vcpus=ints([s.vcpus for s in states]),
        earn_rate=ints([s.earn_rate for s in states]),
        cap=ints([s.cap for s in states]),
        usable=np.array(usable),
        need_upper=ints(need["q90"], dtype=np.int64).reshape(len(states), hours),
        need_risk=ints(need[policy.risk_quantile], dtype=np.int64).reshape(len(states), hours),
        need_mid=ints(need["q50"], dtype=np.int64).reshape(len(states), hours),
        upper_quantile=Fraction(9, 10),
        market=ints([markets.index(s.market) for s in states]),
        markets=markets,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_a_fleet_decides_as_each_of_its_agents(
    fleet: tuple[OwnerPolicy, list[AgentState], int],
) -> None:
    policy, states, hours = fleet
    together = decide_fleet(policy, fleet_of(policy, states, hours))
    for row, s in enumerate(states):
        alone = Agent(policy).decide(s)
        assert (together.spare[row], together.lack[row]) == (alone.spare, alone.lack)
        wanted = {(i.side, i.price, i.quantity) for i in alone.intents if i.action == "place"}
        batch = set()
        if together.bid_quantity[row] > 0:
            batch.add(("buy", int(together.bid_price[row]), int(together.bid_quantity[row])))
        if together.ask_quantity[row] > 0:
            batch.add(("sell", int(together.ask_price[row]), int(together.ask_quantity[row])))
        assert batch == wanted
        assert alone.valuation is not None
        assert bool(together.overflows_cap[row]) == bool(alone.inputs.get("overflows_cap", False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fleets(), min_size=1, max_size=3), st.lists(st.none() | st.integers(1, 400)))
def test_agents_of_many_policies_and_forecasts_decide_together_as_each_alone(
    parts: list[tuple[OwnerPolicy, list[AgentState], int]], values: list[int | None]
) -> None:
    # fleets of different policies and forecast lengths, mixed into one round, some
    # instances with a value their owner set
    states, policy_of = [], {}
    for k, (policy, part, _hours) in enumerate(parts):
        for s in part:
            instance_id = f"{s.instance_id}-{k}"
            value = values[len(states)] if len(states) < len(values) else None
            states.append(dataclasses.replace(s, instance_id=instance_id, owner_value=value))
            policy_of[instance_id] = policy
    together = decide_agents(states, policy_of.__getitem__)
    assert [d.instance_id for d in together] == [s.instance_id for s in states]
    for s, decision in zip(states, together, strict=True):
        assert decision == Agent(policy_of[s.instance_id]).decide(s)
        # an owner's value decides as a policy of that throttle cost would
        if s.owner_value is not None:
            policy = dataclasses.replace(policy_of[s.instance_id], throttle_cost=s.owner_value)
            alone = Agent(policy).decide(dataclasses.replace(s, owner_value=None))
            assert (decision.intents, decision.valuation) == (alone.intents, alone.valuation)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 500),
            st.integers(1, 50),
            st.integers(1, 400),
            st.lists(st.integers(0, 120), min_size=6, max_size=6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_balance_paths_equal_an_hour_by_hour_run(
    rows: list[tuple[int, int, int, list[int]]],
) -> None:
    paths = balance_paths(
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
    )
    for (start, earn, cap, need), path in zip(rows, paths.tolist(), strict=True):
        balance, expected = start, []
        for hour in need:
            balance = min(cap, balance + earn - hour)
            expected.append(balance)
        assert path == expected == balance_path(start, earn, cap, need)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 700), st.sampled_from([0, 20, 250]))
def test_a_budget_bids_what_it_can_escrow(money: int, value: int, fee: int) -> None:
    price = int(bid_prices(np.array([value]), NEED_SHARE, fee_bps=fee)[0])
    s = AgentState(
        instance_id="vm",
        tier="t0",
        vcpus=2,
        now=NOW,
        credits=0,
        funds=money,
        earn_rate=1_200,
        cap=28_800,
        forecast=None,
        market=MarketView((10**6,), Fraction(1, 2), 1, fee),
    )
    policy = OwnerPolicy(throttle_cost=value, fallback_reserve_hours=1, min_order=1)
    decision = decide_fleet(policy, fleet_of(policy, [s]))
    wanted = int(decision.lack[0])
    assert wanted > 0
    # the bid comes from the owner's value, whatever the market's last price
    assert int(decision.bid_price[0]) == price
    # never more than the cap holds, and no more than the budget escrows
    assert int(decision.affordable[0]) == min(
        wanted, 28_800, affordable_quantity(money, price, fee) if price else 0
    )


def test_a_fleet_state_of_mismatched_arrays_is_refused() -> None:
    one = np.array([1])
    with pytest.raises(InvalidAgentInput, match="money"):
        FleetState(
            holdings=one,
            money=np.array([1, 2]),
            vcpus=one,
            earn_rate=one,
            cap=one,
            usable=np.array([True]),
            need_upper=np.zeros((1, 2), dtype=np.int64),
            need_risk=np.zeros((1, 2), dtype=np.int64),
            need_mid=np.zeros((1, 2), dtype=np.int64),
            upper_quantile=Fraction(9, 10),
            market=np.array([0]),
            markets=MARKETS,
        )
