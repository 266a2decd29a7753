"""Running a fleet's agents in process over a :class:`~market.venue.handling.Venue`.

:class:`VenueAgents` reads each instance's state from the venue and the ledger, lets
its :class:`~market.agents.decision.Agent` decide, places and cancels the intents and
records every decision; ``serving.agent_client`` does the same over the HTTP API.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING

from market.agents.decision import (
    Agent,
    AgentDecision,
    AgentState,
    MarketView,
    OpenOrder,
    OrderIntent,
    OwnerPolicy,
)
from market.agents.forecast import InstanceForecast
from market.decisions import (
    DecisionLog,
    DecisionRecord,
)
from market.errors import MarketError
from market.venue.orders import Side

if TYPE_CHECKING:
    from market.cem.tiers import TierManager
    from market.venue.handling import Venue


# running a fleet in process


@dataclass(frozen=True, slots=True)
class IntentResult:
    """What the market did with one intent: the order id, or the error that refused it."""

    intent: OrderIntent
    order_id: str | None
    error: str | None = None
    error_type: str | None = None


def recent_prices_of(venue: Venue, tier: str, n: int = 20) -> tuple[int, ...]:
    """Return the prices of a tier's latest trades on ``venue``, newest first."""
    return tuple(t.price for t in venue.market_data.last_trades(tier, n))


def fleet_instances(tiers: TierManager) -> list[tuple[str, str, int, int, int]]:
    """Return ``(instance_id, tier, vcpus, earn_rate, cap)`` of every instance of ``tiers``.

    What :class:`VenueAgents` takes: each instance's hourly baseline earnings and
    balance cap from its tier.
    """
    return [
        (
            i.id,
            i.tier,
            i.vcpus,
            tiers.tier(i.tier).hourly_earnings(i.vcpus),
            tiers.tier(i.tier).balance_cap(i.vcpus),
        )
        for i in tiers.instances()
    ]


class VenueAgents:
    """The agents of a fleet, run in process over a venue (the fleet replay's transport).

    Parameters
    ----------
    venue
        The :class:`~market.venue.handling.Venue` whose books the agents trade in.
    instances
        ``(instance_id, tier, vcpus, earn_rate, cap)`` of every instance with an agent.
    policies
        One policy for every agent, or one per instance id (missing ones use defaults).
    log
        Where each decision and each refusal is recorded; ``None`` keeps none.
    clock
        The market's clock; nothing here reads another.
    """

    def __init__(
        self,
        venue: Venue,
        instances: Iterable[tuple[str, str, int, int, int]],
        policies: OwnerPolicy | Mapping[str, OwnerPolicy] | None,
        log: DecisionLog | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.venue = venue
        self.instances = {i[0]: i for i in instances}
        self._policies = policies
        self._agents: dict[str, Agent] = {}
        self.log = log
        self._clock = clock

    def agent(self, instance_id: str) -> Agent:
        """Return the agent of an instance."""
        found = self._agents.get(instance_id)
        if found is None:
            policies = self._policies
            if isinstance(policies, OwnerPolicy) or policies is None:
                policy = policies
            else:
                policy = policies.get(instance_id)
            found = self._agents[instance_id] = Agent(policy)
        return found

    def states(
        self,
        forecasts: Mapping[str, InstanceForecast | None],
        scarcity: Mapping[str, Fraction] | None = None,
    ) -> list[AgentState]:
        """Read every agent's state from the venue's ledger and books in one pass.

        ``scarcity`` gives each tier's (e.g. :func:`~market.agents.valuation.pool_scarcity`);
        a tier not given is balanced (``1/2``).
        """
        from market.ledger import instance_credits, instance_funds

        now = self._clock()
        balances = self.venue.ledger.balances("instance:")
        tiers = {i[1] for i in self.instances.values()}
        open_by_owner: dict[str, list[OpenOrder]] = defaultdict(list)
        views: dict[str, MarketView] = {}
        for tier in tiers:
            book = self.venue.book(tier)
            for order in book.open_orders():
                if order.owner in self.instances:
                    open_by_owner[order.owner].append(
                        OpenOrder(
                            order.order_id,
                            order.side.value,
                            order.price,
                            order.remaining,
                            self.venue.escrow_left(order.order_id),
                        )
                    )
            views[tier] = MarketView(
                recent_prices=recent_prices_of(self.venue, tier),
                scarcity=(scarcity or {}).get(tier, Fraction(1, 2)),
                tick_size=book.config.tick_size,
                fee_bps=book.config.fee_bps,
            )
        states = []
        for instance_id, tier, vcpus, earn_rate, cap in self.instances.values():
            states.append(
                AgentState(
                    instance_id=instance_id,
                    tier=tier,
                    vcpus=vcpus,
                    now=now,
                    credits=balances.get(instance_credits(instance_id), 0),
                    funds=balances.get(instance_funds(instance_id), 0),
                    earn_rate=earn_rate,
                    cap=cap,
                    forecast=forecasts.get(instance_id),
                    market=views[tier],
                    open_orders=tuple(open_by_owner.get(instance_id, ())),
                )
            )
        return states

    def step(
        self,
        forecasts: Mapping[str, InstanceForecast | None],
        scarcity: Mapping[str, Fraction] | None = None,
    ) -> tuple[list[AgentDecision], list[IntentResult]]:
        """Let every agent decide, then cancel and place all their orders in one batch.

        A refused intent changes nothing in the market; it is returned with its error
        and recorded as a ``rejected`` decision.
        """
        from market.venue.handling import OrderRequest

        decisions = [self.agent(s.instance_id).decide(s) for s in self.states(forecasts, scarcity)]
        results: list[IntentResult] = []
        places: list[OrderIntent] = []
        for decision in decisions:
            failed: set[str | None] = set()
            for intent in decision.intents:
                if intent.action == "place":
                    if intent.side in failed:
                        results.append(skipped(intent))
                    else:
                        places.append(intent)
                    continue
                assert intent.order_id is not None
                try:
                    self.venue.cancel(intent.order_id)
                    results.append(IntentResult(intent, intent.order_id))
                except MarketError as exc:
                    failed.add(intent.side)
                    results.append(IntentResult(intent, None, str(exc), type(exc).__name__))
        requests = [
            OrderRequest(i.instance_id, Side(str(i.side)), i.price, i.quantity) for i in places
        ]
        for intent, outcome in zip(places, self.venue.place_many(requests), strict=True):
            if isinstance(outcome, MarketError):
                results.append(IntentResult(intent, None, str(outcome), type(outcome).__name__))
            else:
                results.append(IntentResult(intent, outcome.order.order_id))
        if self.log is not None:
            self.log.record(
                [d.record() for d in decisions] + rejection_records(results, self._clock())
            )
        return decisions, results


def skipped(intent: OrderIntent) -> IntentResult:
    """Return the result of a placement left out because its side's cancel failed.

    The replacement was sized on the credits or funds the cancelled order would have
    returned; with the order still in the market (or filled meanwhile), placing it
    could offer credits the instance needs, so it waits for the next decision.
    """
    return IntentResult(
        intent,
        None,
        f"not placed: the {intent.side} order it replaces could not be cancelled",
        "CancelFailed",
    )


def rejection_records(results: Iterable[IntentResult], at: datetime) -> list[DecisionRecord]:
    """Return a ``rejected`` decision record for every intent the market refused."""
    return [
        DecisionRecord(
            "agent",
            r.intent.instance_id,
            at,
            "rejected",
            {
                "action": r.intent.action,
                "side": r.intent.side,
                "price": r.intent.price,
                "quantity": r.intent.quantity,
                "order_id": r.intent.order_id,
                "key": r.intent.key,
                "error": r.error,
                "error_type": r.error_type,
            },
        )
        for r in results
        if r.error is not None
    ]
