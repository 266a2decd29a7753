"""``creditx bench agents``: how fast the agents decide and the CEM automation steps.

* pure agent decisions per second (a week of hourly forecasts with q50/q90 each);
* one fleet decision: every agent of a fleet at once (:func:`~market.agents.decision.decide_fleet`,
  a day of hourly needs each), as the fleet replay decides each hour;
* one fleet round in process: every agent of a fleet reads its state from the venue,
  decides, and its orders are cancelled and placed in one batch on an in-memory ledger;
* one CEM interval over a fleet: tier demand from every instance's forecast, rate
  steps and swap plans.

The fleet replay runs one agent round and one CEM interval per simulated hour, so these
bound how many instance-hours it can replay per second.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import typer

from benchmarks._report import Figure, report
from market.agents.decision import (
    Agent,
    AgentState,
    FleetState,
    MarketView,
    OwnerPolicy,
    decide_fleet,
    need_from_percent,
)
from market.agents.forecast import HorizonForecast, InstanceForecast
from market.agents.runner import VenueAgents, fleet_instances
from market.cem.automation import CemAutomation, tier_states
from market.cem.tiers import Host, Instance, TierManager, load_config
from market.clock import ManualClock
from market.ledger import (
    FUNDS,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.venue.book import BookConfig
from market.venue.handling import Venue

NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)


def _forecast(rng: random.Random) -> InstanceForecast:
    level = rng.uniform(1, 60)
    horizons = {}
    for name, hours in (("hour", 1), ("day", 24), ("week", 168)):
        point = tuple(max(0.0, min(100.0, level + rng.gauss(0, 5))) for _ in range(hours))
        horizons[name] = HorizonForecast(
            point,
            {
                "q50": point,
                "q90": tuple(min(100.0, v * 1.3 + 2) for v in point),
            },
        )
    return InstanceForecast(NOW, horizons, "1")


def decisions_per_second(n: int, seed: int = 3) -> float:
    """Return pure ``Agent.decide`` calls per second over varied states."""
    rng = random.Random(seed)
    forecasts = [_forecast(rng) for _ in range(50)]
    states = [
        AgentState(
            instance_id=f"vm-{i}",
            tier="gold",
            vcpus=4,
            now=NOW,
            credits=rng.randrange(0, 200_000),
            funds=rng.randrange(0, 1_000_000),
            earn_rate=48_000,
            cap=1_152_000,
            forecast=forecasts[i % len(forecasts)],
            market=MarketView((100, 104, 98), Fraction(rng.randrange(0, 11), 10), 1, 20),
        )
        for i in range(n)
    ]
    agent = Agent(OwnerPolicy())
    started = time.perf_counter()
    for state in states:
        agent.decide(state)
    return n / (time.perf_counter() - started)


def fleet_decision_seconds(n: int, seed: int = 4) -> float:
    """Return the best seconds of three :func:`decide_fleet` calls over ``n`` agents."""
    rng = np.random.default_rng(seed)
    vcpus = rng.choice([2, 4, 8], n)
    level = rng.uniform(1, 60, (n, 1))
    mid = np.clip(level + rng.normal(0, 5, (n, 24)), 0, 100)
    high = np.clip(mid * 1.3 + 2, 0, 100)
    earn = vcpus * 6_000
    need_high = need_from_percent(high, vcpus)
    fleet = FleetState(
        holdings=rng.integers(0, 24, n) * earn,
        money=rng.integers(0, 1_000_000, n),
        vcpus=vcpus,
        earn_rate=earn,
        cap=24 * earn,
        usable=rng.random(n) > 0.05,
        need_upper=need_high,
        need_risk=need_high,
        need_mid=need_from_percent(mid, vcpus),
        upper_quantile=Fraction(9, 10),
        market=rng.integers(0, 4, n),
        markets=tuple(MarketView((100, 104, 98), Fraction(k, 4), 1, 20) for k in range(4)),
    )
    policy = OwnerPolicy()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        decide_fleet(policy, fleet)
        best = min(best, time.perf_counter() - started)
    return best


def _fleet(n: int) -> tuple[TierManager, Ledger, ManualClock]:
    base = load_config()
    names = [t.name for t in base.tiers()]
    instances = [
        Instance(f"vm-{i}", names[i % len(names)], 2 + 2 * (i % 3), "team") for i in range(n)
    ]
    hosts = [Host(f"h-{t}", t, 64 * (1 + n // 50)) for t in names]
    tiers = TierManager(base.tiers(), hosts, instances, base.exchange)
    clock = ManualClock(NOW)
    ledger = Ledger(MemoryStore(), clock)
    tiers.open_accounts(ledger)
    transfers = []
    rng = random.Random(5)
    for i in instances:
        asset = credits_asset(i.tier)
        transfers.append(
            Transfer(mint_account(asset), instance_credits(i.id), rng.randrange(1, 300_000))
        )
        transfers.append(Transfer(mint_account(FUNDS), instance_funds(i.id), 1_000_000))
    ledger.open_account(mint_account(FUNDS), FUNDS, AccountKind.MINT)
    ledger.post(EntryRequest(tuple(transfers), "seed", "bench"))
    return tiers, ledger, clock


def fleet_round_seconds(n: int) -> float:
    """Return the seconds of one in-process round of ``n`` agents on an in-memory venue."""
    tiers, ledger, clock = _fleet(n)
    venue = Venue(ledger, clock, [BookConfig(tier=t.name, fee_bps=20) for t in tiers.tiers()])
    for i in tiers.instances():
        venue.register_instance(i.id, i.tier)
    agents = VenueAgents(venue, fleet_instances(tiers), OwnerPolicy(), None, clock)
    rng = random.Random(7)
    forecasts = {i.id: _forecast(rng) for i in tiers.instances()}
    agents.step(forecasts)  # the first round places; the timed one keeps or replaces
    started = time.perf_counter()
    agents.step(forecasts)
    return time.perf_counter() - started


def cem_interval_seconds(n: int) -> float:
    """Return the seconds of one CEM interval over a fleet of ``n`` instances."""
    tiers, ledger, clock = _fleet(n)
    rng = random.Random(9)
    forecasts = {i.id: _forecast(rng) for i in tiers.instances()}
    automation = CemAutomation()
    started = time.perf_counter()
    states = tier_states(tiers, ledger, forecasts)
    automation.step(states, clock())
    return time.perf_counter() - started


def register(bench_app: typer.Typer) -> None:
    """Add the ``agents`` benchmark command."""

    @bench_app.command("agents")
    def agents(
        json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
        decisions: int = typer.Option(2_000, help="pure agent decisions timed"),
        fleet: int = typer.Option(100, help="instances in the timed fleet round"),
        fleet_decision: int = typer.Option(1_000, help="agents in the timed fleet decision"),
    ) -> None:
        """Measure agent decisions, a fleet decision, a fleet round and a CEM interval."""
        figures = [
            Figure(
                "agent decisions, week forecasts",
                decisions_per_second(decisions),
                "decisions/s",
                ">= 1000",
            ),
            Figure(
                f"fleet decision of {fleet_decision:,} agents at once",
                fleet_decision_seconds(fleet_decision),
                "s",
                "<= 0.05",
            ),
            Figure(
                f"fleet round of {fleet} agents, in memory",
                fleet_round_seconds(fleet),
                "s",
                "<= 0.5",
            ),
            Figure(
                f"CEM interval over {fleet} instances", cem_interval_seconds(fleet), "s", "<= 0.2"
            ),
        ]
        report("agents", figures, json_out)
