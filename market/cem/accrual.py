"""One interval of burstable accounting for many instances at once (numpy ``int64``, exact).

:func:`accrue_interval` is :func:`market.cem.accounting.plan_interval` over a fleet: per
instance, in milli-credits, the balance earns ``earned`` and pays ``demand``; what it
cannot pay is drawn from the tier's pool by instances allowed to draw (``pool_draw``),
shared among the instances short in the same interval by a *pool rule*
(:func:`draw_pro_rata`, the patent's free pool shared fairly, by default); what is still
short is throttled. The balance is then capped at ``cap`` (24 hours of earnings): only
this interval's net earnings are capped, and what overflows goes to the pool as far as
its capacity allows after the interval's draws, in instance order, the rest forfeited.

Where one instance has the pool to itself (or the pool covers every draw and takes
every overflow), each instance's result is exactly ``plan_interval``'s. Instances come
grouped by tier (:class:`TierSegments`); nothing here reads a clock or a store, so the
live booking (:mod:`market.cem.live`) and a replay's step compute the same numbers.

Demand comes from utilisation read to micro-percent (``cpu_micro``: 37.5 % is
37_500_000), so the rounding is exact integer arithmetic: ``vcpus * cpu_micro *
seconds / 6_000_000`` milli-credits, rounded half up, as ``plan_interval``'s callers
round the exact decimal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from market.errors import InvalidParameter

MICRO_PERCENT = 1_000_000
"""Utilisation unit of :func:`interval_demand`: one millionth of a percent."""

_INT = np.int64


@dataclass(frozen=True, slots=True)
class TierSegments:
    """Instances grouped by tier: instance ``i`` belongs to tier ``tier_of[i]``.

    ``tier_of`` is non-decreasing, so each tier's instances are one contiguous run
    ``starts[k]:ends[k]`` (empty for a tier without instances).
    """

    tier_of: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, tier_of: np.ndarray, tiers: int) -> TierSegments:
        """Return the segments of ``tier_of`` over ``tiers`` tiers.

        Raises
        ------
        InvalidParameter
            If ``tier_of`` decreases anywhere or names a tier outside ``0..tiers-1``.
        """
        codes = np.asarray(tier_of, dtype=_INT)
        if codes.ndim != 1 or (codes.size and (codes.min() < 0 or codes.max() >= tiers)):
            raise InvalidParameter("tier_of", "...", f"must hold tier positions in 0..{tiers - 1}")
        if np.any(codes[1:] < codes[:-1]):
            raise InvalidParameter("tier_of", "...", "must be grouped by tier (non-decreasing)")
        positions = np.arange(tiers, dtype=_INT)
        starts = np.searchsorted(codes, positions, side="left").astype(_INT)
        ends = np.searchsorted(codes, positions, side="right").astype(_INT)
        return cls(codes, starts, ends)

    @property
    def tiers(self) -> int:
        """Return the number of tiers."""
        return len(self.starts)

    def total(self, values: np.ndarray) -> np.ndarray:
        """Return each tier's sum of ``values`` (exact, zero for an empty tier)."""
        running = np.concatenate(([0], np.cumsum(values, dtype=_INT)))
        return running[self.ends] - running[self.starts]

    def rank(self, mask: np.ndarray) -> np.ndarray:
        """Return the 1-based rank of each ``True`` of ``mask`` within its tier."""
        running = np.cumsum(mask, dtype=_INT)
        before = np.concatenate(([0], running))[self.starts]
        return running - before[self.tier_of]


PoolRule = Callable[[np.ndarray, np.ndarray, TierSegments], np.ndarray]
"""How a tier's pool serves its instances' draws: ``rule(want, level, segments)``
returns what each instance gets, at most its ``want``, each tier in total at most its
pool's ``level``."""


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


@dataclass(frozen=True, slots=True)
class IntervalBooking:
    """What one interval did to each instance (arrays over instances) and to each pool.

    All in milli-credits. ``earned - forfeited`` was minted, ``spent`` burnt; each
    balance changed by ``earned - forfeited + from_pool - spent - to_pool`` and each
    pool by its tier's ``to_pool - from_pool``.
    """

    earned: np.ndarray
    demand: np.ndarray
    spent: np.ndarray
    to_pool: np.ndarray
    from_pool: np.ndarray
    forfeited: np.ndarray
    throttled: np.ndarray
    balance: np.ndarray
    pool: np.ndarray

    @property
    def minted(self) -> np.ndarray:
        """Return what each instance's earnings minted (earned less forfeited)."""
        return self.earned - self.forfeited

    @property
    def change(self) -> np.ndarray:
        """Return how each instance's balance moved."""
        return self.minted + self.from_pool - self.spent - self.to_pool


def interval_earnings(vcpus: np.ndarray, baseline_bps: np.ndarray, seconds: int) -> np.ndarray:
    """Return what each instance earns in ``seconds`` at its tier's baseline, rounded down.

    ``vcpus * baseline_bps * seconds // 600`` milli-credits, as ``BurstableAccountant``
    books it.
    """
    return np.asarray(vcpus, dtype=_INT) * np.asarray(baseline_bps, dtype=_INT) * seconds // 600


def interval_demand(vcpus: np.ndarray, cpu_micro: np.ndarray, seconds: int) -> np.ndarray:
    """Return the milli-credits each instance used in ``seconds`` at ``cpu_micro``.

    ``cpu_micro`` is utilisation in millionths of a percent of the instance's vCPUs; the
    exact ``vcpus * cpu_micro * seconds / 6_000_000`` is rounded half up.
    """
    scaled = np.asarray(vcpus, dtype=_INT) * np.asarray(cpu_micro, dtype=_INT) * seconds
    denominator = 6 * MICRO_PERCENT
    return (2 * scaled + denominator) // (2 * denominator)


def cpu_micro_of(cpu_percent: np.ndarray) -> np.ndarray:
    """Return utilisation percentages as integer millionths of a percent (nearest)."""
    return np.rint(np.asarray(cpu_percent, dtype=np.float64) * MICRO_PERCENT).astype(_INT)


def _int_array(name: str, values: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (size,):
        raise InvalidParameter(name, array.shape, f"must be a 1-d array of {size}")
    if array.dtype.kind not in "iu":
        raise InvalidParameter(name, str(array.dtype), "must hold integers (milli-credits)")
    array = array.astype(_INT, copy=False)
    if size and array.min() < 0:
        raise InvalidParameter(name, int(array.min()), "must not be negative")
    return array


def _drawn(
    draw: PoolRule, want: np.ndarray, pool: np.ndarray, segments: TierSegments
) -> np.ndarray:
    """Return what the pool rule ``draw`` serves of ``want``, checked against what each
    instance wanted and what each pool holds."""
    from_pool = np.asarray(draw(want, pool, segments), dtype=_INT)
    if (
        from_pool.shape != want.shape
        or (from_pool < 0).any()
        or (from_pool > want).any()
        or (segments.total(from_pool) > pool).any()
    ):
        raise InvalidParameter("draw", getattr(draw, "__name__", draw), "served what it may not")
    return from_pool


def accrue_interval(
    *,
    balance: np.ndarray,
    earned: np.ndarray,
    demand: np.ndarray,
    cap: np.ndarray,
    pool_draw: np.ndarray,
    segments: TierSegments,
    pool: np.ndarray,
    pool_capacity: np.ndarray,
    draw: PoolRule = draw_pro_rata,
) -> IntervalBooking:
    """Book one interval of every instance: earn, spend, draw on the pool, cap, overflow.

    Parameters
    ----------
    balance, earned, demand, cap
        Per instance, in milli-credits: the balance before the interval, what the
        interval earns at the tier's baseline, what it used, and the balance cap.
    pool_draw
        Per instance, whether it may draw on its tier's pool.
    segments
        Which tier each instance belongs to (instances grouped by tier).
    pool, pool_capacity
        Per tier: the pool's balance before the interval and its capacity.
    draw
        The pool rule that shares a short pool among the instances that want it;
        :func:`draw_pro_rata` by default (a priced pool plugs in here).

    Returns
    -------
    IntervalBooking
        Per instance and per pool, what the interval did.

    Raises
    ------
    InvalidParameter
        For arrays of the wrong shape, non-integer or negative amounts, or a pool rule
        that serves more than was wanted or than a pool holds.
    """
    n, k = len(segments.tier_of), segments.tiers
    balance = _int_array("balance", balance, n)
    earned = _int_array("earned", earned, n)
    demand = _int_array("demand", demand, n)
    cap = _int_array("cap", cap, n)
    pool = _int_array("pool", pool, k)
    pool_capacity = _int_array("pool_capacity", pool_capacity, k)
    may_draw = np.asarray(pool_draw, dtype=bool)
    if may_draw.shape != (n,):
        raise InvalidParameter("pool_draw", may_draw.shape, f"must be a 1-d array of {n}")
    own = balance + earned
    deficit = np.maximum(0, demand - own)
    want = np.where(may_draw, deficit, 0)
    from_pool = _drawn(draw, want, pool, segments)
    drawn = segments.total(from_pool)
    throttled = deficit - from_pool
    spent = demand - throttled
    net = own + from_pool - spent
    # only this interval's net earnings are capped: bought credits above the cap stay
    overflow = np.maximum(0, np.minimum(net - cap, earned - spent))
    headroom = np.maximum(0, pool_capacity - (pool - drawn))
    to_pool = draw_in_order(overflow, headroom, segments)
    forfeited = overflow - to_pool
    return IntervalBooking(
        earned=earned,
        demand=demand,
        spent=spent,
        to_pool=to_pool,
        from_pool=from_pool,
        forfeited=forfeited,
        throttled=throttled,
        balance=net - overflow,
        pool=pool - drawn + segments.total(to_pool),
    )
