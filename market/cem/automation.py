"""CEM automation: exchange rates that follow forecast demand, and pool swaps.

Every interval, for each tier, the automation compares the credits its instances are
forecast to draw from the tier's pool (``demand``: the sum of their forecast
shortfalls, see :func:`instance_pool_demand`) with what the pool holds
(``available``), within its physical capacity. In milli-credits throughout.

**Exchange rates.** Each tier has a *base rate*: the relative value of its hardware,
the rate it was configured with (the first rate the automation sees for it, unless
given). Demand moves the rate within a band around that value, never beyond it. The
tier's *excess demand* is ``e = (demand - available) / max(demand, available, 1)``,
in ``[-1, 1]``. It is smoothed, ``s = alpha * e + (1 - alpha) * s_previous``, and the
step, in basis points of the current rate ``r``, is::

    step = gain_bps * s  -  restore_bps * (r - base) / r

where the first term is zero inside the dead band ``|s| < deadband``. The second is
a restoring force: it closes ``restore_bps`` of the gap to the base each interval,
so with no excess demand the rate relaxes back to its base, and a sustained excess
holds it where the two terms balance. The step is clamped to ``max_step_bps``; the
new rate is then clamped to the band ``[ceil(band_low * base), floor(band_high *
base)]`` (and to ``[min_rate, max_rate]``) and rounded towards the old rate, so a
step never exceeds its bound and a rate inside its band never leaves it; a rate
outside it (a released manual rate) comes back at most ``max_step_bps`` per
interval. For a given rate and history the new rate is monotone in the excess
demand. A tier whose rate an administrator set by hand is *pinned*: the automation
leaves its rate alone until the administrator releases it.

**Swaps.** A saturated tier (``demand > available``) needs ``demand - available``
milli-credits, at most its headroom (``capacity - available``). An under-used tier can
spare what its pool holds beyond its own demand and a reserve (``reserve_bps`` of that
demand). Destinations are served largest need first from the largest spares; the
amount taken from a source is ``floor(out * destination_rate / source_rate)``, so what
arrives, converted at the rates, never exceeds the destination's need or headroom,
and what leaves never exceeds the source's spare.

:meth:`CemAutomation.step` is pure: plain :class:`TierState` in, :class:`CemDecision`
out. :func:`apply_decision` books the swaps (first, at the rates they were planned at)
and then the rate changes through :class:`~market.cem.exchange.CreditExchange`, and
records every decision with its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from data.forecasts import UPPER_COL
from market.clock import to_micros
from market.decisions import (
    DecisionLog,
    DecisionQuery,
    DecisionRecord,
    plain,
)
from market.errors import InvalidAgentInput, InvalidPolicy
from market.units import BPS

if TYPE_CHECKING:
    from market.agents.forecast import InstanceForecast
    from market.cem.exchange import CreditExchange, RateChange
    from market.cem.tiers import Pool, TierManager
    from market.ledger import ExtraWrites, Ledger

MANUAL_RELEASED = "manual_rate_released"
_RATE_OUTCOMES = ("rate", "rate_held", "manual_rate")


@dataclass(frozen=True, slots=True)
class TierState:
    """One tier as the automation sees it: rate, forecast demand and pool, in milli-credits."""

    tier: str
    exchange_rate: int
    demand: int
    available: int
    capacity: int
    missing_forecasts: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.tier, str) or not self.tier:
            raise InvalidAgentInput("tier", self.tier, "must be a non-empty str")
        if type(self.exchange_rate) is not int or self.exchange_rate <= 0:
            raise InvalidAgentInput("exchange_rate", self.exchange_rate, "must be a positive int")
        for name in ("demand", "available", "capacity"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidAgentInput(name, value, "must be a non-negative int")

    @property
    def headroom(self) -> int:
        """Return how many more milli-credits the pool can take."""
        return max(0, self.capacity - self.available)

    @property
    def excess_demand(self) -> Fraction:
        """Return ``(demand - available) / max(demand, available, 1)``, in ``[-1, 1]``."""
        return Fraction(self.demand - self.available, max(self.demand, self.available, 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class CemPolicy:
    """The automation's settings (an administrator's).

    Parameters
    ----------
    gain_bps
        Rate step, in basis points, for a smoothed excess demand of 1.
    max_step_bps
        The largest step per interval, basis points of the current rate.
    smoothing
        Weight of the newest excess demand in the smoothed one, in ``(0, 1]``.
    deadband
        No step while the smoothed excess demand is smaller than this in magnitude.
    restore_bps
        Share of the gap between the rate and its base closed each interval, basis
        points: the restoring force.
    band_low, band_high
        The band each rate stays in, as multiples of its base rate.
    min_rate, max_rate
        The outer range every rate stays in, micro-units.
    reserve_bps
        What a source pool keeps beyond its own forecast demand, basis points of it.
    min_swap
        The smallest swap worth booking, milli-credits of the source.
    actor
        The administrator the automation acts as.
    reason_tag
        Starts the reason of every rate change it makes; other changes are manual.
    """

    gain_bps: int = 1_000
    max_step_bps: int = 500
    smoothing: Fraction = Fraction(1, 2)
    deadband: Fraction = Fraction(1, 20)
    restore_bps: int = 500
    band_low: Fraction = Fraction(4, 5)
    band_high: Fraction = Fraction(5, 4)
    min_rate: int = 100_000
    max_rate: int = 100_000_000
    reserve_bps: int = 1_000
    min_swap: int = 1_000
    actor: str = "admin"
    reason_tag: str = "cem-auto"

    def __post_init__(self) -> None:
        for name in ("gain_bps", "min_rate", "max_rate", "min_swap"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise InvalidPolicy(name, value, "must be a positive int")
        if type(self.max_step_bps) is not int or not 0 < self.max_step_bps < BPS:
            raise InvalidPolicy("max_step_bps", self.max_step_bps, f"must lie in 1..{BPS - 1}")
        if type(self.restore_bps) is not int or not 0 <= self.restore_bps < BPS:
            raise InvalidPolicy("restore_bps", self.restore_bps, f"must lie in 0..{BPS - 1}")
        if not isinstance(self.band_low, Fraction | int) or not 0 < self.band_low <= 1:
            raise InvalidPolicy("band_low", self.band_low, "must be a Fraction in (0, 1]")
        if not isinstance(self.band_high, Fraction | int) or self.band_high < 1:
            raise InvalidPolicy("band_high", self.band_high, "must be a Fraction of at least 1")
        if type(self.reserve_bps) is not int or self.reserve_bps < 0:
            raise InvalidPolicy("reserve_bps", self.reserve_bps, "must be a non-negative int")
        if not isinstance(self.smoothing, Fraction | int) or not 0 < self.smoothing <= 1:
            raise InvalidPolicy("smoothing", self.smoothing, "must be a Fraction in (0, 1]")
        if not isinstance(self.deadband, Fraction | int) or not 0 <= self.deadband < 1:
            raise InvalidPolicy("deadband", self.deadband, "must be a Fraction in [0, 1)")
        if self.min_rate > self.max_rate:
            raise InvalidPolicy("min_rate", self.min_rate, f"exceeds max_rate {self.max_rate}")
        if not self.actor or not self.reason_tag:
            raise InvalidPolicy("actor", self.actor, "actor and reason_tag must be non-empty")

    def band(self, base_rate: int) -> tuple[int, int]:
        """Return the lowest and highest rate the automation sets for ``base_rate``."""
        low = max(self.min_rate, -int(-self.band_low * base_rate // 1))
        high = min(self.max_rate, int(self.band_high * base_rate // 1))
        if low > high:
            # a base outside [min_rate, max_rate]: the band shrinks to the nearest end
            low = high = max(self.min_rate, min(self.max_rate, base_rate))
        return low, high


@dataclass(frozen=True, slots=True)
class RateStep:
    """What the automation decided for one tier's rate, and from what."""

    tier: str
    old_rate: int
    new_rate: int
    base_rate: int
    excess_demand: Fraction
    smoothed: Fraction
    step_bps: Fraction
    manual: bool

    @property
    def changed(self) -> bool:
        """Return whether the rate moves."""
        return self.new_rate != self.old_rate


@dataclass(frozen=True, slots=True)
class SwapPlan:
    """One planned swap: ``amount_in`` from the source pool, ``amount_out`` into the destination."""

    source_tier: str
    destination_tier: str
    amount_in: int
    amount_out: int
    source_rate: int
    destination_rate: int


@dataclass(frozen=True, slots=True)
class CemDecision:
    """One interval's decisions, with the tier states they came from."""

    at: datetime
    tiers: tuple[TierState, ...]
    rates: tuple[RateStep, ...]
    swaps: tuple[SwapPlan, ...]

    def records(self) -> list[DecisionRecord]:
        """Return one record per tier's rate and one per swap, each with its inputs."""
        states = {t.tier: t for t in self.tiers}
        out = []
        for r in self.rates:
            state = states[r.tier]
            outcome = "manual_rate" if r.manual else ("rate" if r.changed else "rate_held")
            out.append(
                DecisionRecord(
                    "cem",
                    r.tier,
                    self.at,
                    outcome,
                    plain(
                        {
                            "demand": state.demand,
                            "available": state.available,
                            "capacity": state.capacity,
                            "missing_forecasts": state.missing_forecasts,
                            "excess_demand": r.excess_demand,
                            "smoothed_excess": r.smoothed,
                            "step_bps": r.step_bps,
                            "old_rate": r.old_rate,
                            "new_rate": r.new_rate,
                            "base_rate": r.base_rate,
                        }
                    ),
                )
            )
        for s in self.swaps:
            source, destination = states[s.source_tier], states[s.destination_tier]
            out.append(
                DecisionRecord(
                    "cem",
                    s.destination_tier,
                    self.at,
                    "swap",
                    {
                        "source_tier": s.source_tier,
                        "destination_tier": s.destination_tier,
                        "amount_in": s.amount_in,
                        "amount_out": s.amount_out,
                        "source_rate": s.source_rate,
                        "destination_rate": s.destination_rate,
                        "source": {
                            "demand": source.demand,
                            "available": source.available,
                        },
                        "destination": {
                            "demand": destination.demand,
                            "available": destination.available,
                            "capacity": destination.capacity,
                        },
                    },
                )
            )
        return out


# the pure rules


def rate_step(
    old_rate: int, base_rate: int, excess_demand: Fraction, previous: Fraction, policy: CemPolicy
) -> tuple[int, Fraction, Fraction]:
    """Return ``(new_rate, smoothed_excess, step_bps)`` for one tier and interval.

    See the module docstring for the rule.

    Raises
    ------
    InvalidAgentInput
        For an excess demand outside ``[-1, 1]`` or a rate or base that is not a
        positive int.
    """
    for name, value in (("old_rate", old_rate), ("base_rate", base_rate)):
        if type(value) is not int or value <= 0:
            raise InvalidAgentInput(name, value, "must be a positive int")
    if not -1 <= excess_demand <= 1:
        raise InvalidAgentInput("excess demand", excess_demand, "must lie in [-1, 1]")
    smoothed = policy.smoothing * excess_demand + (1 - policy.smoothing) * previous
    push = Fraction(0) if abs(smoothed) < policy.deadband else policy.gain_bps * smoothed
    restore = Fraction(policy.restore_bps * (old_rate - base_rate), old_rate)
    bound = Fraction(policy.max_step_bps)
    step = max(-bound, min(bound, push - restore))
    low, high = policy.band(base_rate)
    target = max(Fraction(low), min(Fraction(high), old_rate * (BPS + step) / BPS))
    # the band may pull a rate from outside it, but no faster than the step bound
    reach = old_rate * bound / BPS
    target = max(old_rate - reach, min(old_rate + reach, target))
    # rounded towards the old rate, so the step never exceeds its bound
    new_rate = int(target // 1) if target >= old_rate else -int(-target // 1)
    return new_rate, smoothed, step


def plan_swaps(tiers: Sequence[TierState], policy: CemPolicy) -> list[SwapPlan]:
    """Plan pool swaps from under-used tiers to saturated ones; see the module docstring."""
    need = {
        t.tier: min(t.demand - t.available, t.headroom) for t in tiers if t.demand > t.available
    }
    spare = {}
    for t in tiers:
        keep = t.demand + t.demand * policy.reserve_bps // BPS
        if t.available > keep:
            spare[t.tier] = t.available - keep
    rates = {t.tier: t.exchange_rate for t in tiers}
    plans = []
    for destination in sorted(need, key=lambda name: (-need[name], name)):
        for source in sorted(spare, key=lambda name: (-spare[name], name)):
            wanted = need[destination]
            if wanted <= 0:
                break
            if source == destination or spare[source] <= 0:
                continue
            amount_in = min(spare[source], wanted * rates[destination] // rates[source])
            amount_out = amount_in * rates[source] // rates[destination]
            if amount_in < policy.min_swap or amount_out == 0:
                continue
            plans.append(
                SwapPlan(
                    source, destination, amount_in, amount_out, rates[source], rates[destination]
                )
            )
            spare[source] -= amount_in
            need[destination] -= amount_out
    return plans


def instance_pool_demand(credits: int, earn_rate: int, cap: int, need: Sequence[int]) -> int:
    """Return the milli-credits an instance will draw from its pool over ``need``'s hours.

    Its balance runs forward earning ``earn_rate`` and spending ``need`` each hour,
    clipped at ``cap``; every credit short is drawn from the pool.
    """
    drawn = pool_demands(
        np.array([credits]), np.array([earn_rate]), np.array([cap]), np.array([need], np.int64)
    )
    return int(drawn[0])


def pool_demands(
    credits: np.ndarray, earn_rate: np.ndarray, cap: np.ndarray, need: np.ndarray
) -> np.ndarray:
    """Return :func:`instance_pool_demand` of every row: ``(n,)`` from ``(n,)`` and ``(n, hours)``.

    All instances step together, one hour at a time, in exact integers.
    """
    balance = np.asarray(credits, dtype=np.int64)
    earn = np.asarray(earn_rate, dtype=np.int64)
    drawn = np.zeros_like(balance)
    for hour in range(need.shape[1]):
        balance = np.minimum(cap, balance + earn - need[:, hour])
        drawn -= np.minimum(balance, 0)
        balance = np.maximum(balance, 0)
    return drawn


def fleet_tier_states(
    pools: Sequence[Pool],
    tier_of: np.ndarray,
    usable: np.ndarray,
    credits: np.ndarray,
    earn_rate: np.ndarray,
    cap: np.ndarray,
    need: np.ndarray,
) -> list[TierState]:
    """Return every tier's state from its pool and arrays over the instances that may draw on it.

    Instance ``i`` belongs to ``pools[tier_of[i]]``; where its forecast is ``usable`` it
    adds :func:`pool_demands` of its ``credits``, ``earn_rate``, ``cap`` and hourly
    ``need`` (milli-credits, ``(n, hours)``) to its tier's demand, and otherwise counts
    in the tier's ``missing_forecasts``.
    """
    tier_of = np.asarray(tier_of, dtype=np.int64)
    usable = np.asarray(usable, dtype=bool)
    drawn = pool_demands(credits[usable], earn_rate[usable], cap[usable], need[usable])
    demand = np.zeros(len(pools), dtype=np.int64)
    np.add.at(demand, tier_of[usable], drawn)
    missing = np.bincount(tier_of[~usable], minlength=len(pools))
    return [
        TierState(p.tier, p.exchange_rate, int(demand[k]), p.available, p.capacity, int(missing[k]))
        for k, p in enumerate(pools)
    ]


def tier_states(
    tiers: TierManager,
    ledger: Ledger,
    forecasts: Mapping[str, InstanceForecast | None],
    *,
    column: str = UPPER_COL,
    hours: int = 24,
) -> list[TierState]:
    """Return every tier's state: its pool from the ledger, demand from the forecasts.

    ``tiers`` is the :class:`~market.cem.tiers.TierManager`; ``forecasts`` maps instance ids
    to :class:`~market.agents.forecast.InstanceForecast`. An instance that may draw on its pool
    adds its shortfall over the next ``hours`` at the ``column`` quantile; one without
    a usable forecast adds nothing and is counted in ``missing_forecasts``
    (:func:`fleet_tier_states` over the instances' arrays).
    """
    from market.agents.decision import hourly_need
    from market.ledger import instance_credits

    balances = ledger.balances("instance:")
    pools = tiers.pools(ledger)
    index = {p.tier: k for k, p in enumerate(pools)}
    drawing = [i for i in tiers.instances() if i.pool_draw]
    n = len(drawing)
    tier_of = np.zeros(n, dtype=np.int64)
    usable = np.zeros(n, dtype=bool)
    credits, earn_rate, cap = (np.zeros(n, dtype=np.int64) for _ in range(3))
    # hours a forecast does not cover need nothing: they never draw on the pool
    need = np.zeros((n, hours), dtype=np.int64)
    for row, instance in enumerate(drawing):
        spec = tiers.tier(instance.tier)
        tier_of[row] = index[instance.tier]
        credits[row] = balances.get(instance_credits(instance.id), 0)
        earn_rate[row] = spec.hourly_earnings(instance.vcpus)
        cap[row] = spec.balance_cap(instance.vcpus)
        forecast = forecasts.get(instance.id)
        try:
            hourly = None if forecast is None else hourly_need(forecast, column, instance.vcpus)
        except InvalidAgentInput:
            hourly = None
        if hourly is not None:
            usable[row] = True
            need[row, : len(hourly[:hours])] = hourly[:hours]
    return fleet_tier_states(pools, tier_of, usable, credits, earn_rate, cap, need)


def pinned_rates(
    changes: Iterable[RateChange], releases: Mapping[str, datetime], policy: CemPolicy
) -> dict[str, int]:
    """Return the tiers whose rate an administrator set by hand and has not released.

    ``changes`` are :class:`~market.cem.exchange.RateChange` records, oldest first; a change
    whose reason does not start with the automation's tag is manual.
    """
    latest: dict[str, RateChange] = {}
    for change in changes:
        latest[change.tier] = change
    return {
        tier: change.new_rate
        for tier, change in latest.items()
        if not change.reason.startswith(policy.reason_tag)
        and (tier not in releases or releases[tier] < change.changed_at)
    }


class CemAutomation:
    """The CEM's automatic exchange rates and swaps, interval by interval.

    Parameters
    ----------
    policy
        The automation's settings.
    smoothed
        Each tier's smoothed excess demand so far (zero for tiers not given).
    base_rates
        Each tier's base rate, micro-units; a tier not given takes the first rate the
        automation sees for it.
    """

    def __init__(
        self,
        policy: CemPolicy | None = None,
        smoothed: Mapping[str, Fraction] | None = None,
        base_rates: Mapping[str, int] | None = None,
    ) -> None:
        self.policy = policy or CemPolicy()
        self.smoothed: dict[str, Fraction] = dict(smoothed or {})
        self.base_rates: dict[str, int] = dict(base_rates or {})
        for tier, rate in self.base_rates.items():
            if type(rate) is not int or rate <= 0:
                raise InvalidAgentInput(f"base rate of {tier}", rate, "must be a positive int")

    def step(
        self,
        tiers: Sequence[TierState],
        at: datetime,
        manual_rates: Mapping[str, int] | None = None,
    ) -> CemDecision:
        """Decide this interval's rate steps and swaps; remember the smoothed excess demand.

        ``manual_rates`` are the pinned tiers (see :func:`pinned_rates`): their rate is
        left as it is.

        Raises
        ------
        InvalidAgentInput
            For a naive ``at`` or a tier given twice; nothing is remembered.
        """
        if at.tzinfo is None:
            raise InvalidAgentInput("at", at, "must be timezone-aware")
        names = [t.tier for t in tiers]
        if len(set(names)) != len(names):
            raise InvalidAgentInput("tiers", names, "name a tier more than once")
        pinned = manual_rates or {}
        steps = []
        bases = {t.tier: self.base_rates.get(t.tier, t.exchange_rate) for t in tiers}
        for t in tiers:
            new_rate, smoothed, step = rate_step(
                t.exchange_rate,
                bases[t.tier],
                t.excess_demand,
                self.smoothed.get(t.tier, Fraction(0)),
                self.policy,
            )
            manual = t.tier in pinned
            steps.append(
                RateStep(
                    t.tier,
                    t.exchange_rate,
                    t.exchange_rate if manual else new_rate,
                    bases[t.tier],
                    t.excess_demand,
                    smoothed,
                    Fraction(0) if manual else step,
                    manual,
                )
            )
        swaps = plan_swaps(tiers, self.policy)
        for s in steps:
            self.smoothed[s.tier] = s.smoothed
        self.base_rates.update(bases)
        return CemDecision(at, tuple(tiers), tuple(steps), tuple(swaps))

    @classmethod
    def resume(cls, policy: CemPolicy, log: DecisionLog, tiers: Iterable[str]) -> CemAutomation:
        """Return an automation that carries on from the state its log last recorded.

        Each tier's smoothed excess demand and base rate come from its latest rate
        record; a tier without one starts afresh.
        """
        smoothed, bases = {}, {}
        for tier in tiers:
            for record in log.query(DecisionQuery(kind="cem", subject=tier, limit=20)):
                if record.outcome in _RATE_OUTCOMES and "smoothed_excess" in record.detail:
                    smoothed[tier] = Fraction(str(record.detail["smoothed_excess"]))
                    if "base_rate" in record.detail:
                        bases[tier] = int(record.detail["base_rate"])
                    break
        return cls(policy, smoothed, bases)


def releases_of(log: DecisionLog, tiers: Iterable[str]) -> dict[str, datetime]:
    """Return when each tier's manual rate was last released, from the log."""
    out = {}
    for tier in tiers:
        record = log.latest("cem", tier, MANUAL_RELEASED)
        if record is not None:
            out[tier] = record.at
    return out


def release_manual_rate(log: DecisionLog, tier: str, actor: str, at: datetime) -> DecisionRecord:
    """Record that an administrator hands ``tier``'s rate back to the automation."""
    (stored,) = log.record([DecisionRecord("cem", tier, at, MANUAL_RELEASED, {"actor": actor})])
    return stored


def swap_key(policy: CemPolicy, at: datetime, n: int) -> str:
    """Return the idempotency key of the ``n``-th swap of the interval at ``at``."""
    return f"{policy.reason_tag}:{to_micros(at)}:{n}"


def rate_reason(policy: CemPolicy, step: RateStep) -> str:
    """Return the audited reason of an automatic rate step."""
    return (
        f"{policy.reason_tag}: excess demand {float(step.excess_demand):+.3f}, "
        f"smoothed {float(step.smoothed):+.3f}, step {float(step.step_bps):+.1f} bps"
    )


def book_swap(
    exchange: CreditExchange,
    swap: SwapPlan,
    policy: CemPolicy,
    at: datetime,
    n: int,
    writes: ExtraWrites | None = None,
) -> DecisionRecord | None:
    """Book one planned swap (with ``writes`` in its transaction); return ``None``, or
    the ``swap_failed`` record when the CEM refuses it (the pool moved meanwhile, say)."""
    from market.errors import ExchangeError
    from market.ledger import LedgerError

    try:
        exchange.perform_credit_swap(
            swap.source_tier,
            swap.destination_tier,
            swap.amount_in,
            actor=policy.actor,
            idempotency_key=swap_key(policy, at, n),
            writes=writes,
        )
    except (ExchangeError, LedgerError) as exc:
        detail = {"source_tier": swap.source_tier, "amount_in": swap.amount_in, "error": str(exc)}
        return DecisionRecord("cem", swap.destination_tier, at, "swap_failed", detail)
    return None


def set_rate(
    exchange: CreditExchange, step: RateStep, policy: CemPolicy, at: datetime
) -> DecisionRecord | None:
    """Set one tier's stepped rate; return ``None``, or the ``rate_failed`` record."""
    from market.errors import ExchangeError

    try:
        exchange.set_exchange_rate(
            step.tier, step.new_rate, actor=policy.actor, reason=rate_reason(policy, step)
        )
    except ExchangeError as exc:
        return DecisionRecord("cem", step.tier, at, "rate_failed", {"error": str(exc)})
    return None


def apply_decision(
    exchange: CreditExchange, decision: CemDecision, policy: CemPolicy, log: DecisionLog | None
) -> list[DecisionRecord]:
    """Book a decision's swaps, then its rate changes, and record it all.

    A swap or rate change the CEM refuses (the pool moved meanwhile, say) books
    nothing and is recorded as ``swap_failed`` or ``rate_failed`` with the error.
    Returns the records written.
    """
    records = decision.records()
    for n, s in enumerate(decision.swaps):
        failed = book_swap(exchange, s, policy, decision.at, n)
        if failed is not None:
            records.append(failed)
    for r in decision.rates:
        if r.manual or not r.changed:
            continue
        failed = set_rate(exchange, r, policy, decision.at)
        if failed is not None:
            records.append(failed)
    if log is not None:
        return log.record(records)
    return records
