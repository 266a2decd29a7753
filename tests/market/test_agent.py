"""The Virtual Instance Agent: what it sells, what it buys, at what price, and its fallback."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.agents.decision import (
    Agent,
    AgentState,
    MarketView,
    OpenOrder,
    OwnerPolicy,
    affordable_quantity,
    hourly_need,
    spare_credits,
)
from market.agents.forecast import HorizonForecast, InstanceForecast, quantile_level
from market.errors import InvalidAgentInput, InvalidPolicy
from market.venue.orders import bid_escrow

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
VCPUS = 2
EARN = 6_000  # 2 vCPUs at 5 % earn 6 credits an hour
CAP = 24 * EARN


def forecast(
    hour: float,
    day: list[float] | float,
    week: list[float] | float,
    *,
    spread: float = 5.0,
    generated_at: datetime = NOW,
) -> InstanceForecast:
    def series(values: list[float] | float, n: int) -> tuple[float, ...]:
        return tuple(values) if isinstance(values, list) else (float(values),) * n

    horizons = {}
    for name, values, n in (("hour", hour, 1), ("day", day, 24), ("week", week, 168)):
        point = series(values, n)
        horizons[name] = HorizonForecast(
            point,
            {
                "q50": tuple(max(0.0, v - 1) for v in point),
                "q90": tuple(min(100.0, v + spread) for v in point),
            },
        )
    return InstanceForecast(generated_at, horizons, "7")


def state(**overrides: object) -> AgentState:
    base = AgentState(
        instance_id="vm-1",
        tier="gold",
        vcpus=VCPUS,
        now=NOW,
        credits=50_000,
        funds=100_000,
        earn_rate=EARN,
        cap=CAP,
        forecast=forecast(1.0, 1.0, 1.0, spread=2.0),
        market=MarketView(recent_prices=(100,), scarcity=Fraction(1, 2)),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def upper_path_low(s: AgentState, holdings: int, column: str = "q90") -> int:
    """Brute force: the lowest balance over every forecast hour, at the upper quantile."""
    assert s.forecast is not None
    need = hourly_need(s.forecast, column, s.vcpus)
    balance, lowest = holdings, holdings
    for hour in need:
        balance = min(s.cap, balance + s.earn_rate - hour)
        lowest = min(lowest, balance)
    return lowest


def sells(decision) -> list:
    return [i for i in decision.intents if i.action == "place" and i.side == "sell"]


def buys(decision) -> list:
    return [i for i in decision.intents if i.action == "place" and i.side == "buy"]


# what it sells


def test_a_quiet_instance_sells_what_its_upper_quantile_leaves() -> None:
    # a market that pays less than the band's worth: only the tail is worth offering
    decision = Agent().decide(state(market=MarketView((20,), Fraction(1, 2))))
    assert decision.outcome == "orders"
    (ask,) = sells(decision)
    assert ask.quantity == decision.spare > 0
    assert not buys(decision)
    need = hourly_need(state().forecast, "q90", VCPUS)  # type: ignore[arg-type]
    margin = 1_000 + sum(need[:24]) * 1_000 // 10_000
    assert upper_path_low(state(), 50_000 - ask.quantity) >= margin
    # the tail would overflow the cap anyway: it keeps nothing and asks one tick
    assert decision.inputs["overflows_cap"]
    assert ask.price == 1
    # an upper quantile that uses just what it earns: the balance never reaches the cap
    busier = Agent().decide(
        state(
            market=MarketView((20,), Fraction(1, 2)),
            forecast=forecast(3.0, 3.0, 3.0, spread=2.0),
        )
    )
    (tail,) = sells(busier)
    assert not busier.inputs["overflows_cap"]
    assert tail.price == 10


def test_an_instance_sells_all_it_holds_when_the_market_pays_more_than_its_need_is_worth() -> None:
    decision = Agent().decide(state(market=MarketView((200,), Fraction(1, 2))))
    (ask,) = sells(decision)
    assert ask.quantity == 50_000
    assert ask.price == 75  # never below what its median need is worth to it
    assert not buys(decision)


week_values = st.lists(st.floats(0, 100), min_size=168, max_size=168)


@settings(max_examples=60, deadline=None)
@given(
    credits=st.integers(0, 200_000),
    hour=st.floats(0, 100),
    day=st.lists(st.floats(0, 100), min_size=24, max_size=24),
    week=week_values,
    spread=st.floats(0, 50),
    margin=st.integers(0, 20_000),
    margin_bps=st.integers(0, 5_000),
    open_ask=st.integers(0, 30_000),
    anchor=st.integers(1, 400),
    value=st.integers(1, 400),
)
def test_agents_never_sell_below_their_keep_value(
    credits: int,
    hour: float,
    day: list[float],
    week: list[float],
    spread: float,
    margin: int,
    margin_bps: int,
    open_ask: int,
    anchor: int,
    value: int,
) -> None:
    orders = (OpenOrder("o-1", "sell", 90, open_ask, open_ask),) if open_ask else ()
    s = state(
        credits=credits,
        forecast=forecast(hour, day, week, spread=spread),
        open_orders=orders,
        market=MarketView((anchor,), Fraction(1, 2)),
    )
    policy = OwnerPolicy(safety_margin=margin, safety_margin_bps=margin_bps, throttle_cost=value)
    decision = Agent(policy).decide(s)
    holdings = credits + open_ask
    placed = sells(decision)
    offered = sum(i.quantity for i in placed)
    assert offered <= holdings
    for ask in placed:
        # credits its upper quantile will not use keep at most a tenth of the value...
        assert ask.price >= 1
        need = hourly_need(s.forecast, "q90", VCPUS)  # type: ignore[arg-type]
        floor = margin + sum(need[:24]) * margin_bps // 10_000
        if upper_path_low(s, holdings - offered) < floor:
            # ...those the upper quantile uses keep at least three tenths...
            assert ask.price * 10 >= 3 * value
            mid = hourly_need(s.forecast, "q50", VCPUS)  # type: ignore[arg-type]
            floor_mid = margin + sum(mid[:24]) * margin_bps // 10_000
            if upper_path_low(s, holdings - offered, "q50") < floor_mid:
                # ...and those the median uses three quarters of it
                assert ask.price * 4 >= 3 * value


def test_a_busy_instance_buys_what_it_lacks_and_offers_nothing() -> None:
    s = state(
        credits=1_000,
        funds=10_000_000,
        forecast=forecast(60.0, 60.0, 60.0),
        market=MarketView((60,), Fraction(1, 2)),
    )
    decision = Agent().decide(s)
    assert decision.spare == 0
    assert not sells(decision)
    (bid,) = buys(decision)
    # as much as the cap holds of what it lacks, at what its median need is worth
    assert bid.quantity == min(decision.lack, CAP - 1_000) > 0
    assert bid.price == 75


def test_risk_level_q90_insures_at_the_bands_worth_where_q50_buys_nothing() -> None:
    s = state(
        credits=20_000,
        forecast=forecast(5.0, 5.0, 5.0, spread=20.0),
        market=MarketView((20,), Fraction(1, 2)),
    )
    bold = Agent(OwnerPolicy(risk_quantile="q50")).decide(s)
    careful = Agent(OwnerPolicy(risk_quantile="q90")).decide(s)
    assert bold.lack == 0
    assert not buys(bold)
    (bid,) = buys(careful)
    assert careful.lack > 0
    assert bid.price == 30  # three tenths of the owner's value


# what it pays


@settings(max_examples=60, deadline=None)
@given(
    funds=st.integers(0, 50_000),
    budget=st.one_of(st.none(), st.integers(0, 50_000)),
    max_bid=st.one_of(st.none(), st.integers(0, 300)),
    fee_bps=st.integers(0, 100),
    demand=st.floats(10, 100),
    scarcity=st.fractions(0, 1, max_denominator=100),
)
def test_bids_never_exceed_the_budget_funds_or_limits(
    funds: int,
    budget: int | None,
    max_bid: int | None,
    fee_bps: int,
    demand: float,
    scarcity: Fraction,
) -> None:
    policy = OwnerPolicy(budget=budget, max_bid=max_bid, throttle_cost=150)
    s = state(
        credits=0,
        funds=funds,
        forecast=forecast(demand, demand, demand),
        market=MarketView((120,), scarcity, 1, fee_bps),
    )
    decision = Agent(policy).decide(s)
    for bid in buys(decision):
        spendable = funds if budget is None else min(funds, budget)
        assert bid_escrow(bid.quantity, bid.price, fee_bps) <= spendable
        assert bid.price <= 150
        assert max_bid is None or bid.price <= max_bid
    if decision.lack and not buys(decision):
        assert decision.outcome == "blocked"
        assert any(r.startswith("blocked") for r in decision.reasons)


def test_prices_come_from_the_owners_value_not_the_last_clearing_price() -> None:
    short = state(credits=0, forecast=forecast(60.0, 60.0, 60.0))
    bids = set()
    for last in (1, 40, 70):
        for scarcity in (Fraction(1, 10), Fraction(1, 2), Fraction(9, 10)):
            market = MarketView((last,), scarcity)
            (bid,) = buys(Agent().decide(dataclasses.replace(short, market=market)))
            bids.add(bid.price)
    assert bids == {75}
    dear = Agent(OwnerPolicy(throttle_cost=400)).decide(
        dataclasses.replace(short, market=MarketView((70,), Fraction(1, 2)))
    )
    assert [b.price for b in buys(dear)] == [300]


def test_affordable_quantity_is_the_largest_that_fits() -> None:
    for money, price, fee in [(1_000, 7, 30), (5, 1_000, 0), (99_999, 123, 999)]:
        q = affordable_quantity(money, price, fee)
        assert bid_escrow(q, price, fee) <= money < bid_escrow(q + 1, price, fee)


# owner limits that make trading impossible


def test_a_max_bid_below_the_tick_blocks_buying_and_changes_nothing() -> None:
    s = state(
        credits=0, forecast=forecast(60.0, 60.0, 60.0), market=MarketView((100,), tick_size=10)
    )
    decision = Agent(OwnerPolicy(max_bid=5)).decide(s)
    assert decision.outcome == "blocked"
    assert decision.intents == ()
    assert "max_bid 5" in decision.record().detail["reasons"][0]


def test_a_zero_budget_blocks_buying() -> None:
    decision = Agent(OwnerPolicy(budget=0)).decide(
        state(credits=0, forecast=forecast(60.0, 60.0, 60.0))
    )
    assert decision.outcome == "blocked"
    assert decision.intents == ()


# missing, stale or unusable forecasts


@pytest.mark.parametrize(
    ("the_forecast", "why"),
    [
        (None, "no forecast"),
        (forecast(1.0, 1.0, 1.0, generated_at=NOW - timedelta(hours=3)), "stale"),
        (forecast(float("nan"), 1.0, 1.0), "unusable"),
        (InstanceForecast(NOW, {"hour": HorizonForecast((1.0,), {"q50": (1.0,)})}), "no q90"),
    ],
)
def test_without_a_usable_forecast_the_agent_withdraws_its_asks_and_says_so(
    the_forecast: InstanceForecast | None, why: str
) -> None:
    s = state(forecast=the_forecast, open_orders=(OpenOrder("ask-1", "sell", 100, 5_000, 5_000),))
    decision = Agent().decide(s)
    assert decision.outcome == "fallback"
    assert why in decision.reasons[0]
    assert not sells(decision)
    cancels = [(i.action, i.order_id) for i in decision.intents if i.action == "cancel"]
    assert cancels == [("cancel", "ask-1")]
    assert decision.record().outcome == "fallback"


def test_fallback_bids_only_for_one_hour_of_full_demand() -> None:
    decision = Agent().decide(state(credits=10_000, forecast=None))
    (bid,) = buys(decision)
    # one hour at 100 % on 2 vCPUs needs 120 credits; it earns 6 and holds 10
    assert bid.quantity == 120_000 - 6_000 - 10_000


# keeping orders in the market


def test_an_order_already_in_the_market_is_kept() -> None:
    first = Agent().decide(state())
    (ask,) = sells(first)
    resting = OpenOrder("ask-1", "sell", ask.price, ask.quantity, ask.quantity)
    again = Agent().decide(state(credits=50_000 - ask.quantity, open_orders=(resting,)))
    assert again.outcome == "hold"
    assert again.intents == ()


def test_a_changed_order_is_cancelled_before_its_replacement() -> None:
    resting = OpenOrder("ask-1", "sell", 1, 1_000, 1_000)
    decision = Agent().decide(state(credits=49_000, open_orders=(resting,)))
    actions = [(i.action, i.side) for i in decision.intents]
    assert actions == [("cancel", "sell"), ("place", "sell")]
    assert len({i.key for i in decision.intents}) == 2


# bad input


def test_bad_state_and_policy_are_refused() -> None:
    with pytest.raises(InvalidAgentInput, match="credits"):
        Agent().decide(state(credits=-1))
    with pytest.raises(InvalidAgentInput, match="now"):
        Agent().decide(state(now=datetime(2026, 1, 1)))  # noqa: DTZ001
    with pytest.raises(InvalidPolicy, match="risk_quantile"):
        OwnerPolicy(risk_quantile="p90")
    with pytest.raises(InvalidPolicy, match="budget"):
        OwnerPolicy(budget=-5)
    assert quantile_level("q97.5") == Fraction(39, 40)


@settings(max_examples=80, deadline=None)
@given(
    holdings=st.integers(0, 60),
    earn=st.integers(1, 10),
    cap=st.integers(1, 80),
    need=st.lists(st.integers(0, 20), min_size=1, max_size=12),
    margin=st.integers(0, 10),
)
def test_spare_credits_is_safe_against_a_brute_force_search(
    holdings: int, earn: int, cap: int, need: list[int], margin: int
) -> None:
    def safe(sale: int) -> bool:
        balance = holdings - sale
        if balance < margin:
            return False
        for hour in need:
            balance = min(cap, balance + earn - hour)
            if balance < margin:
                return False
        return True

    spare = spare_credits(holdings, earn, cap, need, margin)
    largest = max((x for x in range(holdings + 1) if safe(x)), default=0)
    assert spare <= largest
    assert spare == 0 or safe(spare)
