"""The replay engine: every policy over the same fleet, 5-minute steps, hourly books.

Each step, per instance, in milli-credits: the instance earns its tier's baseline
(``earned``), asks for ``demand``; its own balance pays first, then (pool policies)
its tier's pool, drawn in instance order within the tier; the credits it may spend
are what its tier's hosts can serve: when the tier asks for more than the hosts'
physical capacity, every instance is served ``allowed * capacity // total`` (the
rounding remainder one milli-credit each, in instance order), so no policy ever
exceeds the hosts. What is not served is throttled. The balance after the step is
capped as AWS standard mode caps it (:func:`market.accounting.plan_interval`): what
overflows goes to the pool as far as it has headroom and is thrown away otherwise.

The per-step arithmetic runs on numpy arrays across instances; each policy books
each hour in its own :class:`~market.ledger.Ledger` (in-memory store) as one entry,
with the market (agents, hourly call auctions on :class:`~market.venue.Venue`) and
the CEM's swaps (:class:`~market.exchange.CreditExchange`) acting on the same ledger
at the start of each hour: every agent decides at once
(:func:`market.agent.decide_fleet` on the forecast table's arrays) and the hour's
orders go to the auctions in one venue call. Conservation is checked every step
(balances plus pools change exactly by what was earned less what was spent), every
hour (the ledger's instance and pool balances equal the engine's) and at the end (the
ledger's journal replays to its balances and every asset sums to zero over its
accounts); any difference raises :class:`ConservationError`. The hourly entry moves
each tier's mint, burn and pool totals through a clearing account that ends it at
zero, and one net leg per instance whose balance moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from typing import Any

import numpy as np

from market.agent import FleetState, MarketView, OwnerPolicy, decide_fleet, recent_prices_of
from market.book import BookConfig
from market.cem_auto import CemAutomation, CemPolicy, TierState, apply_decision, fleet_tier_states
from market.clock import ManualClock
from market.exchange import CreditExchange
from market.ledger import (
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    burn_account,
    escrow_account,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
)
from market.memory import gc_paused
from market.orders import Side
from market.tiers import Pool, TierManager
from market.venue import OrderRequest, Venue
from pipelines.replay.errors import ConservationError, ScenarioError
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet
from pipelines.replay.forecasts import ForecastTable, HourNeeds
from pipelines.replay.scenario import Scenario

POLICIES: tuple[str, ...] = (
    "static",
    "pool",
    "pool+swap",
    "market",
    "market-oracle",
    "physical-limit",
)
"""Every policy, in the order reports list them."""

_CEM = "cem"


@dataclass(frozen=True, slots=True)
class _Flags:
    credits: bool
    pools: bool
    swaps: bool
    market: bool


_FLAGS = {
    "static": _Flags(credits=True, pools=False, swaps=False, market=False),
    "pool": _Flags(credits=True, pools=True, swaps=False, market=False),
    "pool+swap": _Flags(credits=True, pools=True, swaps=True, market=False),
    "market": _Flags(credits=True, pools=True, swaps=True, market=True),
    "market-oracle": _Flags(credits=True, pools=True, swaps=True, market=True),
    "physical-limit": _Flags(credits=False, pools=False, swaps=False, market=False),
}


@dataclass(slots=True)
class PolicyResult:
    """What one policy did, per tier (arrays over the fleet's tiers) and per hour.

    Quantities are milli-credits (= milli-vCPU-minutes) and minor units; ``*_series``
    arrays are ``(hours, tiers)``. ``clearing_price_series`` is NaN in hours without
    a trade.
    """

    policy: str
    tiers: tuple[str, ...]
    demand: np.ndarray
    throttled: np.ndarray
    forfeited: np.ndarray
    instances_throttled: np.ndarray
    instances: np.ndarray
    trades: np.ndarray
    volume: np.ndarray
    fees: np.ndarray
    swapped_in: np.ndarray
    swapped_out: np.ndarray
    conservation_violations: int
    throttled_series: np.ndarray
    pool_series: np.ndarray
    rate_series: np.ndarray
    clearing_price_series: np.ndarray
    ledger_entries: int = 0
    seconds: float = 0.0
    instance_throttled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ledger: Ledger | None = None

    def summary(self) -> dict[str, Any]:
        """Return the fleet-wide figures of this policy as plain JSON values."""
        demand = int(self.demand.sum())
        throttled = int(self.throttled.sum())
        return {
            "throttled_share": throttled / demand if demand else 0.0,
            "throttled_vcpu_minutes": throttled / 1000,
            "demand_vcpu_minutes": demand / 1000,
            "credits_thrown_away": int(self.forfeited.sum()) / 1000,
            "instances_ever_throttled": int(self.instances_throttled.sum()),
            "trades": int(self.trades.sum()),
            "volume_credits": int(self.volume.sum()) / 1000,
            "fees": int(self.fees.sum()),
            "swapped_credits_in": int(self.swapped_in.sum()) / 1000,
            "conservation_violations": self.conservation_violations,
            "ledger_entries": self.ledger_entries,
            "seconds": round(self.seconds, 3),
        }

    def per_tier(self) -> dict[str, dict[str, Any]]:
        """Return the figures of each tier as plain JSON values."""
        out = {}
        for k, tier in enumerate(self.tiers):
            demand = int(self.demand[k])
            throttled = int(self.throttled[k])
            out[tier] = {
                "throttled_share": throttled / demand if demand else 0.0,
                "throttled_vcpu_minutes": throttled / 1000,
                "credits_thrown_away": int(self.forfeited[k]) / 1000,
                "instances_ever_throttled": int(self.instances_throttled[k]),
                "instances": int(self.instances[k]),
                "trades": int(self.trades[k]),
                "volume_credits": int(self.volume[k]) / 1000,
                "fees": int(self.fees[k]),
                "swapped_credits_in": int(self.swapped_in[k]) / 1000,
                "swapped_credits_out": int(self.swapped_out[k]) / 1000,
            }
        return out


def _segment_rank(mask: np.ndarray, starts: np.ndarray, tier_of: np.ndarray) -> np.ndarray:
    # 1-based rank of each True within its tier, in instance order.
    running = np.cumsum(mask)
    before = np.concatenate([[0], running])[starts]
    return running - before[tier_of]


def _serve(
    allowed: np.ndarray, capacity: np.ndarray, starts: np.ndarray, tier_of: np.ndarray
) -> np.ndarray:
    """Return what each instance is served when each tier's hosts serve at most ``capacity``."""
    total = np.add.reduceat(allowed, starts)
    over = total > capacity
    if not over.any():
        return allowed
    cap_i = capacity[tier_of]
    total_i = total[tier_of]
    over_i = over[tier_of]
    scaled = np.where(over_i, allowed * cap_i // np.maximum(total_i, 1), allowed)
    remainder = capacity - np.add.reduceat(scaled, starts)
    short = over_i & (scaled < allowed)
    rank = _segment_rank(short, starts, tier_of)
    return scaled + (short & (rank <= remainder[tier_of]))


def _draw_in_order(
    want: np.ndarray, level: np.ndarray, starts: np.ndarray, tier_of: np.ndarray
) -> np.ndarray:
    """Return what each instance gets when its tier's ``level`` serves ``want`` in order."""
    running = np.cumsum(want)
    before_tier = np.concatenate([[0], running])[starts]
    taken_before = running - want - before_tier[tier_of]
    return np.clip(level[tier_of] - taken_before, 0, want)


class _Books:
    """One policy's ledger, CEM, venue and agents, and the engine's mirror of them."""

    def __init__(self, fleet: ReplayFleet, scenario: Scenario, flags: _Flags) -> None:
        self.clock = ManualClock(fleet.start)
        self.ledger = Ledger(MemoryStore(), self.clock)
        self.tiers: TierManager = fleet.tier_manager(scenario.fee_bps)
        self.tiers.open_accounts(self.ledger)
        self.cem = CreditExchange(self.ledger, self.tiers, self.clock)
        self.instance_ids = [str(i) for i in fleet.ids]
        self.accounts = [instance_credits(i) for i in self.instance_ids]
        self.pools = [pool_account(t) for t in fleet.tier_names]
        self.mints = [mint_account(t.asset) for t in fleet.tiers]
        self.burns = [burn_account(t.asset) for t in fleet.tiers]
        self.clearing = [escrow_account(f"replay-{t.name}") for t in fleet.tiers]
        self.ledger.open_accounts(
            [
                (c, t.asset, AccountKind.ESCROW)
                for c, t in zip(self.clearing, fleet.tiers, strict=True)
            ]
        )
        opening = [
            Transfer(self.mints[int(k)], account, int(b))
            for account, k, b in zip(self.accounts, fleet.tier_of, fleet.start_balance, strict=True)
            if b > 0
        ]
        if opening:
            self.ledger.post(EntryRequest(tuple(opening), "opening", _CEM))
        self.automation = (
            CemAutomation(
                CemPolicy(
                    actor=_CEM,
                    reserve_bps=scenario.cem_reserve_bps,
                    gain_bps=scenario.cem_gain_bps,
                    max_step_bps=scenario.cem_max_step_bps,
                )
            )
            if flags.swaps
            else None
        )
        # With automatic rates off the CEM treats every starting rate as set by hand.
        self.pinned_rates = (
            None if scenario.cem_automatic_rates else {t.name: t.exchange_rate for t in fleet.tiers}
        )
        # What the CEM's demand forecast reads of each instance, fixed for the run.
        instances = {i.id: i for i in self.tiers.instances()}
        specs = [self.tiers.tier(fleet.tier_names[int(k)]) for k in fleet.tier_of]
        self.pool_draw = np.array(
            [str(i) in instances and instances[str(i)].pool_draw for i in fleet.ids], dtype=bool
        )
        self.earn_hour = np.array(
            [s.hourly_earnings(int(v)) for s, v in zip(specs, fleet.vcpus, strict=True)],
            dtype=np.int64,
        )
        self.balance_cap = np.array(
            [s.balance_cap(int(v)) for s, v in zip(specs, fleet.vcpus, strict=True)],
            dtype=np.int64,
        )
        self.pool_capacity = np.array(
            [self.tiers.pool_capacity(t) for t in fleet.tier_names], dtype=np.int64
        )
        self.venue: Venue | None = None
        self.funds: list[str] = []
        self.policy = OwnerPolicy(
            throttle_cost=scenario.throttle_cost, risk_quantile=scenario.risk_quantile
        )
        if flags.market:
            self.venue = Venue(
                self.ledger,
                self.clock,
                [
                    BookConfig(tier=t, tick_size=1, fee_bps=scenario.fee_bps)
                    for t in fleet.tier_names
                ],
            )
            for iid, k in zip(fleet.ids, fleet.tier_of, strict=True):
                self.venue.register_instance(str(iid), fleet.tier_names[int(k)])
                if scenario.starting_funds:
                    self.cem.deposit_funds(str(iid), scenario.starting_funds, actor=_CEM)
            self.funds = [instance_funds(str(i)) for i in fleet.ids]

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the instances' credits and funds (market policies) and the pools."""
        balances = self.ledger.balances()
        return (
            np.fromiter((balances[a] for a in self.accounts), np.int64, len(self.accounts)),
            np.fromiter((balances[a] for a in self.funds), np.int64, len(self.funds)),
            np.fromiter((balances[p] for p in self.pools), np.int64, len(self.pools)),
        )

    def read_pools(self) -> np.ndarray:
        """Return the pools' balances."""
        balances = self.ledger.balances("pool:")
        return np.fromiter((balances[p] for p in self.pools), np.int64, len(self.pools))


def _post_hour(
    books: _Books,
    fleet: ReplayFleet,
    hour: int,
    minted: np.ndarray,
    spent: np.ndarray,
    to_pool: np.ndarray,
    from_pool: np.ndarray,
) -> None:
    # One entry per hour: each tier's mint, burn and pool totals through a clearing
    # account that ends the entry at zero, and one net leg per instance whose balance moved.
    legs: list[Transfer] = []
    starts = fleet.starts
    for k, (m, b, p) in enumerate(
        zip(
            np.add.reduceat(minted, starts),
            np.add.reduceat(spent, starts),
            np.add.reduceat(to_pool - from_pool, starts),
            strict=True,
        )
    ):
        clearing = books.clearing[k]
        if m:
            legs.append(Transfer(books.mints[k], clearing, int(m)))
        if b:
            legs.append(Transfer(clearing, books.burns[k], int(b)))
        if p > 0:
            legs.append(Transfer(clearing, books.pools[k], int(p)))
        elif p < 0:
            legs.append(Transfer(books.pools[k], clearing, int(-p)))
    net = minted + from_pool - to_pool - spent
    accounts, clearings = books.accounts, books.clearing
    gain, loss = np.flatnonzero(net > 0), np.flatnonzero(net < 0)
    legs += [
        Transfer(clearings[k], accounts[i], amount)
        for i, k, amount in zip(
            gain.tolist(), fleet.tier_of[gain].tolist(), net[gain].tolist(), strict=True
        )
    ]
    legs += [
        Transfer(accounts[i], clearings[k], amount)
        for i, k, amount in zip(
            loss.tolist(), fleet.tier_of[loss].tolist(), (-net[loss]).tolist(), strict=True
        )
    ]
    if legs:
        books.ledger.post(
            EntryRequest(
                tuple(legs),
                "accrual",
                "replay",
                f"replay-hour-{hour}",
                {"hour": hour, "instances": len(accounts)},
            )
        )


def _check_books(
    policy: str,
    step: int,
    books: _Books,
    fleet: ReplayFleet,
    balance: np.ndarray,
    pool: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the ledger holds the engine's balances and pools; return what it read."""
    credits, funds, pools = books.read()
    for k, tier in enumerate(fleet.tier_names):
        a, b = fleet.starts[k], (fleet.starts[k + 1] if k + 1 < len(fleet.starts) else len(balance))
        expected = int(balance[a:b].sum()) + int(pool[k])
        actual = int(credits[a:b].sum()) + int(pools[k])
        if expected != actual or not np.array_equal(credits[a:b], balance[a:b]):
            raise ConservationError(policy, step, f"credits:{tier}", expected, actual)
    return credits, funds, pools


def cem_tier_states(
    books: _Books, fleet: ReplayFleet, needs: HourNeeds, credits: np.ndarray, pools: np.ndarray
) -> list[TierState]:
    """Return what :func:`market.cem_auto.tier_states` returns, from the fleet's arrays.

    ``credits`` and ``pools`` are the ledger's balances, read once for the hour.
    """
    tier_pools = [
        Pool(t, int(pools[k]), int(books.pool_capacity[k]), books.tiers.tier(t).exchange_rate)
        for k, t in enumerate(fleet.tier_names)
    ]
    draws = books.pool_draw
    return fleet_tier_states(
        tier_pools,
        fleet.tier_of[draws],
        needs.cem[draws],
        credits[draws],
        books.earn_hour[draws],
        books.balance_cap[draws],
        needs.q90[draws, :24],
    )


def _cem(
    books: _Books,
    fleet: ReplayFleet,
    needs: HourNeeds,
    hour: int,
    credits: np.ndarray,
    pools: np.ndarray,
    result: PolicyResult,
) -> np.ndarray:
    """Run one interval of the CEM automation: forecast-driven rate steps and pool swaps.

    Return the pools after it.
    """
    assert books.automation is not None
    at = fleet.start + timedelta(hours=hour)
    states = cem_tier_states(books, fleet, needs, credits, pools)
    decision = books.automation.step(states, at, books.pinned_rates)
    apply_decision(books.cem, decision, books.automation.policy, None)
    if not decision.swaps:
        return pools  # rate changes move no credits
    after = books.read_pools()
    moved = after - pools
    result.swapped_in += np.maximum(moved, 0)
    result.swapped_out += np.maximum(-moved, 0)
    return after


def agent_fleet(
    books: _Books, fleet: ReplayFleet, needs: HourNeeds, credits: np.ndarray, funds: np.ndarray
) -> FleetState:
    """Return every agent's state for :func:`market.agent.decide_fleet`, from the fleet's arrays.

    What :class:`~market.agent.VenueAgents` reads for each agent, for all at once: the
    continuous books stay empty (every order waits for an hourly call auction, which
    finishes it), so no escrow comes back and the free balances are all there is.
    """
    assert books.venue is not None
    risk = books.policy.risk_quantile  # q50 or q90: the scenario allows no other
    markets = tuple(
        MarketView(
            recent_prices=recent_prices_of(books.venue, tier),
            scarcity=Fraction(1, 2),
            tick_size=books.venue.book(tier).config.tick_size,
            fee_bps=books.venue.book(tier).config.fee_bps,
        )
        for tier in fleet.tier_names
    )
    return FleetState(
        holdings=credits,
        money=funds,
        vcpus=fleet.vcpus,
        earn_rate=fleet.earned * STEPS_PER_HOUR,
        cap=fleet.cap,
        usable=needs.agents,
        need_upper=needs.q90,
        need_risk=needs.q50 if risk == "q50" else needs.q90,
        need_mid=needs.q50,
        upper_quantile=Fraction(9, 10),
        market=fleet.tier_of,
        markets=markets,
    )


def _trade(
    books: _Books,
    fleet: ReplayFleet,
    needs: HourNeeds,
    hour: int,
    credits: np.ndarray,
    funds: np.ndarray,
    result: PolicyResult,
) -> None:
    """Let every agent decide at once, then clear each tier's hourly call auction."""
    assert books.venue is not None
    decision = decide_fleet(books.policy, agent_fleet(books, fleet, needs, credits, funds))
    rows = np.flatnonzero((decision.bid_quantity > 0) | (decision.ask_quantity > 0))
    buys = decision.bid_quantity[rows] > 0
    prices = np.where(buys, decision.bid_price[rows], decision.ask_price[rows])
    quantities = np.where(buys, decision.bid_quantity[rows], decision.ask_quantity[rows])
    ids = books.instance_ids
    requests = [
        OrderRequest(ids[i], Side.BUY if buy else Side.SELL, price, quantity)
        for i, buy, price, quantity in zip(
            rows.tolist(), buys.tolist(), prices.tolist(), quantities.tolist(), strict=True
        )
    ]
    if requests:
        books.venue.submit_to_auction(requests)
    for k, tier in enumerate(fleet.tier_names):
        auction = books.venue.run_auction(tier, auction_id=f"{tier}-h{hour}")
        if auction.trades:
            result.trades[k] += len(auction.trades)
            result.volume[k] += auction.volume
            result.fees[k] += sum(t.fee for t in auction.trades)
        if auction.clearing_price is not None:
            result.clearing_price_series[hour, k] = auction.clearing_price


def run_policy(
    fleet: ReplayFleet,
    scenario: Scenario,
    policy: str,
    forecasts: ForecastTable | None = None,
    progress: Callable[[int], None] | None = None,
) -> PolicyResult:
    """Replay one policy over the whole fleet and return what it did.

    Parameters
    ----------
    fleet
        The prepared fleet.
    scenario
        Market and CEM settings.
    policy
        One of :data:`POLICIES`.
    forecasts
        What the agents trade on and the CEM plans with (``pool+swap``, ``market``,
        ``market-oracle``).
    progress
        Called with 1 after each replayed hour.

    Raises
    ------
    ScenarioError
        For an unknown policy, or a policy with agents or the CEM but no forecasts.
    ConservationError
        If credits appear or vanish at any step.
    """
    if policy not in _FLAGS:
        raise ScenarioError("policy", policy, f"must be one of {POLICIES}")
    flags = _FLAGS[policy]
    if (flags.market or flags.swaps) and forecasts is None:
        raise ScenarioError("policy", policy, "the agents and the CEM need forecasts")
    # The books keep every entry, order and trade of the run and none of them forms a
    # cycle: the cyclic collector would rescan them, ever more of them, for nothing.
    with gc_paused():
        return _replay(fleet, scenario, policy, flags, forecasts, progress)


def _replay(
    fleet: ReplayFleet,
    scenario: Scenario,
    policy: str,
    flags: _Flags,
    forecasts: ForecastTable | None,
    progress: Callable[[int], None] | None,
) -> PolicyResult:
    began = time.perf_counter()
    n_tiers = len(fleet.tier_names)
    hours = fleet.hours
    tier_of, starts, capacity = fleet.tier_of, fleet.starts, fleet.capacity
    zeros_k = np.zeros(n_tiers, dtype=np.int64)
    result = PolicyResult(
        policy=policy,
        tiers=fleet.tier_names,
        demand=zeros_k.copy(),
        throttled=zeros_k.copy(),
        forfeited=zeros_k.copy(),
        instances_throttled=zeros_k.copy(),
        instances=np.bincount(tier_of, minlength=n_tiers).astype(np.int64),
        trades=zeros_k.copy(),
        volume=zeros_k.copy(),
        fees=zeros_k.copy(),
        swapped_in=zeros_k.copy(),
        swapped_out=zeros_k.copy(),
        conservation_violations=0,
        throttled_series=np.zeros((hours, n_tiers), dtype=np.int64),
        pool_series=np.zeros((hours, n_tiers), dtype=np.int64),
        rate_series=np.zeros((hours, n_tiers), dtype=np.int64),
        clearing_price_series=np.full((hours, n_tiers), np.nan),
    )
    books = _Books(fleet, scenario, flags) if flags.credits else None
    n = len(fleet.ids)
    balance = fleet.start_balance.copy()
    pool = zeros_k.copy()
    pool_capacity = books.pool_capacity if books is not None else zeros_k
    earned, cap = fleet.earned, fleet.cap
    throttled_total = np.zeros(n, dtype=np.int64)
    # the ledger's balances, read once after each hour's check for the next hour
    funds = np.zeros(0, dtype=np.int64)
    if books is not None:
        balance, funds, pool = books.read()
    for hour in range(hours):
        if books is not None:
            books.clock.set(fleet.start + timedelta(hours=hour))
        if books is not None and forecasts is not None and (flags.market or flags.swaps):
            needs = forecasts.needs(hour, fleet.vcpus)
            if flags.market:
                _trade(books, fleet, needs, hour, balance, funds, result)
                balance, funds, pool = books.read()
            if flags.swaps:
                pool = _cem(books, fleet, needs, hour, balance, pool, result)
        h_minted = np.zeros(n, dtype=np.int64)
        h_spent = np.zeros(n, dtype=np.int64)
        h_to_pool = np.zeros(n, dtype=np.int64)
        h_from_pool = np.zeros(n, dtype=np.int64)
        for s in range(hour * STEPS_PER_HOUR, (hour + 1) * STEPS_PER_HOUR):
            demand = fleet.demand[:, s]
            if not flags.credits:
                served = _serve(demand, capacity, starts, tier_of)
                throttled = demand - served
            else:
                own = balance + earned
                allowed = np.minimum(demand, own)
                if flags.pools:
                    allowed = allowed + _draw_in_order(demand - allowed, pool, starts, tier_of)
                served = _serve(allowed, capacity, starts, tier_of)
                throttled = demand - served
                from_pool = np.maximum(0, served - own)
                net = own + from_pool - served
                overflow = np.maximum(0, np.minimum(net - cap, earned - served))
                if flags.pools:
                    drawn = np.add.reduceat(from_pool, starts)
                    headroom = np.maximum(0, pool_capacity - (pool - drawn))
                    to_pool = _draw_in_order(overflow, headroom, starts, tier_of)
                else:
                    drawn = zeros_k
                    to_pool = np.zeros_like(overflow)
                forfeited = overflow - to_pool
                new_balance = net - overflow
                new_pool = pool - drawn + np.add.reduceat(to_pool, starts)
                minted = earned - forfeited
                # Exact conservation: balances and pools change by what was minted less spent.
                before = np.add.reduceat(balance, starts) + pool
                after = np.add.reduceat(new_balance, starts) + new_pool
                change = np.add.reduceat(minted - served, starts)
                if (
                    not np.array_equal(after - before, change)
                    or (new_balance < 0).any()
                    or (new_pool < 0).any()
                    or (new_pool > np.maximum(pool_capacity, pool)).any()
                ):
                    k = int(np.argmax(after - before != change))
                    result.conservation_violations += 1
                    raise ConservationError(
                        policy,
                        s,
                        f"credits:{fleet.tier_names[k]}",
                        int(before[k] + change[k]),
                        int(after[k]),
                    )
                balance, pool = new_balance, new_pool
                h_minted += minted
                h_spent += served
                h_to_pool += to_pool
                h_from_pool += from_pool
                result.forfeited += np.add.reduceat(forfeited, starts)
            throttled_total += throttled
            t_k = np.add.reduceat(throttled, starts)
            result.throttled += t_k
            result.throttled_series[hour] += t_k
            result.demand += np.add.reduceat(demand, starts)
        if books is not None:
            _post_hour(books, fleet, hour, h_minted, h_spent, h_to_pool, h_from_pool)
            step = (hour + 1) * STEPS_PER_HOUR - 1
            balance, funds, pool = _check_books(policy, step, books, fleet, balance, pool)
            result.rate_series[hour] = [books.tiers.tier(t).exchange_rate for t in fleet.tier_names]
        result.pool_series[hour] = pool
        if progress is not None:
            progress(1)
    if books is not None:
        report = books.ledger.verify()
        unbalanced = {a: t for a, t in report.asset_totals.items() if t != 0}
        if not report.ok or unbalanced:
            result.conservation_violations += 1
            asset, total = next(iter(unbalanced.items()), ("ledger", -1))
            raise ConservationError(policy, hours * STEPS_PER_HOUR, asset, 0, total)
        result.ledger_entries = report.entries
        result.ledger = books.ledger
    result.instances_throttled = np.bincount(
        tier_of, weights=throttled_total > 0, minlength=n_tiers
    ).astype(np.int64)
    result.instance_throttled = throttled_total
    result.seconds = time.perf_counter() - began
    return result
