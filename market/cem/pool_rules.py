"""How a tier's pool serves the instances short in an interval: the pool rules.

A pool rule is called as ``rule(want, level, segments)`` by
:func:`market.cem.accrual.accrue_interval` with what each instance wants of its tier's
pool (milli-credits) and what each pool holds, and returns what each instance draws
(or a :class:`PoolDraw` when other tiers' pools help). The live accrual and the replay
share them:

* :func:`draw_in_order`: first come, first served, in instance order;
* :func:`draw_pro_rata`: the patent's free pool, shared in proportion to what each wants;
* :class:`ValueOrder`: the free pool, highest owner value first;
* :class:`PricedPool`: the market's pool: a credit costs the hour's draw price of its
  tier, an owner who values a credit below it draws nothing, the others draw highest
  value first as far as their funds pay for it, and what a tier's pool cannot serve the
  other tiers' pools serve at the exchange rates (:func:`bridge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from market.units import MILLI_PER_CREDIT

if TYPE_CHECKING:
    from market.cem.accrual import TierSegments

_INT = np.int64


@dataclass(frozen=True, slots=True)
class Conversions:
    """What the pools converted for each other in an interval: credits out of and into
    each tier's pool, and the value remainder (value units) the conversions round off."""

    out: np.ndarray
    into: np.ndarray
    remainder: int

    @classmethod
    def none(cls, tiers: int) -> Conversions:
        """Return no conversions between ``tiers`` pools."""
        return cls(np.zeros(tiers, dtype=_INT), np.zeros(tiers, dtype=_INT), 0)

    def __add__(self, other: Conversions) -> Conversions:
        return Conversions(
            self.out + other.out, self.into + other.into, self.remainder + other.remainder
        )

    @property
    def shift(self) -> np.ndarray:
        """Return how each pool changed by converting."""
        return self.into - self.out


@dataclass(frozen=True, slots=True)
class PoolDraw:
    """What each instance drew, and what the pools converted for each other to serve it."""

    from_pool: np.ndarray
    conversions: Conversions


PoolRule = Callable[[np.ndarray, np.ndarray, "TierSegments"], "np.ndarray | PoolDraw"]
"""How a tier's pool serves its instances' draws: ``rule(want, level, segments)``
returns what each instance gets, at most its ``want``, each tier in total at most its
pool's ``level`` (plus, for a :class:`PoolDraw`, what other pools converted into it)."""


def draw_in_order(want: np.ndarray, level: np.ndarray, segments: TierSegments) -> np.ndarray:
    """Serve each tier's wants from its ``level`` in instance order, first come first."""
    running = np.cumsum(want, dtype=_INT)
    before_tier = np.concatenate(([0], running))[segments.starts]
    taken_before = running - want - before_tier[segments.tier_of]
    return np.clip(level[segments.tier_of] - taken_before, 0, want)


def draw_pro_rata(want: np.ndarray, level: np.ndarray, segments: TierSegments) -> np.ndarray:
    """Serve each tier's wants from its ``level`` in proportion to what each wants.

    A tier whose pool covers every want serves them all; otherwise each instance gets
    ``want * level // total`` and the rounding remainder one milli-credit each, in
    instance order (the replay's ``pool`` policy).
    """
    total = segments.total(want)
    short = total > level
    if not short.any():
        return want
    tier_of = segments.tier_of
    short_i = short[tier_of]
    share = np.where(short_i, want * level[tier_of] // np.maximum(total[tier_of], 1), want)
    remainder = np.where(short, level - segments.total(share), 0)
    left = short_i & (share < want)
    return share + (left & (segments.rank(left) <= remainder[tier_of]))


def value_order(value: np.ndarray, tier_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the instances of each tier highest owner value first (ties in instance
    order), and the inverse permutation."""
    order = np.lexsort((-np.asarray(value), np.asarray(tier_of)))
    return order, np.argsort(order)


@dataclass(frozen=True, slots=True)
class ValueOrder:
    """The free pool, highest owner value first (``order`` from :func:`value_order`)."""

    order: np.ndarray
    inverse: np.ndarray

    def __call__(self, want: np.ndarray, level: np.ndarray, segments: TierSegments) -> np.ndarray:
        return draw_in_order(want[self.order], level, segments)[self.inverse]


@dataclass(frozen=True, slots=True)
class PricedPool:
    """The market's pool for one interval of an hour.

    Parameters
    ----------
    value
        Each instance's owner value of a credit (minor units).
    order, inverse
        :func:`value_order` of ``value``.
    price
        Each tier's draw price this hour (minor units per credit); 0 draws for free.
    funds
        Each instance's funds (minor units) at the hour's start.
    drawn
        What each instance already drew this hour (milli-credits): its funds pay for the
        hour's draws together.
    rates
        The tiers' exchange rates (micro-units) for conversions between pools.
    """

    value: np.ndarray
    order: np.ndarray
    inverse: np.ndarray
    price: np.ndarray
    funds: np.ndarray
    drawn: np.ndarray
    rates: np.ndarray

    def __call__(self, want: np.ndarray, level: np.ndarray, segments: TierSegments) -> PoolDraw:
        price_i = self.price[segments.tier_of]
        paying = price_i > 0
        affordable = np.where(
            paying, self.funds * MILLI_PER_CREDIT // np.maximum(price_i, 1) - self.drawn, want
        )
        want = np.where(self.value >= price_i, np.clip(affordable, 0, want), 0)
        got = draw_in_order(want[self.order], level, segments)[self.inverse]
        if len(level) == 1:
            return PoolDraw(got, Conversions.none(1))
        unmet = want - got
        arrived, conversions = bridge(
            segments.total(unmet), level - segments.total(got), self.price, self.rates
        )
        if arrived.any():
            got = got + draw_in_order(unmet[self.order], arrived, segments)[self.inverse]
        return PoolDraw(got, conversions)


def bridge(
    short: np.ndarray, left: np.ndarray, price: np.ndarray, rates: np.ndarray
) -> tuple[np.ndarray, Conversions]:
    """Serve each tier's unmet draws ``short`` from the other tiers' pools' ``left``.

    The CEM converts value in, value out (``amount * rate_from // rate_to``, the value
    remainder to the rounding account), the dearest tier (draw price per unit of value)
    served first from the cheapest. Return the credits that arrive in each tier and the
    conversions.
    """
    tiers = len(short)
    arrived = np.zeros(tiers, dtype=_INT)
    out, into = np.zeros(tiers, dtype=_INT), np.zeros(tiers, dtype=_INT)
    remainder = 0
    left, short = left.copy(), short.copy()
    per_value = price / rates
    for b in np.argsort(-per_value, kind="stable").tolist():
        for a in np.argsort(per_value, kind="stable").tolist():
            if short[b] <= 0:
                break
            if a == b or left[a] <= 0:
                continue
            take = min(int(short[b]), int(left[a]) * int(rates[a]) // int(rates[b]))
            if take <= 0:
                continue
            source = -(-take * int(rates[b]) // int(rates[a]))
            out[a] += source
            into[b] += take
            remainder += source * int(rates[a]) - take * int(rates[b])
            left[a] -= source
            short[b] -= take
            arrived[b] += take
    return arrived, Conversions(out, into, remainder)


@dataclass(frozen=True, slots=True)
class PoolSettlement:
    """An hour of the priced pool settled, per instance in minor units: what each drawer
    pays (``charge``), what each lender is paid (``repay``) and is still owed."""

    charge: np.ndarray
    repay: np.ndarray
    owed: np.ndarray


def settle_pool(
    drawn: np.ndarray, lent: np.ndarray, price: np.ndarray, owed: np.ndarray, funds: np.ndarray
) -> PoolSettlement:
    """Settle an hour's pool trades at each instance's draw ``price`` (its tier's).

    Each instance pays ``drawn * price // 1000`` for what it drew (milli-credits at minor
    units per credit, rounded down), at most its ``funds`` (the draws were bounded by
    them when they were made). A lender is owed what it lent at the price, on top of
    what it was ``owed`` before; what the draws bring in pays the lenders, pro rata when
    it falls short (rounded down; the rest stays owed for later hours), and only what
    is left over is the provider's.
    """
    charge = np.minimum(drawn * price // MILLI_PER_CREDIT, funds)
    owed = np.asarray(owed, dtype=object) + (lent * price // MILLI_PER_CREDIT).astype(object)
    income, owed_total = int(charge.sum()), int(owed.sum())
    repay = owed if owed_total <= income else owed * income // owed_total
    return PoolSettlement(charge, repay.astype(_INT), (owed - repay).astype(_INT))
