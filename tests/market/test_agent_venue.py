"""Agents of a fleet trading in process over a real venue and ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from market.agents.decision import OwnerPolicy, hourly_need
from market.agents.forecast import HorizonForecast, InstanceForecast
from market.agents.runner import VenueAgents
from market.clock import ManualClock
from market.decisions import DecisionQuery, MemoryDecisionLog, SqlDecisionLog
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    SqlStore,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.migrations import upgrade
from market.venue.book import BookConfig
from market.venue.handling import Venue

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)
EARN, CAP = 6_000, 144_000


def flat(level: float, spread: float = 2.0) -> InstanceForecast:
    horizons = {
        name: HorizonForecast(
            (level,) * n, {"q50": (level,) * n, "q90": (min(100.0, level + spread),) * n}
        )
        for name, n in (("hour", 1), ("day", 24), ("week", 168))
    }
    return InstanceForecast(NOW, horizons, "1")


def seed(ledger: Ledger, instance: str, *, credits: int, funds: int) -> None:
    asset = credits_asset("gold")
    ledger.open_accounts(
        [
            (mint_account(FUNDS), FUNDS, AccountKind.MINT),
            (mint_account(asset), asset, AccountKind.MINT),
        ]
    )
    legs = []
    if credits:
        legs.append(Transfer(mint_account(asset), instance_credits(instance), credits))
    if funds:
        legs.append(Transfer(mint_account(FUNDS), instance_funds(instance), funds))
    ledger.post(EntryRequest(tuple(legs), "deposit", "test"))


def fleet(
    ledger: Ledger, clock: ManualClock, log, policies: object = None
) -> tuple[Venue, VenueAgents]:
    venue = Venue(ledger, clock, [BookConfig(tier="gold", fee_bps=20)])
    for name in ("seller", "buyer"):
        venue.register_instance(name, "gold")
    seed(ledger, "seller", credits=120_000, funds=0)
    seed(ledger, "buyer", credits=0, funds=5_000_000)
    agents = VenueAgents(
        venue,
        [("seller", "gold", 2, EARN, CAP), ("buyer", "gold", 2, EARN, CAP)],
        policies or OwnerPolicy(throttle_cost=200),  # type: ignore[arg-type]
        log,
        clock,
    )
    return venue, agents


def _totals(ledger: Ledger) -> dict[str, int]:
    balances = ledger.balances()
    out: dict[str, int] = {}
    for account_id, amount in balances.items():
        if account_id.startswith("mint:"):
            continue
        asset = ledger.account(account_id).asset
        out[asset] = out.get(asset, 0) + amount
    return out


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path):
    clock = ManualClock(NOW)
    if request.param == "memory":
        yield Ledger(MemoryStore(), clock), clock, MemoryDecisionLog()
        return
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    store = SqlStore(url)
    yield Ledger(store, clock), clock, SqlDecisionLog(store.engine)
    store.engine.dispose()


def test_a_long_and_a_short_agent_trade_and_nothing_is_lost(stores) -> None:
    ledger, clock, log = stores
    venue, agents = fleet(ledger, clock, log)
    before = _totals(ledger)
    forecasts = {"seller": flat(1.0), "buyer": flat(40.0)}
    decisions, results = agents.step(forecasts)
    assert {d.outcome for d in decisions} == {"orders"}
    assert all(r.error is None for r in results)
    assert venue.trade_log("gold"), "the bid and the ask should cross"
    assert _totals(ledger) == before  # credits and funds only moved (fees included)
    seller_credits = ledger.balance(instance_credits("seller"))
    sold = 120_000 - seller_credits
    assert sold > 0
    # the market had no price yet, so the seller expected half its value: it offered
    # what only its upper quantile needs, and kept its median's need plus the margin
    need = hourly_need(forecasts["seller"], "q50", 2)
    balance, lowest = seller_credits, seller_credits
    for hour in need:
        balance = min(CAP, balance + EARN - hour)
        lowest = min(lowest, balance)
    assert lowest >= 1_000 + sum(need[:24]) * 1_000 // 10_000
    recorded = log.query(DecisionQuery(kind="agent", limit=10))
    assert {r.subject for r in recorded} == {"seller", "buyer"}
    assert all("inputs" in r.detail and "valuation" in r.detail for r in recorded)


def test_a_market_rejection_is_recorded_and_moves_nothing(stores) -> None:
    ledger, clock, log = stores
    venue, agents = fleet(ledger, clock, log)
    venue.set_limits("buyer", max_bid=1)  # the venue's standing limit refuses the bid
    funds_before = ledger.balance(instance_funds("buyer"))
    _decisions, results = agents.step({"seller": flat(1.0), "buyer": flat(40.0)})
    refused = [r for r in results if r.error is not None]
    assert [r.intent.instance_id for r in refused] == ["buyer"]
    assert refused[0].error_type == "StandingLimitViolation"
    assert ledger.balance(instance_funds("buyer")) == funds_before
    (record,) = log.query(DecisionQuery(kind="agent", subject="buyer", outcome="rejected"))
    assert record.detail["error_type"] == "StandingLimitViolation"
    assert "buy only at prices at most 1" in record.detail["error"]


def test_a_second_round_keeps_orders_that_still_fit(stores) -> None:
    ledger, clock, log = stores
    # the buyer will pay no more than 50: below what the seller asks
    policies = {
        "seller": OwnerPolicy(throttle_cost=200),
        "buyer": OwnerPolicy(throttle_cost=200, max_bid=50),
    }
    venue, agents = fleet(ledger, clock, log, policies)
    # only the seller has a forecast: the buyer falls back and the seller's ask rests
    first, _ = agents.step({"seller": flat(1.0)})
    assert {d.instance_id: d.outcome for d in first} == {"seller": "orders", "buyer": "fallback"}
    resting = list(venue.book("gold").open_orders())
    second, results = agents.step({"seller": flat(1.0)})
    seller = next(d for d in second if d.instance_id == "seller")
    assert seller.outcome == "hold"
    assert [o.order_id for o in venue.book("gold").open_orders()] == [o.order_id for o in resting]
    assert all(r.error is None for r in results)
