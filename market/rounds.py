"""The live exchange's hourly market round on the store, exactly once.

A round runs :class:`~market.round.MarketRound`'s steps, as the replay does, on the
store's ledger and venue, then the CEM's interval. Each stage is written to
``market_rounds`` (:mod:`market.round_tables`) in the transaction that commits its work,
so a round killed at any point and run again resumes where it stopped and books
nothing twice:

``offered``
    The pools' levels read and their offers moved to the pools' sellers, in one
    transaction with the round's row (the row's key makes it the only one); the row
    keeps what was read and offered (``plan``) for the stages that follow.
``submitted``
    Every agent decided over the in-process transport (owner values, the served
    forecasts, each tier's scarcity from its pool's level in the plan) and their orders
    and the pools' offers were submitted to the call auctions in one transaction with
    the stage.
``cleared``
    Each tier's call auction cleared and settled (one transaction per tier, under its
    own id, so a tier cleared before a kill is not cleared again), then the unsold
    offers went back to the pools and the proceeds to the provider in one transaction
    with the stage.
``decided``
    The CEM's interval at the round's hour decided (rate steps and pool swaps, from the
    pools after the auctions), its decision kept in the row (``cem``) and its records in
    the decision log, in one transaction.
``done``
    The decision booked: each swap in one transaction with its mark in the row (so a
    swap is booked once, however often the round is run again), each rate step set
    unless the tier already has it (a rate change commits with its audit record), then
    the refusals' records and the round's record with the stage.

Rounds are keyed by their hour (``2026-12-05T10:00Z``); asking for a finished round
returns its record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from data.forecasts import MEDIAN_COL
from market.agents.decision import hourly_need
from market.agents.forecast import InstanceForecast
from market.agents.runner import AgentRound, AuctionOrders, VenueTransport, fleet_instances
from market.agents.valuation import pool_scarcity
from market.cem.automation import (
    CemAutomation,
    CemDecision,
    CemPolicy,
    SwapPlan,
    book_swap,
    pinned_rates,
    rate_reason,
    releases_of,
    tier_states,
)
from market.cem.exchange import CreditExchange
from market.cem.pool_hours import HourTerms, Unsettled, settlement, unsettled, write_settled
from market.cem.tiers import POOL_REVENUE_ACCOUNT
from market.clock import from_micros, to_micros
from market.crashpoints import crash_point
from market.decisions import DecisionLog, DecisionRecord, record_in
from market.errors import AccrualContention, InvalidAgentInput, InvalidParameter
from market.ledger import EntryRequest, instance_credits, instance_funds
from market.round import MarketRound, PoolHour, offers_all_it_holds, reference_value
from market.round_tables import rounds as rounds_table
from market.units import MILLI_PER_CREDIT
from market.venue.handling import OrderRequest
from market.venue.orders import Side
from market.venue.tables import auctions as auctions_table
from market.venue.tables import trades as trades_table

STAGES = ("offered", "submitted", "cleared", "decided", "done")
"""A round's stages, in order."""


_ATTEMPTS = 8


def round_id_of(hour: datetime) -> str:
    """Return the id of the round of ``hour`` (UTC, on the hour)."""
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def round_hour(moment: datetime) -> datetime:
    """Return the hour ``moment`` falls in (UTC), the round that hour runs."""
    if moment.tzinfo is None:
        raise InvalidParameter("hour", moment, "must be timezone-aware")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """What a round read and offered before its first commit."""

    pools: list[int]
    offers: list[tuple[str, int, int]]  # (seller, price, quantity), the pools' asks

    def document(self) -> str:
        """Return the plan as the JSON the round's row keeps."""
        return json.dumps({"pools": self.pools, "offers": [list(o) for o in self.offers]})

    @classmethod
    def of(cls, document: str) -> RoundPlan:
        """Return the plan a round's row keeps."""
        found = json.loads(document)
        return cls(found["pools"], [(str(s), int(p), int(q)) for s, p, q in found["offers"]])

    def requests(self) -> list[OrderRequest]:
        """Return the pools' offers as auction orders."""
        return [OrderRequest(s, Side.SELL, p, q) for s, p, q in self.offers]


@dataclass(frozen=True, slots=True)
class RateSet:
    """A rate step the round's CEM decided: the tier's new rate and the audited reason."""

    tier: str
    new_rate: int
    reason: str


@dataclass(slots=True)
class RoundCem:
    """A round's CEM decision, as its row keeps it, and which swaps are booked.

    ``booked[n]`` is ``None`` until the ``n``-th swap is booked, then ``""``, or the
    error the CEM refused it with.
    """

    at: datetime
    swaps: list[SwapPlan]
    rates: list[RateSet]
    booked: list[str | None]

    @classmethod
    def of_decision(cls, decision: CemDecision, policy: CemPolicy) -> RoundCem:
        """Return what of ``decision`` the round books: its swaps and changed rates."""
        rates = [
            RateSet(r.tier, r.new_rate, rate_reason(policy, r))
            for r in decision.rates
            if r.changed and not r.manual
        ]
        swaps = list(decision.swaps)
        return cls(decision.at, swaps, rates, [None] * len(swaps))

    def document(self) -> str:
        """Return the decision as the JSON the round's row keeps."""
        return json.dumps(
            {
                "at": to_micros(self.at),
                "swaps": [asdict(s) for s in self.swaps],
                "rates": [asdict(r) for r in self.rates],
                "booked": self.booked,
            }
        )

    @classmethod
    def of(cls, document: str) -> RoundCem:
        """Return the decision a round's row keeps."""
        found = json.loads(document)
        return cls(
            from_micros(found["at"]),
            [SwapPlan(**s) for s in found["swaps"]],
            [RateSet(**r) for r in found["rates"]],
            list(found["booked"]),
        )

    def failures(self) -> list[DecisionRecord]:
        """Return a ``swap_failed`` record for each swap the CEM refused."""
        return [
            DecisionRecord(
                "cem",
                s.destination_tier,
                self.at,
                "swap_failed",
                {"source_tier": s.source_tier, "amount_in": s.amount_in, "error": error},
            )
            for s, error in zip(self.swaps, self.booked, strict=True)
            if error
        ]


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """A round as the store holds it: its stage and, once done, its record."""

    round_id: str
    hour: datetime
    stage: str
    record: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime


class MarketRounds:
    """Run the live exchange's hourly rounds on the store, each exactly once.

    Parameters
    ----------
    engine
        The creditx store the ledger and the venue of ``market`` commit to.
    market
        The round's steps over the store's ledger and venue.
    exchange
        The CEM that books the interval's swaps and rate changes.
    log
        Where the agents' and the CEM's decisions are recorded.
    clock
        The market's clock (a round's timestamps).
    cem_policy
        The CEM automation's policy.
    """

    def __init__(
        self,
        engine: Engine,
        market: MarketRound,
        exchange: CreditExchange,
        log: DecisionLog,
        clock: Callable[[], datetime],
        cem_policy: CemPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.market = market
        self.exchange = exchange
        self.log = log
        self.clock = clock
        self.cem_policy = cem_policy or CemPolicy()

    def run(
        self,
        hour: datetime,
        forecasts: Mapping[str, InstanceForecast | None],
        owner_values: Mapping[str, int],
    ) -> RoundOutcome:
        """Run (or finish) the round of ``hour``; return it, done.

        ``forecasts`` are the served forecasts by instance (missing: the agent's
        fallback rule); ``owner_values`` the values owners set (missing: the round's
        policy's ``throttle_cost``).
        """
        hour = round_hour(hour)
        round_id = round_id_of(hour)
        found = self.get(round_id)
        agents: AgentRound | None = None
        self._set_reference(owner_values)
        if found is None:
            self._offer(round_id, hour)
            found = self.get(round_id)
            assert found is not None
        plan = self._plan(round_id)
        if found.stage == "offered":
            agents = self._submit(round_id, plan, forecasts, owner_values)
        if self._stage(round_id) == "submitted":
            self._clear(round_id)
        if self._stage(round_id) == "cleared":
            self._decide(round_id, hour, forecasts)
        if self._stage(round_id) == "decided":
            failures = self._book_cem(round_id)
            terms = self._terms(round_id, hour, forecasts, owner_values)
            self._finish(round_id, hour, plan, agents, failures, terms)
        done = self.get(round_id)
        assert done is not None
        return done

    def get(self, round_id: str) -> RoundOutcome | None:
        """Return the round ``round_id``, or ``None`` if it never started."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(rounds_table).where(rounds_table.c.round_id == round_id)
            ).first()
        return None if row is None else _outcome(row)

    def recent(self, limit: int = 24) -> list[RoundOutcome]:
        """Return the latest ``limit`` rounds, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rounds_table).order_by(rounds_table.c.hour_us.desc()).limit(limit)
            ).all()
        return [_outcome(r) for r in rows]

    # the stages

    def _set_reference(self, owner_values: Mapping[str, int]) -> None:
        """Price the pools' offers from the owners' values: the median per unit of value
        over every instance (an owner who set none values a credit at the policy's
        ``throttle_cost``), each tier's at its base rate (the CEM's, else its rate now)."""
        tiers = self.market.tiers
        instances = tiers.instances()
        default = self.market.policy.throttle_cost
        if not instances:
            self.market.reference = default
            return
        bases = CemAutomation.resume(self.cem_policy, self.log, self.market.tier_names).base_rates
        base = {t.name: bases.get(t.name, t.exchange_rate) for t in tiers.tiers()}
        values = np.array([owner_values.get(i.id, default) for i in instances], dtype=np.int64)
        rates = np.array([base[i.tier] for i in instances], dtype=np.int64)
        self.market.reference = reference_value(values, rates)

    def settle(self, before: datetime) -> int:
        """Settle the priced pool's hours before ``before`` that no round settled yet
        (a round settles them as it opens); return the money the drawers paid."""
        paid: list[int] = []

        def settling(found: Unsettled) -> None:
            tier_of = {i.id: i.tier for i in self.market.tiers.instances()}

            def plan(balances: Mapping[str, int]) -> tuple[list[EntryRequest], Any]:
                legs, owed = settlement(found, balances, tier_of)
                paid[:] = [sum(t.amount for t in legs if t.destination == POOL_REVENUE_ACCOUNT)]
                entries = (
                    [EntryRequest(tuple(legs), "pool-settle", self.market.actor)] if legs else []
                )
                return entries, lambda conn: write_settled(conn, found, owed)

            if found.rows:
                self.market.ledger.post_planned(found.accounts(), plan)

        self._settling(before, settling)
        return paid[0] if paid else 0

    def _offer(self, round_id: str, hour: datetime) -> None:
        """Settle the priced pool's earlier hours and offer the pools, with the round's
        row, in one transaction."""
        self._settling(hour, lambda found: self._offer_settling(round_id, hour, found))

    def _settling(self, before: datetime, work: Callable[[Unsettled], None]) -> None:
        # a booking that adds to an hour being settled rolls the settlement back: again
        for _ in range(_ATTEMPTS):
            with self.engine.connect() as conn:
                found = unsettled(conn, to_micros(before))
            try:
                work(found)
                return
            except AccrualContention:
                continue
        raise AccrualContention(_ATTEMPTS)

    def _offer_settling(self, round_id: str, hour: datetime, found: Unsettled) -> None:
        market = self.market
        now = to_micros(self.clock())
        tier_of = {i.id: i.tier for i in market.tiers.instances()}

        def plan(balances: Mapping[str, int]) -> tuple[list[EntryRequest], Any]:
            settling, owed = settlement(found, balances, tier_of)
            pools = np.array([balances[p] for p in market.pool_accounts], dtype=np.int64)
            offers, legs = market.plan_pool_offers(pools)
            document = RoundPlan(
                [int(p) for p in pools], [(o.instance_id, o.price, o.quantity) for o in offers]
            ).document()

            def write(conn: Connection) -> None:
                write_settled(conn, found, owed)
                conn.execute(
                    rounds_table.insert().values(
                        round_id=round_id,
                        hour_us=to_micros(hour),
                        stage="offered",
                        plan=document,
                        started_at_us=now,
                        updated_at_us=now,
                    )
                )

            entries = (
                [EntryRequest(tuple(settling), "pool-settle", market.actor)] if settling else []
            )
            if legs:
                entries.append(EntryRequest(tuple(legs), "pool-offer", market.actor))
            return entries, write

        sellers = [instance_credits(s) for s in market.sellers]
        accounts = [*market.pool_accounts, *sellers, *found.accounts()]
        market.ledger.post_planned(list(dict.fromkeys(accounts)), plan)

    def _submit(
        self,
        round_id: str,
        plan: RoundPlan,
        forecasts: Mapping[str, InstanceForecast | None],
        owner_values: Mapping[str, int],
    ) -> AgentRound:
        market = self.market
        scarcity = {
            tier: pool_scarcity(level, int(capacity))
            for tier, level, capacity in zip(
                market.tier_names, plan.pools, market.pool_capacity, strict=True
            )
        }
        transport = VenueTransport(
            market.venue,
            fleet_instances(market.tiers),
            forecasts,
            self.clock,
            scarcity=scarcity,
            log=self.log,
            owner_values=owner_values,
            auction=AuctionOrders(plan.requests(), lambda accepted: submitted(accepted)),
        )

        def submitted(accepted: list[tuple[int, str]]) -> Callable[[Connection], None]:
            # the agents whose accepted ask offered all they held lend after the auction
            placing, holdings = transport.placing, transport.holdings
            sold_all = sorted(
                placing[p].instance_id
                for p, _ in accepted
                if p < len(placing)
                and offers_all_it_holds(placing[p], holdings[placing[p].instance_id])
            )
            return self._stage_write(round_id, "submitted", sellers=json.dumps(sold_all))

        played = market.decide(transport)
        if self._stage(round_id) == "offered":  # nothing was accepted: nothing to commit with
            self._set_stage(round_id, "submitted")
        return played

    def _clear(self, round_id: str) -> None:
        market = self.market
        ids = {market.auction_id(t, round_id): t for t in market.tier_names}
        with self.engine.connect() as conn:
            cleared = conn.execute(
                sa.select(auctions_table.c.auction_id).where(auctions_table.c.auction_id.in_(ids))
            ).scalars()
            done = {ids[a] for a in cleared}
        market.clear(round_id, skip=done)
        accounts = [instance_credits(s) for s in market.sellers]
        accounts += [instance_funds(s) for s in market.sellers]
        accounts += [*market.pool_accounts, POOL_REVENUE_ACCOUNT]

        def plan(balances: Mapping[str, int]) -> tuple[list[EntryRequest], Any]:
            legs = market.closing_legs(balances)
            entries = [EntryRequest(tuple(legs), "pool-offer-close", market.actor)] if legs else []
            return entries, self._stage_write(round_id, "cleared")

        market.ledger.post_planned(accounts, plan)

    def _decide(
        self, round_id: str, hour: datetime, forecasts: Mapping[str, InstanceForecast | None]
    ) -> None:
        names = self.market.tier_names
        policy = self.cem_policy
        automation = CemAutomation.resume(policy, self.log, names)
        states = tier_states(self.market.tiers, self.market.ledger, forecasts)
        pins = pinned_rates(self.exchange.rate_changes(), releases_of(self.log, names), policy)
        decision = automation.step(states, hour, pins)
        document = RoundCem.of_decision(decision, policy).document()
        with self.engine.begin() as conn:
            row = rounds_table.c.round_id == round_id
            conn.execute(rounds_table.update().where(row).values(cem=document))
            record_in(conn, decision.records())
            self._stage_write(round_id, "decided")(conn)
            crash_point("round.stage.before_commit")
        crash_point("round.stage.after_commit")

    def _book_cem(self, round_id: str) -> list[DecisionRecord]:
        """Book the round's decided swaps and rate steps not booked yet; return the
        refusals' records."""
        cem = self._cem(round_id)
        policy = self.cem_policy
        for n, swap in enumerate(cem.swaps):
            if cem.booked[n] is not None:
                continue
            failed = book_swap(self.exchange, swap, policy, cem.at, n, self._mark(round_id, n))
            if failed is not None:
                with self.engine.begin() as conn:
                    self._mark(round_id, n, failed.detail["error"])(conn)
        for step in cem.rates:
            if self.market.tiers.tier(step.tier).exchange_rate != step.new_rate:
                self.exchange.set_exchange_rate(
                    step.tier, step.new_rate, actor=policy.actor, reason=step.reason
                )
        return self._cem(round_id).failures()

    def _mark(self, round_id: str, n: int, error: str = "") -> Callable[[Connection], None]:
        # the n-th swap's outcome, written in the transaction that books it
        def write(conn: Connection) -> None:
            document = conn.execute(
                sa.select(rounds_table.c.cem).where(rounds_table.c.round_id == round_id)
            ).scalar_one()
            cem = RoundCem.of(document)
            cem.booked[n] = error
            conn.execute(
                rounds_table.update()
                .where(rounds_table.c.round_id == round_id)
                .values(cem=cem.document())
            )

        return write

    def _cem(self, round_id: str) -> RoundCem:
        with self.engine.connect() as conn:
            document = conn.execute(
                sa.select(rounds_table.c.cem).where(rounds_table.c.round_id == round_id)
            ).scalar_one()
        return RoundCem.of(document)

    def _terms(
        self,
        round_id: str,
        hour: datetime,
        forecasts: Mapping[str, InstanceForecast | None],
        owner_values: Mapping[str, int],
    ) -> HourTerms:
        """Return the hour's priced pool (:meth:`MarketRound.pool_terms`) on the ledger
        after the auctions and the CEM's step, the served forecasts' median of the hour
        ahead (none usable: no need) and the owners' values."""
        market = self.market
        position = {t: k for k, t in enumerate(market.tier_names)}
        instances = sorted(market.tiers.instances(), key=lambda i: (position[i.tier], i.id))
        ids = [i.id for i in instances]
        balances = market.ledger.balances_of(
            [*(instance_credits(i) for i in ids), *market.pool_accounts]
        )
        default = market.policy.throttle_cost
        value = np.array([owner_values.get(i, default) for i in ids], dtype=np.int64)
        with self.engine.connect() as conn:
            document = conn.execute(
                sa.select(rounds_table.c.sellers).where(rounds_table.c.round_id == round_id)
            ).scalar_one()
        sold = set(json.loads(document or "[]"))
        hour_state = PoolHour(
            pools=np.array([balances[p] for p in market.pool_accounts], dtype=np.int64),
            credits=np.array([balances[instance_credits(i)] for i in ids], dtype=np.int64),
            need=np.array([_hour_need(forecasts.get(i.id), i.vcpus) for i in instances]),
            earn_hour=np.array(
                [market.tiers.tier(i.tier).hourly_earnings(i.vcpus) for i in instances],
                dtype=np.int64,
            ),
            value=value,
        )
        tier_of = np.array([position[i.tier] for i in instances], dtype=np.int64)
        terms = market.pool_terms(hour_state, tier_of, np.array([i in sold for i in ids]))
        return HourTerms(
            hour_us=to_micros(hour),
            tiers=tuple(market.tier_names),
            prices=tuple(int(p) for p in terms.prices),
            rates=tuple(int(r) for r in terms.rates),
            lenders=frozenset(i for i, lends in zip(ids, terms.lenders, strict=True) if lends),
            default_value=default,
            values={i: int(v) for i, v in zip(ids, value.tolist(), strict=True) if v != default},
        )

    def _finish(
        self,
        round_id: str,
        hour: datetime,
        plan: RoundPlan,
        agents: AgentRound | None,
        failures: list[DecisionRecord],
        terms: HourTerms,
    ) -> None:
        record = {
            "round_id": round_id,
            "hour": hour.isoformat(),
            "pools_before": dict(zip(self.market.tier_names, plan.pools, strict=True)),
            "offers": [{"seller": s, "price": p, "quantity": q} for s, p, q in plan.offers],
            "agents": _agent_counts(agents),
            "auctions": self._auctions(round_id),
            "swaps": [
                {
                    "from": s.source_tier,
                    "to": s.destination_tier,
                    "in": s.amount_in,
                    "out": s.amount_out,
                }
                for s in self._cem(round_id).swaps
            ],
            "rates": {t: self.market.tiers.tier(t).exchange_rate for t in self.market.tier_names},
            "pool": {
                "draw_prices": dict(zip(terms.tiers, terms.prices, strict=True)),
                "lenders": len(terms.lenders),
            },
        }
        now = to_micros(self.clock())
        with self.engine.begin() as conn:
            record_in(conn, failures)
            conn.execute(
                rounds_table.update()
                .where(rounds_table.c.round_id == round_id)
                .values(
                    stage="done",
                    record=json.dumps(record),
                    terms=terms.document(),
                    updated_at_us=now,
                )
            )
            crash_point("round.finish.before_commit")
        crash_point("round.finish.after_commit")

    def _auctions(self, round_id: str) -> list[dict[str, Any]]:
        market = self.market
        out = []
        with self.engine.connect() as conn:
            for tier in market.tier_names:
                row = conn.execute(
                    sa.select(auctions_table).where(
                        auctions_table.c.auction_id == market.auction_id(tier, round_id)
                    )
                ).first()
                if row is None:
                    continue
                trades = conn.execute(
                    sa.select(
                        sa.func.count(), sa.func.coalesce(sa.func.sum(trades_table.c.value), 0)
                    ).where(trades_table.c.tier == tier, trades_table.c.at_us == row.at_us)
                ).one()
                out.append(
                    {
                        "tier": tier,
                        "auction_id": row.auction_id,
                        "clearing_price": row.clearing_price,
                        "volume_credits": row.volume / MILLI_PER_CREDIT,
                        "demand_credits": row.demand / MILLI_PER_CREDIT,
                        "supply_credits": row.supply / MILLI_PER_CREDIT,
                        "trades": int(trades[0]),
                        "paid": int(trades[1]),
                    }
                )
        return out

    # the round's row

    def _plan(self, round_id: str) -> RoundPlan:
        with self.engine.connect() as conn:
            document = conn.execute(
                sa.select(rounds_table.c.plan).where(rounds_table.c.round_id == round_id)
            ).scalar_one()
        return RoundPlan.of(document)

    def _stage(self, round_id: str) -> str:
        found = self.get(round_id)
        assert found is not None
        return found.stage

    def _stage_write(
        self, round_id: str, stage: str, **values: Any
    ) -> Callable[[Connection], None]:
        now = to_micros(self.clock())

        def write(conn: Connection) -> None:
            conn.execute(
                rounds_table.update()
                .where(rounds_table.c.round_id == round_id)
                .values(stage=stage, updated_at_us=now, **values)
            )

        return write

    def _set_stage(self, round_id: str, stage: str) -> None:
        with self.engine.begin() as conn:
            self._stage_write(round_id, stage)(conn)
            crash_point("round.stage.before_commit")
        crash_point("round.stage.after_commit")


def _outcome(row: Any) -> RoundOutcome:
    return RoundOutcome(
        round_id=row.round_id,
        hour=from_micros(row.hour_us),
        stage=row.stage,
        record=None if row.record is None else json.loads(row.record),
        started_at=from_micros(row.started_at_us),
        updated_at=from_micros(row.updated_at_us),
    )


def _agent_counts(agents: AgentRound | None) -> dict[str, int] | None:
    """Return how many orders the agents placed and had refused; ``None`` when the
    orders were submitted by an earlier run of the round."""
    if agents is None:
        return None
    placed = sum(1 for r in agents.results if r.error is None and r.intent.action == "place")
    refused = sum(1 for r in agents.results if r.error is not None)
    return {"decisions": len(agents.decisions), "orders_placed": placed, "orders_refused": refused}


def _hour_need(forecast: InstanceForecast | None, vcpus: int) -> int:
    """Return the milli-credits the median forecast needs in the hour ahead; none for a
    missing or unusable forecast."""
    if forecast is None:
        return 0
    try:
        return hourly_need(forecast, MEDIAN_COL, vcpus)[0]
    except (InvalidAgentInput, IndexError):
        return 0
