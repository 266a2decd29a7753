"""Burstable accounting: AWS standard-mode earn, spend and cap, with a shared tier pool.

Per instance and interval of ``seconds``, with ``v`` vCPUs, the tier's baseline ``b``
(basis points of one vCPU) and measured utilisation ``u`` (percent of the instance's
vCPUs), in milli-credits (1 credit = one vCPU-minute at 100 %):

* earned = ``v * b * seconds // 600`` (``v * b/10_000 * seconds/60`` credits, rounded down)
* demand = ``v * u * seconds / 6``, rounded half up (``v * u/100 * seconds/60`` credits)
* the balance after the interval is ``balance + earned - demand``, capped at 24 hours of
  earnings (``Tier.balance_cap``).

Where AWS throws away what exceeds the cap, it flows into the tier's pool (as far as
the pool has headroom; only the rest is forfeited). Where the balance runs out, an
instance authorised to draw on its pool (``Instance.pool_draw``) is replenished from
it (US 9,626,210); demand still unmet is throttled. Each interval is one ledger entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from market.cem.tiers import Instance, Tier, TierManager
from market.errors import InvalidParameter
from market.ledger import (
    CeilingExceeded,
    Entry,
    EntryRequest,
    InsufficientBalance,
    Ledger,
    Transfer,
    burn_account,
    instance_credits,
    mint_account,
    pool_account,
)

ACCRUAL = "accrual"
_MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class IntervalOutcome:
    """What one interval did to an instance's credits (all in milli-credits)."""

    instance: str
    earned: int
    demand: int
    spent: int
    to_pool: int
    from_pool: int
    forfeited: int
    throttled: int
    balance: int
    entry: Entry | None


def plan_interval(
    *,
    balance: int,
    earned: int,
    demand: int,
    cap: int,
    pool_available: int,
    pool_headroom: int,
    pool_draw: bool,
) -> tuple[int, int, int, int, int, int]:
    """Return ``(spent, to_pool, from_pool, forfeited, throttled, new_balance)``.

    The pure arithmetic of one interval; ``settle`` books what it returns.
    """
    net = balance + earned - demand
    if net >= 0:
        # Only this interval's net earnings are capped: bought credits above the cap stay.
        overflow = max(0, min(net - cap, earned - demand))
        to_pool = min(overflow, pool_headroom)
        return demand, to_pool, 0, overflow - to_pool, 0, net - overflow
    deficit = -net
    from_pool = min(deficit, pool_available) if pool_draw else 0
    throttled = deficit - from_pool
    return demand - throttled, 0, from_pool, 0, throttled, 0


def _check_interval(seconds: int, cpu_utilisation: float) -> None:
    """Refuse an interval length or a utilisation outside its domain."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidParameter("seconds", seconds, "must be an int")
    if not 0 < seconds <= _MAX_SECONDS:
        raise InvalidParameter("seconds", seconds, f"must lie in 1..{_MAX_SECONDS}")
    if (
        isinstance(cpu_utilisation, bool)
        or not isinstance(cpu_utilisation, int | float)
        or not math.isfinite(cpu_utilisation)
        or not 0 <= cpu_utilisation <= 100
    ):
        raise InvalidParameter(
            "cpu_utilisation", cpu_utilisation, "must be a finite percentage in 0..100"
        )


def _demand(vcpus: int, cpu_utilisation: float, seconds: int) -> int:
    """Return the milli-credits an interval used, rounded half up from the exact decimal."""
    exact = Decimal(vcpus) * Decimal(repr(cpu_utilisation)) * seconds / 6
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP))


class BurstableAccountant:
    """Books each instance's credit earnings and spending, interval by interval."""

    def __init__(self, ledger: Ledger, tiers: TierManager, *, actor: str = "accounting") -> None:
        self.ledger = ledger
        self.tiers = tiers
        self.actor = actor

    def settle(
        self,
        instance_id: str,
        seconds: int,
        cpu_utilisation: float,
        *,
        idempotency_key: str | None = None,
    ) -> IntervalOutcome:
        """Book one interval of an instance: earn, spend, cap, overflow and replenish.

        Parameters
        ----------
        instance_id
            The instance.
        seconds
            Length of the interval, a positive int (at most a week).
        cpu_utilisation
            Mean measured utilisation over the interval, percent of the instance's vCPUs
            (0 to 100).
        idempotency_key
            Books the interval at most once under this key.

        Raises
        ------
        InstanceNotFound
            For an unknown instance.
        InvalidParameter
            For a non-int or out-of-range ``seconds``, or a utilisation that is NaN,
            infinite, negative or above 100.
        """
        instance = self.tiers.instance(instance_id)
        tier = self.tiers.tier(instance.tier)
        _check_interval(seconds, cpu_utilisation)
        earned = instance.vcpus * tier.baseline_bps * seconds // 600
        demand = _demand(instance.vcpus, cpu_utilisation, seconds)
        # A concurrent trade or pool change may move a balance between the read and the post.
        for _ in range(20):
            outcome = self._book(instance, tier, earned, demand, seconds, idempotency_key)
            if outcome is not None:
                return outcome
        raise InvalidParameter("instance", instance_id, "its balance kept changing under load")

    def _book(
        self,
        instance: Instance,
        tier: Tier,
        earned: int,
        demand: int,
        seconds: int,
        idempotency_key: str | None,
    ) -> IntervalOutcome | None:
        """Plan the interval on the balances now and post it; ``None`` if they moved."""
        account = instance_credits(instance.id)
        state = self.tiers.pool(self.ledger, tier.name)
        spent, to_pool, from_pool, forfeited, throttled, after = plan_interval(
            balance=self.ledger.balance(account),
            earned=earned,
            demand=demand,
            cap=tier.balance_cap(instance.vcpus),
            pool_available=state.available,
            pool_headroom=state.headroom,
            pool_draw=instance.pool_draw,
        )
        pool = pool_account(tier.name)
        legs = _interval_legs(tier, account, earned - forfeited, from_pool, spent, to_pool)
        entry = None
        if legs:
            details: dict[str, str | int] = {
                "instance": instance.id,
                "tier": tier.name,
                "seconds": seconds,
                "earned": earned,
                "demand": demand,
                "throttled": throttled,
                "forfeited": forfeited,
            }
            ceilings = {pool: state.capacity} if to_pool else {}
            request = EntryRequest(
                tuple(legs), ACCRUAL, self.actor, idempotency_key, details, ceilings
            )
            try:
                entry = self.ledger.post(request)
            except (InsufficientBalance, CeilingExceeded):
                return None
        return IntervalOutcome(
            instance.id,
            earned,
            demand,
            spent,
            to_pool,
            from_pool,
            forfeited,
            throttled,
            after,
            entry,
        )


def _interval_legs(
    tier: Tier, account: str, kept: int, from_pool: int, spent: int, to_pool: int
) -> list[Transfer]:
    # earned credits kept, drawn from and given to the pool, spent; no zero legs
    pool = pool_account(tier.name)
    return [
        Transfer(*pair, amount)
        for pair, amount in (
            ((mint_account(tier.asset), account), kept),
            ((pool, account), from_pool),
            ((account, burn_account(tier.asset)), spent),
            ((account, pool), to_pool),
        )
        if amount > 0
    ]
