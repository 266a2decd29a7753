"""The hourly market round: the pools' offers, every agent through the one runner, each
tier's call auction and the offers' close.

One round of the market policies, over one ledger and venue, whoever runs it:
the replay (:mod:`pipelines.replay.engine`, on an in-memory store) and the live
exchange run the same steps. A round

1. moves each tier's pool credits above half its capacity to the pool's own seller
   (``pool-<tier>``) and offers them into the tier's call auction
   (:meth:`MarketRound.pool_offers`): the fuller the pool, the lower its reserve;
2. lets every agent decide at once on the fleet's arrays and submits their orders with
   the pools' offers in one batch (:class:`~market.agents.runner.AuctionTransport`);
3. clears each tier's call auction and settles it (:meth:`Venue.run_auction`);
4. returns what the pools did not sell to the pools and the proceeds to the provider's
   pool revenue account (:meth:`MarketRound.close_pool_offers`);
5. then the CEM's interval (:meth:`market.cem.automation.CemAutomation.step`) moves the
   rates and swaps between the pools; it runs without a market too;
6. and sets the hour's priced pool (:meth:`MarketRound.pool_terms`): each tier's draw
   price, the exchange rates its conversions use, and who lends the pool its credits.

Prices are in minor units per credit; the reserve's reference is the median owner
value per unit of value (a credit at exchange rate 1.0), in each tier at its current
exchange rate, so a tier's credits cost what they are worth against the others'.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from market.agents.decision import OrderIntent, OwnerPolicy
from market.agents.runner import AgentRound, AgentRunner, AgentTransport, IntentResult
from market.cem.tiers import POOL_REVENUE_ACCOUNT, TierManager
from market.ledger import (
    EntryRequest,
    Ledger,
    Transfer,
    instance_credits,
    instance_funds,
    pool_account,
)
from market.units import MILLI_PER_CREDIT
from market.venue.auction import AuctionResult
from market.venue.handling import OrderRequest, Venue
from market.venue.orders import Side

RATE_UNIT = 1_000_000
"""Exchange rates are micro-units: 1.0 is ``RATE_UNIT``."""


def pool_seller(tier: str) -> str:
    """Return the venue account that offers ``tier``'s pool credits in its auctions."""
    return f"pool-{tier}"


def reference_value(values: np.ndarray, rates: np.ndarray) -> int:
    """Return the median owner value per unit of value: ``values`` (minor units per
    credit) at each owner's tier exchange rate ``rates`` (micro-units)."""
    return int(np.median(values * RATE_UNIT / rates))


def whole_holding_sellers(
    results: Sequence[IntentResult], credits: np.ndarray, position: Mapping[str, int]
) -> np.ndarray:
    """Return which agents had an order accepted that offered everything they held
    (``credits``, row ``position[instance_id]``): their credits are worth more to the
    market than to their owners, and they lend the pool what they hold after the auction
    (:meth:`MarketRound.pool_terms`)."""
    sold = np.zeros(len(credits), dtype=bool)
    for r in results:
        row = position[r.intent.instance_id]
        sold[row] |= r.error is None and offers_all_it_holds(r.intent, int(credits[row]))
    return sold


def offers_all_it_holds(intent: OrderIntent, held: int) -> bool:
    """Return whether ``intent`` places an ask for all ``held`` credits."""
    return intent.action == "place" and intent.side == "sell" and intent.quantity == held


@dataclass(frozen=True, slots=True)
class PoolHour:
    """The fleet at an hour's start, as arrays over instances grouped by tier (the order
    of ``tier_of``): what the priced pool's terms are read from.

    ``pools`` per tier and ``credits`` per instance in milli-credits; ``need`` the
    median forecast of the hour ahead (milli-credits); ``earn_hour`` the hour's baseline
    earnings; ``value`` the owners' values (minor units per credit).
    """

    pools: np.ndarray
    credits: np.ndarray
    need: np.ndarray
    earn_hour: np.ndarray
    value: np.ndarray


@dataclass(frozen=True, slots=True)
class PoolTerms:
    """An hour's priced pool: each tier's draw price (minor units per credit) and
    exchange rate, and which instances lend the pool what they hold."""

    prices: np.ndarray
    rates: np.ndarray
    lenders: np.ndarray


@dataclass(slots=True)
class RoundTrades:
    """What a round's trading did: the agents' round, each tier's auction (in the
    round's tier order), and what the pools' offers brought in."""

    agents: AgentRound
    auctions: list[AuctionResult] = field(default_factory=list)
    pool_revenue: int = 0


class MarketRound:
    """The market of one ledger, venue and CEM, one round at a time.

    Parameters
    ----------
    ledger, venue, tiers
        The market's books: the venue trades on ``ledger``.
    policy
        The owners' policy the agents decide with (their values come with the fleet's
        arrays).
    reference
        The reserve's reference value (:func:`reference_value`).
    tier_names
        The tiers in the order of the arrays the round reads; the tiers' own without.
    actor
        Who the round's own entries are booked by.
    """

    def __init__(
        self,
        ledger: Ledger,
        venue: Venue,
        tiers: TierManager,
        policy: OwnerPolicy,
        reference: int,
        tier_names: Sequence[str] | None = None,
        actor: str = "cem",
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.tiers = tiers
        self.policy = policy
        self.reference = reference
        self.actor = actor
        self.tier_names = list(tier_names or [t.name for t in tiers.tiers()])
        self.pool_accounts = [pool_account(t) for t in self.tier_names]
        self.pool_capacity = np.array(
            [tiers.pool_capacity(t) for t in self.tier_names], dtype=np.int64
        )
        self.sellers = [pool_seller(t) for t in self.tier_names]

    def register_pool_sellers(self) -> None:
        """Let each tier's pool seller trade in its tier's auctions."""
        for seller, tier in zip(self.sellers, self.tier_names, strict=True):
            self.venue.register_instance(seller, tier)

    def current_rates(self) -> np.ndarray:
        """Return the tiers' exchange rates now."""
        return np.array([self.tiers.tier(t).exchange_rate for t in self.tier_names])

    def reserve_prices(self, empty: int, capacity: int) -> np.ndarray:
        """Return each tier's pool reserve price when ``empty`` of ``capacity`` is not held.

        The reference at each tier's current exchange rate, scaled by the share of
        capacity not held and rounded up: a full pool's credits cost nothing, an empty
        one's the reference.
        """
        reference = self.reference * self.current_rates() // RATE_UNIT
        if capacity <= 0:
            return reference
        return -((-reference * empty) // capacity)

    def pool_terms(self, hour: PoolHour, tier_of: np.ndarray, sold_all: np.ndarray) -> PoolTerms:
        """Return the hour's priced pool after the round's auctions and the CEM's step.

        Lenders are the owners who value a credit below their tier's draw price and the
        agents that sold all they held and hold less than a credit after the auction
        (``sold_all``, :func:`whole_holding_sellers`).
        """
        prices = self.draw_prices(hour, tier_of)
        lenders = (sold_all & (hour.credits < MILLI_PER_CREDIT)) | (hour.value < prices[tier_of])
        return PoolTerms(prices, self.current_rates(), lenders)

    def draw_prices(self, hour: PoolHour, tier_of: np.ndarray) -> np.ndarray:
        """Return what a credit drawn from each pool costs this hour.

        One price of value for every tier, each tier's at its exchange rate, so the pools
        serve the highest owner value per unit of value first whichever tier it is in. It
        clears the hour's forecast: owners sorted by value per unit of value, the highest
        draw what their holdings and earnings leave short of their median need, the
        others lend what they hold and earn beyond it, and the pools add what they hold;
        the price is the value of the last owner served. When the pools and lenders
        would serve everyone, the price is the pools' reserve at their scarcity taken
        together (:meth:`reserve_prices`).
        """
        rates = self.current_rates()
        rate_i = rates[tier_of].astype(object)
        credits, need, earn, pools = hour.credits, hour.need, hour.earn_hour, hour.pools
        short = np.maximum(0, need - earn - credits).astype(object) * rate_i
        spare = (credits + np.maximum(0, earn - need)).astype(object) * rate_i
        worth = hour.value.astype(object) * RATE_UNIT // rate_i
        order = np.argsort(-hour.value * RATE_UNIT / rates[tier_of], kind="stable")
        held = int((pools.astype(object) * rates).sum())
        demand = np.cumsum(short[order])
        supply = held + (spare[order].sum() - np.cumsum(spare[order]))
        served = np.flatnonzero(demand <= supply)
        capacity = int((self.pool_capacity.astype(object) * rates).sum())
        if served.size and served[-1] == len(order) - 1:
            empty = int((np.maximum(0, self.pool_capacity - pools).astype(object) * rates).sum())
            return self.reserve_prices(empty, capacity)
        last = int(served[-1]) if served.size else 0
        marginal = int(worth[order[last]])
        return np.maximum(1, marginal * rates // RATE_UNIT)

    def plan_pool_offers(self, pools: np.ndarray) -> tuple[list[OrderRequest], list[Transfer]]:
        """Return each tier's offers of its pool credits above half its capacity, and the
        transfers that move them from the pools to the pools' sellers.

        Each seller asks in two slices: the upper quarter of the capacity at the reserve
        price of a pool seven eighths full and the quarter below it at that of a pool
        five eighths full. What does not sell goes back after the auction
        (:meth:`close_pool_offers`).
        """
        capacity = self.pool_capacity
        legs, offers = [], []
        for k, seller in enumerate(self.sellers):
            half, three_quarters = capacity[k] // 2, capacity[k] * 3 // 4
            level = int(pools[k])
            slices = (
                (max(0, level - three_quarters), capacity[k] * 7 // 8),
                (max(0, min(level, three_quarters) - half), capacity[k] * 5 // 8),
            )
            for quantity, fill in slices:
                if quantity < MILLI_PER_CREDIT:
                    continue
                price = max(1, int(self.reserve_prices(capacity[k] - fill, capacity[k])[k]))
                offers.append(OrderRequest(seller, Side.SELL, price, int(quantity)))
                credits = instance_credits(seller)
                legs.append(Transfer(self.pool_accounts[k], credits, int(quantity)))
        return offers, legs

    def pool_offers(self, pools: np.ndarray) -> list[OrderRequest]:
        """Move the pools' offered credits to their sellers (:meth:`plan_pool_offers`) and
        return the offers."""
        offers, legs = self.plan_pool_offers(pools)
        if legs:
            self.ledger.post(EntryRequest(tuple(legs), "pool-offer", self.actor))
        return offers

    def close_pool_offers(self) -> int:
        """Return unsold pool credits to their pools and the proceeds to the provider;
        return the proceeds."""
        sellers = self.sellers
        balances = self.ledger.balances_of(
            [instance_credits(s) for s in sellers] + [instance_funds(s) for s in sellers]
        )
        legs = self.closing_legs(balances)
        if legs:
            self.ledger.post(EntryRequest(tuple(legs), "pool-offer-close", self.actor))
        return sum(t.amount for t in legs if t.destination == POOL_REVENUE_ACCOUNT)

    def closing_legs(self, balances: Mapping[str, int]) -> list[Transfer]:
        """Return the transfers that close the pools' offers on the sellers' ``balances``:
        unsold credits back to the pools, proceeds to the provider's pool revenue."""
        legs = []
        for k, seller in enumerate(self.sellers):
            unsold = balances[instance_credits(seller)]
            if unsold:
                legs.append(Transfer(instance_credits(seller), self.pool_accounts[k], unsold))
            money = balances[instance_funds(seller)]
            if money:
                legs.append(Transfer(instance_funds(seller), POOL_REVENUE_ACCOUNT, money))
        return legs

    def trade(
        self,
        transport_for: Callable[[list[OrderRequest]], AgentTransport],
        pools: np.ndarray,
        label: str,
    ) -> RoundTrades:
        """Run the round's trading in one go: offer the pools, let every agent decide and
        submit over ``transport_for(offers)``, clear each tier's auction, close the offers."""
        offers = self.pool_offers(pools)
        played = self.decide(transport_for(offers))
        return RoundTrades(played, self.clear(label), self.close_pool_offers())

    def decide(
        self,
        transport: AgentTransport,
        policies: OwnerPolicy | Mapping[str, OwnerPolicy] | None = None,
    ) -> AgentRound:
        """Let every agent decide over ``transport`` (the round's policy without
        ``policies``) and send its orders."""
        return AgentRunner(transport, policies or self.policy).step()

    def auction_id(self, tier: str, label: str) -> str:
        """Return the id of ``tier``'s call auction in the round ``label``."""
        return f"{tier}-{label}"

    def clear(self, label: str, skip: Collection[str] = ()) -> list[AuctionResult]:
        """Clear and settle each tier's call auction but those in ``skip``."""
        return [
            self.venue.run_auction(tier, auction_id=self.auction_id(tier, label))
            for tier in self.tier_names
            if tier not in skip
        ]
