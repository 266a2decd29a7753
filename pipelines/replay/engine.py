"""The replay engine: every policy over the same fleet, 5-minute steps, hourly books.

Each step, per instance, in milli-credits: the instance earns its tier's baseline
(``earned``), asks for ``demand``; its own balance pays first, then (pool policies)
its tier's pool: shared pro rata when it runs short (``pool``, ``pool+swap``), highest
owner value first (``pool-by-value``), or at a price that clears the hour's forecast,
highest value per unit of value first and across tiers at the exchange rates, with
owners who value a credit below the price lending theirs (the market policies, see
``docs/scenario.md``); the credits it may spend
are what its tier's hosts can serve: when the tier asks for more than the hosts'
physical capacity, every instance is served ``allowed * capacity // total`` (the
rounding remainder one milli-credit each, in instance order), so no policy ever
exceeds the hosts. What is not served is throttled. The balance after the step is
capped as AWS standard mode caps it (:func:`market.cem.accounting.plan_interval`): what
overflows goes to the pool as far as it has headroom and is thrown away otherwise.

The per-step arithmetic runs on numpy arrays across instances; each policy books
each hour in its own :class:`~market.ledger.Ledger` (in-memory store) as one entry,
with the market (agents, hourly call auctions on :class:`~market.venue.handling.Venue`) and
the CEM's swaps (:class:`~market.cem.exchange.CreditExchange`) acting on the same ledger
at the start of each hour: the market's round (:class:`~market.round.MarketRound`, as the
live exchange runs it) offers the pools, lets the one agent runner decide for every agent
at once on the forecast table's arrays, and clears the tiers' call auctions.
Conservation is checked every step (balances plus pools change exactly by what was
earned less what was spent), every hour (the ledger's instance and pool balances equal
the engine's) and at the end (the ledger's journal replays to its balances and every
asset sums to zero over its accounts), and the market policies' money must reconcile
(buyers' payments equal sellers' and lenders' receipts plus fees plus pool revenue, in
the figures and in the ledger); any difference raises :class:`ConservationError`. The
hourly entry moves each tier's mint, burn, pool and conversion totals through a clearing
account that ends it at zero, and one net leg per instance whose balance moved.
``optimum`` is solved offline (:mod:`pipelines.replay.optimum`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from typing import Any

import numpy as np

from market.agents.decision import FleetState, MarketView, OwnerPolicy
from market.agents.runner import AuctionTransport, FleetRows, recent_prices_of
from market.agents.valuation import pool_scarcity
from market.cem.accrual import TierSegments, accrue_interval, serve_hosts
from market.cem.automation import (
    CemAutomation,
    CemPolicy,
    TierState,
    apply_decision,
    fleet_tier_states,
)
from market.cem.exchange import CreditExchange
from market.cem.pool_rules import (
    Conversions,
    PoolRule,
    PricedPool,
    ValueOrder,
    draw_pro_rata,
    settle_pool,
    value_order,
)
from market.cem.tiers import POOL_REVENUE_ACCOUNT, VALUE, Pool, TierManager
from market.clock import ManualClock
from market.ledger import (
    FEES_ACCOUNT,
    AccountKind,
    EntryRequest,
    Ledger,
    MemoryStore,
    Transfer,
    burn_account,
    conversion_account,
    escrow_account,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
    rounding_account,
)
from market.memory import gc_paused
from market.round import MarketRound, PoolHour, reference_value, whole_holding_sellers
from market.venue.book import BookConfig
from market.venue.handling import Venue
from pipelines.replay.errors import ConservationError, ScenarioError
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet
from pipelines.replay.forecasts import ForecastTable, HourNeeds, hourly_utilisation, with_prior
from pipelines.replay.optimum import solve_optimum
from pipelines.replay.scenario import Scenario

POLICIES: tuple[str, ...] = (
    "static",
    "pool",
    "pool+swap",
    "pool-by-value",
    "market",
    "market-oracle",
    "optimum",
    "physical-limit",
)
"""Every policy, in the order reports list them."""

_CEM = "cem"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Flags:
    credits: bool
    pools: bool
    swaps: bool
    market: bool
    draw: str = "pro-rata"  # how a pool serves its tier: pro-rata, value or priced


_FLAGS = {
    "static": _Flags(credits=True, pools=False, swaps=False, market=False),
    "pool": _Flags(credits=True, pools=True, swaps=False, market=False),
    "pool+swap": _Flags(credits=True, pools=True, swaps=True, market=False),
    "pool-by-value": _Flags(credits=True, pools=True, swaps=True, market=False, draw="value"),
    "market": _Flags(credits=True, pools=True, swaps=True, market=True, draw="priced"),
    "market-oracle": _Flags(credits=True, pools=True, swaps=True, market=True, draw="priced"),
    "physical-limit": _Flags(credits=False, pools=False, swaps=False, market=False),
}


@dataclass(slots=True)
class PolicyResult:
    """What one policy did, per tier (arrays over the fleet's tiers) and per hour.

    Quantities are milli-credits (= milli-vCPU-minutes) and minor units; ``*_series``
    arrays are ``(hours, tiers)``. ``clearing_price_series`` is NaN in hours without
    a trade. ``instance_value`` is each instance's owner value and ``instance_demand``
    and ``instance_throttled`` its totals, so value-weighted figures come from them.
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
    forfeited_series: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    ledger_entries: int = 0
    seconds: float = 0.0
    instance_throttled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    instance_demand: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    instance_value: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ledger: Ledger | None = None
    orders_placed: int = 0
    orders_filled: int = 0
    orders_rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    paid: int = 0
    seller_receipts: int = 0
    pool_revenue: int = 0
    above_cap: int = 0
    method: str = ""

    def value_cost(self) -> tuple[int, int]:
        """Return the value-weighted throttling and demand: sums of value x milli-credits."""
        value = self.instance_value.astype(object)
        return (
            int((value * self.instance_throttled.astype(object)).sum()),
            int((value * self.instance_demand.astype(object)).sum()),
        )

    def summary(self) -> dict[str, Any]:
        """Return the fleet-wide figures of this policy as plain JSON values."""
        demand = int(self.demand.sum())
        throttled = int(self.throttled.sum())
        cost, demand_value = self.value_cost()
        return {
            "throttled_share": throttled / demand if demand else 0.0,
            "value_cost_share": cost / demand_value if demand_value else 0.0,
            "value_cost": cost / 1000,
            "throttled_vcpu_minutes": throttled / 1000,
            "demand_vcpu_minutes": demand / 1000,
            "credits_thrown_away": int(self.forfeited.sum()) / 1000,
            "instances_ever_throttled": int(self.instances_throttled.sum()),
            "orders_placed": self.orders_placed,
            "orders_filled": self.orders_filled,
            "orders_rejected": self.orders_rejected,
            "rejections": dict(self.rejections),
            "trades": int(self.trades.sum()),
            "volume_credits": int(self.volume.sum()) / 1000,
            "paid": self.paid,
            "seller_receipts": self.seller_receipts,
            "fees": int(self.fees.sum()),
            "pool_revenue": self.pool_revenue,
            "median_clearing_price": self._prices(50),
            "clearing_price_p10": self._prices(10),
            "clearing_price_p90": self._prices(90),
            "credits_above_cap": self.above_cap / 1000,
            "throttle_spread_similar_value": self.throttle_spread(),
            "overflow_day_price_to_value": self.overflow_day_price(),
            "swapped_credits_in": int(self.swapped_in.sum()) / 1000,
            "conservation_violations": self.conservation_violations,
            "ledger_entries": self.ledger_entries,
            "method": self.method,
            "seconds": round(self.seconds, 3),
        }

    def _prices(self, percentile: int) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for k, tier in enumerate(self.tiers):
            prices = self.clearing_price_series[:, k]
            prices = prices[~np.isnan(prices)]
            out[tier] = float(np.percentile(prices, percentile)) if prices.size else None
        return out

    def overflow_day_price(self) -> float | None:
        """Return the highest ratio, over the days a tier's pool overflowed, of that day's
        median clearing price in the tier to the tier's median owner value.

        ``None`` when no pool overflowed on a day with trades.
        """
        worst = None
        days = len(self.forfeited_series) // 24
        for k in range(len(self.tiers)):
            median_value = float(np.median(self.instance_value)) if self.instance_value.size else 0
            for day in range(days):
                hours = slice(24 * day, 24 * day + 24)
                prices = self.clearing_price_series[hours, k]
                prices = prices[~np.isnan(prices)]
                if self.forfeited_series[hours, k].sum() > 0 and prices.size and median_value:
                    ratio = float(np.median(prices)) / median_value
                    worst = ratio if worst is None else max(worst, ratio)
        return worst

    def throttle_spread(self, groups: int = 5) -> float:
        """Return how unevenly instances of similar value are throttled.

        Instances are split by owner value into ``groups`` groups of equal size; within
        each, the standard deviation of the instances' throttled shares of their demand;
        the mean over the groups (``0``: instances alike in value are throttled alike).
        """
        demand = self.instance_demand
        live = np.flatnonzero(demand > 0)
        if live.size < 2:
            return 0.0
        share = self.instance_throttled[live] / demand[live]
        order = np.argsort(self.instance_value[live], kind="stable")
        spreads = [float(np.std(share[g])) for g in np.array_split(order, groups) if g.size > 1]
        return float(np.mean(spreads)) if spreads else 0.0

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


def _rule(books: _Books, flags: _Flags, state: _State, drawn: np.ndarray) -> PoolRule:
    """Return the policy's pool rule for a step.

    ``pro-rata``: the patent's free pool, shared in proportion to what each wants when
    it runs short. ``value``: the free pool, highest owner value first. ``priced``: a
    credit costs the tier's draw price (:class:`~market.cem.pool_rules.PricedPool`;
    ``drawn`` is what each instance already drew this hour).
    """
    if flags.draw == "pro-rata" or not flags.pools:
        return draw_pro_rata
    if flags.draw == "value":
        return ValueOrder(books.by_value, books.by_value_inverse)
    return PricedPool(
        books.value,
        books.by_value,
        books.by_value_inverse,
        state.draw_price,
        state.funds,
        drawn,
        books.rates,
    )


def _settle_pool(
    books: _Books,
    fleet: ReplayFleet,
    hour: int,
    drawn: np.ndarray,
    lent: np.ndarray,
    price: np.ndarray,
    funds: np.ndarray,
) -> tuple[int, int]:
    """Settle the hour's pool trades at each tier's draw price
    (:func:`~market.cem.pool_rules.settle_pool`) on the hour's ``funds``, which nothing
    else moves within an hour; return (charged, repaid)."""
    settled = settle_pool(drawn, lent, price[fleet.tier_of], books.owed, funds)
    books.owed = settled.owed
    legs = [
        Transfer(books.funds[i], POOL_REVENUE_ACCOUNT, int(settled.charge[i]))
        for i in np.flatnonzero(settled.charge).tolist()
    ]
    legs += [
        Transfer(POOL_REVENUE_ACCOUNT, books.funds[i], int(settled.repay[i]))
        for i in np.flatnonzero(settled.repay).tolist()
    ]
    if legs:
        books.ledger.post(EntryRequest(tuple(legs), "pool-trades", _CEM, f"replay-pool-{hour}"))
    return int(settled.charge.sum()), int(settled.repay.sum())


class _Books:
    """One policy's ledger, CEM, venue and agents, and the engine's mirror of them."""

    def __init__(self, fleet: ReplayFleet, scenario: Scenario, flags: _Flags) -> None:
        self.clock = ManualClock(fleet.start)
        self.tier_names = fleet.tier_names
        self.starts, self.tier_of = fleet.starts, fleet.tier_of
        self.ledger = Ledger(MemoryStore(), self.clock)
        self.tiers: TierManager = fleet.tier_manager(scenario.fee_bps)
        self.tiers.open_accounts(self.ledger)
        self.cem = CreditExchange(self.ledger, self.tiers, self.clock)
        self.instance_ids = [str(i) for i in fleet.ids]
        self.position = {iid: n for n, iid in enumerate(self.instance_ids)}
        self.accounts = [instance_credits(i) for i in self.instance_ids]
        self.pools = [pool_account(t) for t in fleet.tier_names]
        self.mints = [mint_account(t.asset) for t in fleet.tiers]
        self.burns = [burn_account(t.asset) for t in fleet.tiers]
        self.clearing = [escrow_account(f"replay-{t.name}") for t in fleet.tiers]
        self._open(fleet)
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
        self._instance_arrays(fleet)
        # what each lender is owed for credits it lent the pools, not yet paid
        self.owed = np.zeros(len(fleet.ids), dtype=np.int64)
        # this hour's conversions between pools
        self.converted = Conversions.none(len(fleet.tiers))
        self.venue: Venue | None = None
        self.market: MarketRound | None = None
        self.funds: list[str] = []
        self.policy = OwnerPolicy(
            throttle_cost=scenario.throttle_cost, risk_quantile=scenario.risk_quantile
        )
        if flags.market:
            self._open_venue(fleet, scenario)

    def _open(self, fleet: ReplayFleet) -> None:
        # the tiers' clearing accounts, and every instance's starting balance
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

    def _instance_arrays(self, fleet: ReplayFleet) -> None:
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
        self.value = fleet.value
        # instances of each tier, highest owner value first (ties in id order)
        self.by_value, self.by_value_inverse = value_order(fleet.value, fleet.tier_of)
        self.segments = TierSegments.of(fleet.tier_of, len(fleet.tiers))
        # every instance draws on the pool policies' pools; the static policy has none
        self.may_draw = np.ones(len(fleet.ids), dtype=bool)
        self.no_draw = np.zeros(len(fleet.ids), dtype=bool)
        self.no_pool = np.zeros(len(fleet.tiers), dtype=np.int64)
        self.base_rates = np.array([t.exchange_rate for t in fleet.tiers], dtype=np.int64)
        # the median owner value per unit of value (a credit at exchange rate 1.0)
        self.reference_value = reference_value(fleet.value, self.base_rates[fleet.tier_of])
        self.last_price = np.zeros(len(fleet.tiers), dtype=np.int64)
        self.rates = self.base_rates.copy()

    def _open_venue(self, fleet: ReplayFleet, scenario: Scenario) -> None:
        # every instance and every pool's seller trades in its tier's call auction
        self.venue = Venue(
            self.ledger,
            self.clock,
            [BookConfig(tier=t, tick_size=1, fee_bps=scenario.fee_bps) for t in fleet.tier_names],
        )
        for iid, k in zip(fleet.ids, fleet.tier_of, strict=True):
            self.venue.register_instance(str(iid), fleet.tier_names[int(k)])
            if scenario.starting_funds:
                self.cem.deposit_funds(str(iid), scenario.starting_funds, actor=_CEM)
        self.funds = [instance_funds(str(i)) for i in fleet.ids]
        self.market = MarketRound(
            self.ledger,
            self.venue,
            self.tiers,
            self.policy,
            self.reference_value,
            fleet.tier_names,
            actor=_CEM,
        )
        self.market.register_pool_sellers()

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
    legs = _tier_legs(books, fleet, minted, spent, to_pool, from_pool)
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


def _tier_legs(
    books: _Books,
    fleet: ReplayFleet,
    minted: np.ndarray,
    spent: np.ndarray,
    to_pool: np.ndarray,
    from_pool: np.ndarray,
) -> list[Transfer]:
    """Return each tier's legs of the hour: conversions, mint, burn and pool, via clearing."""
    legs: list[Transfer] = []
    starts = fleet.starts
    # what the pools converted between tiers this hour, value in and value out
    out, into, remainder = books.converted.out, books.converted.into, books.converted.remainder
    books.converted = Conversions.none(len(out))
    for k, (m, b, p) in enumerate(
        zip(
            np.add.reduceat(minted, starts),
            np.add.reduceat(spent, starts),
            np.add.reduceat(to_pool - from_pool, starts) + into - out,
            strict=True,
        )
    ):
        clearing = books.clearing[k]
        asset = fleet.tiers[k].asset
        if out[k]:
            legs.append(Transfer(clearing, conversion_account(asset), int(out[k])))
        if into[k]:
            legs.append(Transfer(conversion_account(asset), clearing, int(into[k])))
        if m:
            legs.append(Transfer(books.mints[k], clearing, int(m)))
        if b:
            legs.append(Transfer(clearing, books.burns[k], int(b)))
        if p > 0:
            legs.append(Transfer(clearing, books.pools[k], int(p)))
        elif p < 0:
            legs.append(Transfer(books.pools[k], clearing, int(-p)))
    if remainder:
        legs.append(Transfer(conversion_account(VALUE), rounding_account(VALUE), int(remainder)))
    return legs


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
    """Return what :func:`market.cem.automation.tier_states` returns, from the fleet's arrays.

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
    books: _Books,
    fleet: ReplayFleet,
    needs: HourNeeds,
    credits: np.ndarray,
    funds: np.ndarray,
    pools: np.ndarray,
) -> FleetState:
    """Return every agent's state for :func:`~market.agents.decision.decide_fleet`, from the arrays.

    What :class:`~market.agents.runner.VenueAgents` reads for each agent, for all at once: the
    continuous books stay empty (every order waits for an hourly call auction, which
    finishes it), so no escrow comes back and the free balances are all there is. Each
    tier's scarcity is its pool's real level (:func:`~market.agents.valuation.pool_scarcity`),
    and each agent prices from its owner's value.
    """
    assert books.venue is not None
    risk = books.policy.risk_quantile  # q50 or q90: the scenario allows no other
    markets = tuple(
        MarketView(
            recent_prices=recent_prices_of(books.venue, tier),
            scarcity=pool_scarcity(int(pools[k]), int(books.pool_capacity[k])),
            tick_size=books.venue.book(tier).config.tick_size,
            fee_bps=books.venue.book(tier).config.fee_bps,
        )
        for k, tier in enumerate(fleet.tier_names)
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
        value=books.value,
    )


def _trade(
    books: _Books,
    fleet: ReplayFleet,
    needs: HourNeeds,
    hour: int,
    balances: tuple[np.ndarray, np.ndarray, np.ndarray],
    result: PolicyResult,
) -> np.ndarray:
    """Let every agent decide at once, offer the pools, then clear each tier's call auction.

    A rejected order is counted by its error and changes nothing. Return which agents
    offered everything they hold (their credits are worth more to the market than to
    their owners).
    """
    assert books.market is not None
    credits, funds, pools = balances
    rows = FleetRows(
        books.instance_ids, agent_fleet(books, fleet, needs, credits, funds, pools), books.clock()
    )
    venue = books.market.venue
    traded = books.market.trade(
        lambda offers: AuctionTransport(venue, rows, extra=offers), pools, f"h{hour}"
    )
    played = traded.agents
    for outcome in played.results:
        if outcome.error is None:
            result.orders_placed += 1
            continue
        result.orders_rejected += 1
        name = str(outcome.error_type)
        result.rejections[name] = result.rejections.get(name, 0) + 1
        _log.warning(
            "%s hour %d: %s's %s order refused: %s",
            result.policy,
            hour,
            outcome.intent.instance_id,
            outcome.intent.side,
            outcome.error,
        )
    sellers = set(books.market.sellers)
    for k, auction in enumerate(traded.auctions):
        if auction.trades:
            filled = set()
            for t in auction.trades:
                result.paid += t.value + t.fee
                result.fees[k] += t.fee
                filled.add(t.buy_order_id)
                if t.seller not in sellers:
                    result.seller_receipts += t.value
                    filled.add(t.sell_order_id)
            result.orders_filled += len(filled)
            result.trades[k] += len(auction.trades)
            result.volume[k] += auction.volume
        if auction.clearing_price is not None:
            result.clearing_price_series[hour, k] = auction.clearing_price
            books.last_price[k] = auction.clearing_price
    result.pool_revenue += traded.pool_revenue
    return whole_holding_sellers(played.results, credits, books.position)


def _reconcile_money(
    policy: str, books: _Books, fleet: ReplayFleet, scenario: Scenario, result: PolicyResult
) -> None:
    """Check that buyers paid exactly what sellers, the exchange and the pools received.

    In the engine's figures (payments = sellers' receipts + fees + pool revenue) and in
    the ledger (the fee and pool revenue accounts hold those sums, and the instances'
    funds fell by exactly them).
    """
    fees = int(result.fees.sum())
    held = books.ledger.balances_of([FEES_ACCOUNT, POOL_REVENUE_ACCOUNT, *books.funds])
    spent = scenario.starting_funds * len(fleet.ids) - sum(held[a] for a in books.funds)
    step = fleet.hours * STEPS_PER_HOUR
    checks = (
        ("payments", result.seller_receipts + fees + result.pool_revenue, result.paid),
        (FEES_ACCOUNT, fees, held[FEES_ACCOUNT]),
        (POOL_REVENUE_ACCOUNT, result.pool_revenue, held[POOL_REVENUE_ACCOUNT]),
        ("funds spent", fees + result.pool_revenue, spent),
    )
    for what, expected, actual in checks:
        if expected != actual:
            result.conservation_violations += 1
            raise ConservationError(policy, step, what, expected, actual)


def _optimum(fleet: ReplayFleet, scenario: Scenario) -> PolicyResult:
    """Return the ``optimum`` policy's figures (:mod:`pipelines.replay.optimum`)."""
    solved = solve_optimum(fleet, scenario)
    n_tiers, hours = len(fleet.tier_names), fleet.hours
    throttled = np.asarray(solved["throttled"])
    per_hour = throttled.shape[1] // hours
    hourly = throttled.reshape(len(fleet.ids), hours, per_hour).sum(axis=2)
    instance = np.rint(hourly.sum(axis=1)).astype(np.int64)
    series = np.rint(
        np.stack([hourly[fleet.tier_of == k].sum(axis=0) for k in range(n_tiers)], axis=1)
    ).astype(np.int64)
    demand = fleet.demand[:, : hours * STEPS_PER_HOUR].sum(axis=1)
    zeros = np.zeros(n_tiers, dtype=np.int64)
    return PolicyResult(
        policy="optimum",
        tiers=fleet.tier_names,
        demand=np.bincount(fleet.tier_of, weights=demand, minlength=n_tiers).astype(np.int64),
        throttled=series.sum(axis=0),
        forfeited=np.rint(np.asarray(solved["thrown_away"])).astype(np.int64),
        instances_throttled=np.bincount(
            fleet.tier_of, weights=instance > 0, minlength=n_tiers
        ).astype(np.int64),
        instances=np.bincount(fleet.tier_of, minlength=n_tiers).astype(np.int64),
        trades=zeros.copy(),
        volume=zeros.copy(),
        fees=zeros.copy(),
        swapped_in=zeros.copy(),
        swapped_out=zeros.copy(),
        conservation_violations=0,
        throttled_series=series,
        pool_series=np.zeros((hours, n_tiers), dtype=np.int64),
        rate_series=np.tile([t.exchange_rate for t in fleet.tiers], (hours, 1)),
        clearing_price_series=np.full((hours, n_tiers), np.nan),
        seconds=float(solved["seconds"]),  # type: ignore[arg-type]
        instance_throttled=instance,
        instance_demand=demand,
        instance_value=fleet.value,
        method=str(solved["method"]),
    )


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
    if policy == "optimum":
        return _optimum(fleet, scenario)
    if policy not in _FLAGS:
        raise ScenarioError("policy", policy, f"must be one of {POLICIES}")
    flags = _FLAGS[policy]
    if (flags.market or flags.swaps) and forecasts is None:
        raise ScenarioError("policy", policy, "the agents and the CEM need forecasts")
    # The books keep every entry, order and trade of the run and none of them forms a
    # cycle: the cyclic collector would rescan them, ever more of them, for nothing.
    with gc_paused():
        return _replay(fleet, scenario, policy, flags, forecasts, progress)


@dataclass(slots=True)
class _State:
    """What the run carries from step to step: balances, pools and the hour's settings."""

    balance: np.ndarray
    funds: np.ndarray
    pool: np.ndarray
    throttled: np.ndarray
    draw_price: np.ndarray
    consign: np.ndarray
    hour_need: np.ndarray


@dataclass(slots=True)
class _HourTotals:
    """Each instance's credits this hour: minted, spent, to and from the pools, lent."""

    minted: np.ndarray
    spent: np.ndarray
    to_pool: np.ndarray
    from_pool: np.ndarray
    lent: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> _HourTotals:
        return cls(*(np.zeros(n, dtype=np.int64) for _ in range(5)))


def _empty_result(policy: str, fleet: ReplayFleet) -> PolicyResult:
    n_tiers, hours = len(fleet.tier_names), fleet.hours
    zeros_k = np.zeros(n_tiers, dtype=np.int64)
    return PolicyResult(
        policy=policy,
        tiers=fleet.tier_names,
        demand=zeros_k.copy(),
        throttled=zeros_k.copy(),
        forfeited=zeros_k.copy(),
        instances_throttled=zeros_k.copy(),
        instances=np.bincount(fleet.tier_of, minlength=n_tiers).astype(np.int64),
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
        forfeited_series=np.zeros((hours, n_tiers), dtype=np.int64),
    )


def _replay(
    fleet: ReplayFleet,
    scenario: Scenario,
    policy: str,
    flags: _Flags,
    forecasts: ForecastTable | None,
    progress: Callable[[int], None] | None,
) -> PolicyResult:
    began = time.perf_counter()
    result = _empty_result(policy, fleet)
    books = _Books(fleet, scenario, flags) if flags.credits else None
    n, zeros_k = len(fleet.ids), np.zeros(len(fleet.tier_names), dtype=np.int64)
    state = _State(
        balance=fleet.start_balance.copy(),
        funds=np.zeros(0, dtype=np.int64),
        pool=zeros_k,
        throttled=np.zeros(n, dtype=np.int64),
        draw_price=zeros_k,
        consign=np.zeros(n, dtype=bool),
        hour_need=np.zeros(n, dtype=np.int64),
    )
    if books is not None:
        # the ledger's balances, read once after each hour's check for the next hour
        state.balance, state.funds, state.pool = books.read()
    hourly = hourly_utilisation(fleet) if flags.market else None
    segments = TierSegments.of(fleet.tier_of, len(fleet.tier_names))
    for hour in range(fleet.hours):
        steps = range(hour * STEPS_PER_HOUR, (hour + 1) * STEPS_PER_HOUR)
        if books is None:
            for s in steps:
                demand = fleet.demand[:, s]
                served = serve_hosts(demand, fleet.capacity, segments)
                _count_throttled(result, fleet, hour, demand, demand - served, state)
            result.pool_series[hour] = state.pool
        else:
            _open_hour(books, fleet, flags, forecasts, hourly, hour, state, result)
            totals = _HourTotals.zeros(n)
            for s in steps:
                _credit_step(books, fleet, flags, s, hour, state, totals, result)
            _close_hour(books, fleet, flags, hour, state, totals, result)
        if progress is not None:
            progress(1)
    if books is not None:
        _check_ledger(books, fleet, flags, scenario, result)
    result.instances_throttled = np.bincount(
        fleet.tier_of, weights=state.throttled > 0, minlength=len(fleet.tier_names)
    ).astype(np.int64)
    result.instance_throttled = state.throttled
    result.instance_demand = fleet.demand[:, : fleet.hours * STEPS_PER_HOUR].sum(axis=1)
    result.instance_value = fleet.value
    if flags.credits:
        result.above_cap = int(np.maximum(0, state.balance - fleet.cap).sum())
    result.seconds = time.perf_counter() - began
    return result


def _open_hour(
    books: _Books,
    fleet: ReplayFleet,
    flags: _Flags,
    forecasts: ForecastTable | None,
    hourly: np.ndarray | None,
    hour: int,
    state: _State,
    result: PolicyResult,
) -> None:
    """Start an hour: the agents trade and the CEM steps on the hour's forecasts, and a
    priced pool sets the hour's draw prices and who lends to it."""
    books.clock.set(fleet.start + timedelta(hours=hour))
    if forecasts is not None and (flags.market or flags.swaps):
        needs = forecasts.needs(hour, fleet.vcpus)
        if flags.market:
            assert hourly is not None
            prior = with_prior(needs, hourly, hour, fleet.vcpus, forecasts.horizon)
            state.hour_need = prior.q50[:, 0]
            balances = (state.balance, state.funds, state.pool)
            sold_all = _trade(books, fleet, prior, hour, balances, result)
            state.balance, state.funds, state.pool = books.read()
            state.consign = sold_all
        if flags.swaps:
            state.pool = _cem(books, fleet, needs, hour, state.balance, state.pool, result)
    if flags.draw == "priced":
        assert books.market is not None
        terms = books.market.pool_terms(
            PoolHour(state.pool, state.balance, state.hour_need, books.earn_hour, books.value),
            fleet.tier_of,
            state.consign,
        )
        state.draw_price, books.rates, state.consign = terms.prices, terms.rates, terms.lenders


def _credit_step(
    books: _Books,
    fleet: ReplayFleet,
    flags: _Flags,
    s: int,
    hour: int,
    state: _State,
    totals: _HourTotals,
    result: PolicyResult,
) -> None:
    """Replay one 5-minute step of a policy with credits (the live accrual's arithmetic,
    :func:`~market.cem.accrual.accrue_interval`); check it conserved them."""
    balance, pool = state.balance, state.pool
    booked = accrue_interval(
        balance=balance,
        earned=fleet.earned,
        demand=fleet.demand[:, s],
        cap=fleet.cap,
        pool_draw=books.may_draw if flags.pools else books.no_draw,
        segments=books.segments,
        pool=pool,
        pool_capacity=books.pool_capacity if flags.pools else books.no_pool,
        draw=_rule(books, flags, state, totals.from_pool),
        host_capacity=fleet.capacity,
        lend=state.consign if flags.pools else None,
    )
    shift = booked.conversions.shift
    books.converted = books.converted + booked.conversions
    total = books.segments.total
    _check_step(
        result,
        fleet,
        s,
        (balance, pool),
        (booked.balance, booked.pool),
        total(booked.minted - booked.spent) + shift,
        np.maximum(books.pool_capacity, pool + np.maximum(shift, 0)),
    )
    state.balance, state.pool = booked.balance, booked.pool
    totals.minted += booked.minted
    totals.spent += booked.spent
    totals.to_pool += booked.to_pool + booked.lent
    totals.from_pool += booked.from_pool
    totals.lent += booked.lent
    thrown = total(booked.forfeited)
    result.forfeited += thrown
    result.forfeited_series[hour] += thrown
    _count_throttled(result, fleet, hour, booked.demand, booked.throttled, state)


def _check_step(
    result: PolicyResult,
    fleet: ReplayFleet,
    s: int,
    before: tuple[np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray],
    change: np.ndarray,
    pool_ceiling: np.ndarray,
) -> None:
    """Raise :class:`ConservationError` unless balances and pools changed by ``change``.

    Exact conservation: balances and pools change by what was minted less spent, and
    by what the pools converted between tiers; no balance or pool goes negative and no
    pool beyond its ceiling.
    """
    starts = fleet.starts
    held_before = np.add.reduceat(before[0], starts) + before[1]
    held_after = np.add.reduceat(after[0], starts) + after[1]
    new_balance, new_pool = after
    if (
        not np.array_equal(held_after - held_before, change)
        or (new_balance < 0).any()
        or (new_pool < 0).any()
        or (new_pool > pool_ceiling).any()
    ):
        k = int(np.argmax(held_after - held_before != change))
        result.conservation_violations += 1
        raise ConservationError(
            result.policy,
            s,
            f"credits:{fleet.tier_names[k]}",
            int(held_before[k] + change[k]),
            int(held_after[k]),
        )


def _count_throttled(
    result: PolicyResult,
    fleet: ReplayFleet,
    hour: int,
    demand: np.ndarray,
    throttled: np.ndarray,
    state: _State,
) -> None:
    state.throttled += throttled
    t_k = np.add.reduceat(throttled, fleet.starts)
    result.throttled += t_k
    result.throttled_series[hour] += t_k
    result.demand += np.add.reduceat(demand, fleet.starts)


def _close_hour(
    books: _Books,
    fleet: ReplayFleet,
    flags: _Flags,
    hour: int,
    state: _State,
    totals: _HourTotals,
    result: PolicyResult,
) -> None:
    """Book the hour in the ledger, settle a priced pool, and check the ledger agrees."""
    _post_hour(books, fleet, hour, totals.minted, totals.spent, totals.to_pool, totals.from_pool)
    if flags.draw == "priced":
        charged, repaid = _settle_pool(
            books, fleet, hour, totals.from_pool, totals.lent, state.draw_price, state.funds
        )
        result.paid += charged
        result.seller_receipts += repaid
        result.pool_revenue += charged - repaid
    step = (hour + 1) * STEPS_PER_HOUR - 1
    state.balance, state.funds, state.pool = _check_books(
        result.policy, step, books, fleet, state.balance, state.pool
    )
    result.rate_series[hour] = [books.tiers.tier(t).exchange_rate for t in fleet.tier_names]
    result.pool_series[hour] = state.pool


def _check_ledger(
    books: _Books, fleet: ReplayFleet, flags: _Flags, scenario: Scenario, result: PolicyResult
) -> None:
    """Check the whole journal replays to its balances and every asset sums to zero."""
    report = books.ledger.verify()
    unbalanced = {a: t for a, t in report.asset_totals.items() if t != 0}
    if not report.ok or unbalanced:
        result.conservation_violations += 1
        asset, total = next(iter(unbalanced.items()), ("ledger", -1))
        raise ConservationError(result.policy, fleet.hours * STEPS_PER_HOUR, asset, 0, total)
    result.ledger_entries = report.entries
    result.ledger = books.ledger
    if flags.market:
        _reconcile_money(result.policy, books, fleet, scenario, result)
