"""The one agent runner: read every agent's state, decide, send the orders, record.

:class:`AgentRunner` runs a fleet's agents over a transport (:class:`AgentTransport`),
which says where states come from and where orders go:

* :class:`VenueTransport` reads each instance from an in-process
  :class:`~market.venue.handling.Venue` and its ledger and trades in its books;
* ``serving.agent_client.HttpTransport`` does the same for one instance over the API;
* :class:`AuctionTransport` takes a whole fleet as arrays (:class:`FleetRows`) and sends
  its orders to the tiers' call auctions, as the fleet replay does every hour.

Agents read one by one decide through :func:`~market.agents.decision.decide_agents`
(intents against their open orders, and a record of each decision); a fleet read as
arrays decides through :func:`~market.agents.decision.decide_fleet` in one call. Both
are the same rule, row by row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

from market.agents.decision import (
    AgentDecision,
    AgentState,
    FleetDecision,
    FleetState,
    MarketView,
    OpenOrder,
    OrderIntent,
    OwnerPolicy,
    SideName,
    decide_agents,
    decide_fleet,
)
from market.agents.forecast import InstanceForecast
from market.clock import to_micros
from market.decisions import (
    DecisionLog,
    DecisionRecord,
)
from market.errors import MarketError
from market.venue.orders import Side

if TYPE_CHECKING:
    from market.cem.tiers import TierManager
    from market.venue.handling import AcceptedWrites, OrderRequest, Venue


@dataclass(frozen=True, slots=True)
class IntentResult:
    """What the market did with one intent: the order id, or the error that refused it."""

    intent: OrderIntent
    order_id: str | None
    error: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class FleetRows:
    """A fleet read at once as arrays: row ``i`` is ``instance_ids[i]``; no open orders."""

    instance_ids: Sequence[str]
    state: FleetState
    now: datetime


class AgentTransport(Protocol):
    """Where an :class:`AgentRunner` reads its agents and sends what they decide."""

    def read(self) -> list[AgentState] | FleetRows:
        """Return every agent's state, one by one or as a fleet's arrays."""

    def cancel(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Cancel the intents' orders; return what happened to each."""

    def place(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Place the intents' orders; return what happened to each."""

    def record(self, records: Sequence[DecisionRecord]) -> None:
        """Keep the round's decision records (decisions and refusals)."""


@dataclass(frozen=True, slots=True)
class AgentRound:
    """One round of a fleet's agents: what they decided and what the market did with it.

    ``decisions`` holds each agent's decision where the transport read agents one by
    one; ``fleet`` the arrays where it read a fleet at once.
    """

    at: datetime
    decisions: list[AgentDecision] = field(default_factory=list)
    fleet: FleetDecision | None = None
    results: list[IntentResult] = field(default_factory=list)


class AgentRunner:
    """Run a fleet's agents over ``transport``, one round per :meth:`step`.

    Parameters
    ----------
    transport
        Where the states come from and the orders go (:class:`AgentTransport`).
    policies
        One policy for every agent, or one per instance id (missing ones use
        defaults). A fleet read as arrays takes one policy.
    """

    def __init__(
        self,
        transport: AgentTransport,
        policies: OwnerPolicy | Mapping[str, OwnerPolicy] | None = None,
    ) -> None:
        self.transport = transport
        self._policies = policies
        self._default = policies if isinstance(policies, OwnerPolicy) else OwnerPolicy()

    def policy(self, instance_id: str) -> OwnerPolicy:
        """Return the owner policy of an instance's agent."""
        if isinstance(self._policies, Mapping):
            return self._policies.get(instance_id, self._default)
        return self._default

    def step(self) -> AgentRound:
        """Read, decide, cancel and place, record; return the round.

        A refused intent changes nothing in the market; it is returned with its error
        and recorded as a ``rejected`` decision. A placement whose side's cancel failed
        is left out (:func:`skipped`).
        """
        read = self.transport.read()
        if isinstance(read, FleetRows):
            if isinstance(self._policies, Mapping):
                raise MarketError("a fleet read as arrays decides under one owner policy")
            fleet = decide_fleet(self._default, read.state)
            at, decisions = read.now, []
            intents = fleet_intents(read, fleet)
        else:
            decisions = decide_agents(read, self.policy)
            at = read[0].now if read else datetime.min.replace(tzinfo=UTC)
            fleet = None
            intents = [i for d in decisions for i in d.intents]
        cancels = [i for i in intents if i.action == "cancel"]
        results = self.transport.cancel(cancels) if cancels else []
        failed = {(r.intent.instance_id, r.intent.side) for r in results if r.error is not None}
        places = []
        for intent in intents:
            if intent.action != "place":
                continue
            if (intent.instance_id, intent.side) in failed:
                results.append(skipped(intent))
            else:
                places.append(intent)
        results += self.transport.place(places)
        self.transport.record([d.record() for d in decisions] + rejection_records(results, at))
        return AgentRound(at, decisions, fleet, results)


def fleet_intents(rows: FleetRows, decision: FleetDecision) -> list[OrderIntent]:
    """Return the placements of a fleet's decision: a bid or an ask per row that wants one."""
    stamp = to_micros(rows.now)
    intents = []
    ids = rows.instance_ids
    for i, (bid_quantity, bid_price, ask_quantity, ask_price) in enumerate(
        zip(
            decision.bid_quantity.tolist(),
            decision.bid_price.tolist(),
            decision.ask_quantity.tolist(),
            decision.ask_price.tolist(),
            strict=True,
        )
    ):
        side: SideName
        if bid_quantity > 0:
            side, price, quantity = "buy", bid_price, bid_quantity
        elif ask_quantity > 0:
            side, price, quantity = "sell", ask_price, ask_quantity
        else:
            continue
        intents.append(
            OrderIntent(
                ids[i],
                "place",
                f"{ids[i]}-{stamp}-{side}",
                side=side,
                price=price,
                quantity=quantity,
            )
        )
    return intents


def _requests(intents: Sequence[OrderIntent]) -> list[OrderRequest]:
    from market.venue.handling import OrderRequest

    return [OrderRequest(i.instance_id, Side(str(i.side)), i.price, i.quantity) for i in intents]


def _outcomes(
    intents: Sequence[OrderIntent], outcomes: Iterable[object], order_id: Callable[[object], str]
) -> list[IntentResult]:
    return [
        IntentResult(intent, None, str(outcome), type(outcome).__name__)
        if isinstance(outcome, MarketError)
        else IntentResult(intent, order_id(outcome))
        for intent, outcome in zip(intents, outcomes, strict=True)
    ]


def submit_to_auction(
    venue: Venue, intents: Sequence[OrderIntent], orders: AuctionOrders
) -> list[IntentResult]:
    """Submit the intents' orders, then ``orders.extra``, to the call auctions in one batch;
    return what happened to each intent."""
    if not intents and not orders.extra and orders.writes is None:
        return []
    outcomes = venue.submit_to_auction(_requests(intents) + orders.extra, writes=orders.writes)
    return _outcomes(intents, outcomes[: len(intents)], lambda o: o.order_id)  # type: ignore[attr-defined]


def recent_prices_of(venue: Venue, tier: str, n: int = 20) -> tuple[int, ...]:
    """Return the prices of a tier's latest trades on ``venue``, newest first."""
    return tuple(t.price for t in venue.market_data.last_trades(tier, n))


def fleet_instances(tiers: TierManager) -> list[tuple[str, str, int, int, int]]:
    """Return ``(instance_id, tier, vcpus, earn_rate, cap)`` of every instance of ``tiers``.

    What :class:`VenueTransport` takes: each instance's hourly baseline earnings and
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


@dataclass(frozen=True, slots=True)
class AuctionOrders:
    """How a transport sends its agents' orders to the call auctions.

    ``extra`` are orders of the exchange's own (the pools' offers) submitted in the same
    batch, after the agents'; what becomes of them is not the agents' and is not
    returned. ``writes`` adds the caller's rows to the transaction that commits the
    batch (:meth:`~market.venue.handling.Venue.submit_to_auction`).
    """

    extra: list[OrderRequest] = field(default_factory=list)
    writes: AcceptedWrites | None = None


class VenueTransport:
    """Agents trading in process in a venue's continuous books.

    Parameters
    ----------
    venue
        The :class:`~market.venue.handling.Venue` whose books the agents trade in.
    instances
        ``(instance_id, tier, vcpus, earn_rate, cap)`` of every instance with an agent.
    forecasts
        Each instance's forecast (``None`` or missing: the fallback rule).
    clock
        The market's clock; nothing here reads another.
    scarcity
        Each tier's scarcity (e.g. :func:`~market.agents.valuation.pool_scarcity`); a
        tier not given is balanced (``1/2``).
    log
        Where each decision and each refusal is recorded; ``None`` keeps none.
    owner_values
        The values owners set for their instances (minor units per credit); an instance
        not named prices from its policy's ``throttle_cost``.
    auction
        Send the orders to the tiers' next call auctions, with these orders of the
        exchange's own and the caller's writes in the same transaction
        (:class:`AuctionOrders`); ``None``: the continuous books.
    """

    def __init__(
        self,
        venue: Venue,
        instances: Iterable[tuple[str, str, int, int, int]],
        forecasts: Mapping[str, InstanceForecast | None],
        clock: Callable[[], datetime],
        *,
        scarcity: Mapping[str, Fraction] | None = None,
        log: DecisionLog | None = None,
        owner_values: Mapping[str, int] | None = None,
        auction: AuctionOrders | None = None,
    ) -> None:
        self.venue = venue
        self.instances = {i[0]: i for i in instances}
        self.forecasts = forecasts
        self.scarcity = scarcity or {}
        self.log = log
        self.owner_values = owner_values or {}
        self.auction = auction
        self._clock = clock
        # what the last read found each agent holding, and the intents being placed
        self.holdings: dict[str, int] = {}
        self.placing: list[OrderIntent] = []

    def read(self) -> list[AgentState]:
        """Read every agent's state from the venue's ledger and books in one pass."""
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
                scarcity=self.scarcity.get(tier, Fraction(1, 2)),
                tick_size=book.config.tick_size,
                fee_bps=book.config.fee_bps,
            )
        self.holdings = {i: balances.get(instance_credits(i), 0) for i in self.instances}
        return [
            AgentState(
                instance_id=instance_id,
                tier=tier,
                vcpus=vcpus,
                now=now,
                credits=self.holdings[instance_id],
                funds=balances.get(instance_funds(instance_id), 0),
                earn_rate=earn_rate,
                cap=cap,
                forecast=self.forecasts.get(instance_id),
                market=views[tier],
                open_orders=tuple(open_by_owner.get(instance_id, ())),
                owner_value=self.owner_values.get(instance_id),
            )
            for instance_id, tier, vcpus, earn_rate, cap in self.instances.values()
        ]

    def cancel(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Cancel each intent's order in the venue."""
        results = []
        for intent in intents:
            assert intent.order_id is not None
            try:
                self.venue.cancel(intent.order_id)
                results.append(IntentResult(intent, intent.order_id))
            except MarketError as exc:
                results.append(IntentResult(intent, None, str(exc), type(exc).__name__))
        return results

    def place(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Place the intents' orders in one batch: in the continuous books, or with the
        exchange's own in the call auctions."""
        self.placing = list(intents)
        if self.auction is not None:
            return submit_to_auction(self.venue, intents, self.auction)
        if not intents:
            return []
        placed = self.venue.place_many(_requests(intents))
        return _outcomes(intents, placed, lambda o: o.order.order_id)  # type: ignore[attr-defined]

    def record(self, records: Sequence[DecisionRecord]) -> None:
        """Keep the records in the decision log, if there is one."""
        if self.log is not None and records:
            self.log.record(list(records))


class VenueAgents:
    """A fleet's agents in process over a venue: the runner over a :class:`VenueTransport`.

    Parameters
    ----------
    venue, instances, log, clock
        As :class:`VenueTransport` takes them.
    policies
        As :class:`AgentRunner` takes them.
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
        self.instances = list(instances)
        self.policies = policies
        self.log = log
        self._clock = clock

    def transport(
        self,
        forecasts: Mapping[str, InstanceForecast | None],
        scarcity: Mapping[str, Fraction] | None = None,
    ) -> VenueTransport:
        """Return the transport of one round on ``forecasts`` and ``scarcity``."""
        return VenueTransport(
            self.venue, self.instances, forecasts, self._clock, scarcity=scarcity, log=self.log
        )

    def states(
        self,
        forecasts: Mapping[str, InstanceForecast | None],
        scarcity: Mapping[str, Fraction] | None = None,
    ) -> list[AgentState]:
        """Read every agent's state from the venue's ledger and books in one pass."""
        return self.transport(forecasts, scarcity).read()

    def step(
        self,
        forecasts: Mapping[str, InstanceForecast | None],
        scarcity: Mapping[str, Fraction] | None = None,
    ) -> tuple[list[AgentDecision], list[IntentResult]]:
        """Run one round: every agent decides, its orders are cancelled and placed."""
        played = AgentRunner(self.transport(forecasts, scarcity), self.policies).step()
        return played.decisions, played.results


class AuctionTransport:
    """A fleet read as arrays, whose orders wait for the tiers' next call auctions.

    ``extra`` are orders of the exchange's own (the pools' offers) submitted in the same
    batch, after the agents'; what becomes of them is not the agents' and is not
    returned. Records are not kept: the caller counts the refusals in the results.
    """

    def __init__(self, venue: Venue, rows: FleetRows, extra: Sequence[OrderRequest] = ()) -> None:
        self.venue = venue
        self.rows = rows
        self.extra = list(extra)

    def read(self) -> FleetRows:
        """Return the fleet's rows."""
        return self.rows

    def cancel(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Refuse: an auction order lives for one auction and is never cancelled."""
        raise MarketError("auction orders are finished by their auction, not cancelled")

    def place(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Submit the intents' orders and the extra ones to the call auctions, in one batch."""
        return submit_to_auction(self.venue, intents, AuctionOrders(self.extra))

    def record(self, records: Sequence[DecisionRecord]) -> None:
        """Keep nothing."""


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
