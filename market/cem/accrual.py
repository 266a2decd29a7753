"""One interval of burstable accounting for many instances at once (numpy ``int64``, exact).

:func:`accrue_interval` is :func:`market.cem.accounting.plan_interval` over a fleet: per
instance, in milli-credits, the balance earns ``earned`` and pays ``demand``; what it
cannot pay is drawn from the tier's pool by instances allowed to draw (``pool_draw``),
shared among the instances short in the same interval by a *pool rule*
(:func:`draw_pro_rata`, the patent's free pool shared fairly, by default); what is still
short is throttled. The balance is then capped at ``cap`` (24 hours of earnings): only
this interval's net earnings are capped, and what overflows goes to the pool as far as
its capacity allows after the interval's draws, in instance order, the rest forfeited.
Optionally a tier's hosts bound what it serves (``host_capacity``) and some instances
lend the pool what they hold (``lend``): what the replay's market policies do.

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

from dataclasses import dataclass

import numpy as np

from market.cem.pool_rules import Conversions, PoolDraw, PoolRule, draw_in_order, draw_pro_rata
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


@dataclass(frozen=True, slots=True)
class IntervalBooking:
    """What one interval did to each instance (arrays over instances) and to each pool.

    All in milli-credits. ``earned - forfeited`` was minted, ``spent`` burnt; each
    balance changed by ``earned - forfeited + from_pool - spent - to_pool - lent`` and
    each pool by its tier's ``to_pool + lent - from_pool`` and what it converted for the
    other pools (``conversions``).
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
    lent: np.ndarray
    conversions: Conversions

    @property
    def minted(self) -> np.ndarray:
        """Return what each instance's earnings minted (earned less forfeited)."""
        return self.earned - self.forfeited

    @property
    def change(self) -> np.ndarray:
        """Return how each instance's balance moved."""
        return self.minted + self.from_pool - self.spent - self.to_pool - self.lent


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


def _mask(name: str, values: np.ndarray, size: int) -> np.ndarray:
    mask = np.asarray(values, dtype=bool)
    if mask.shape != (size,):
        raise InvalidParameter(name, mask.shape, f"must be a 1-d array of {size}")
    return mask


def serve_hosts(allowed: np.ndarray, capacity: np.ndarray, segments: TierSegments) -> np.ndarray:
    """Return what each instance is served when each tier's hosts serve at most ``capacity``.

    The hosts share their capacity as a short free pool shares its level
    (:func:`~market.cem.pool_rules.draw_pro_rata`): a tier asking for more serves every
    instance ``allowed * capacity // total`` and the rounding remainder one milli-credit
    each, in instance order.
    """
    return draw_pro_rata(allowed, capacity, segments)


def _drawn(draw: PoolRule, want: np.ndarray, pool: np.ndarray, segments: TierSegments) -> PoolDraw:
    """Return what the pool rule ``draw`` serves of ``want``, checked against what each
    instance wanted and what each pool holds with what the others converted into it."""
    found = draw(want, pool, segments)
    drew = found if isinstance(found, PoolDraw) else PoolDraw(found, Conversions.none(len(pool)))
    from_pool = np.asarray(drew.from_pool, dtype=_INT)
    if (
        from_pool.shape != want.shape
        or (from_pool < 0).any()
        or (from_pool > want).any()
        or (segments.total(from_pool) > pool + drew.conversions.shift).any()
        or (drew.conversions.out > pool).any()
    ):
        raise InvalidParameter("draw", getattr(draw, "__name__", draw), "served what it may not")
    return PoolDraw(from_pool, drew.conversions)


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
    host_capacity: np.ndarray | None = None,
    lend: np.ndarray | None = None,
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
        The pool rule that shares a short pool among the instances that want it
        (:mod:`market.cem.pool_rules`); :func:`draw_pro_rata` by default.
    host_capacity
        Per tier, the most its hosts serve in the interval (milli-credits): a tier
        asking for more serves each instance its share (:func:`serve_hosts`), what it
        drew from the pool cut first. Unbounded without.
    lend
        Per instance, whether it lends the pool all it holds after the interval, as far
        as the pool has room once the overflow is in (an owner who values a credit
        below what the pool charges, or who sold all it held).

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
    balance, earned, demand, cap = (
        _int_array("balance", balance, n),
        _int_array("earned", earned, n),
        _int_array("demand", demand, n),
        _int_array("cap", cap, n),
    )
    pool, pool_capacity = _int_array("pool", pool, k), _int_array("pool_capacity", pool_capacity, k)
    may_draw = _mask("pool_draw", pool_draw, n)
    own = balance + earned
    deficit = np.maximum(0, demand - own)
    drew = _drawn(draw, np.where(may_draw, deficit, 0), pool, segments)
    from_pool, shift = drew.from_pool, drew.conversions.shift
    spent = demand - deficit + from_pool
    if host_capacity is not None:
        spent = serve_hosts(spent, _int_array("host_capacity", host_capacity, k), segments)
        from_pool = np.maximum(0, spent - own)
    drawn = segments.total(from_pool)
    net = own + from_pool - spent
    # only this interval's net earnings are capped: bought credits above the cap stay
    overflow = np.maximum(0, np.minimum(net - cap, earned - spent))
    headroom = np.maximum(0, pool_capacity - (pool - drawn + shift))
    to_pool = draw_in_order(overflow, headroom, segments)
    lent = np.zeros(n, dtype=_INT)
    if lend is not None:
        lendable = np.where(_mask("lend", lend, n), net - overflow, 0)
        lent = draw_in_order(lendable, headroom - segments.total(to_pool), segments)
    return IntervalBooking(
        earned=earned,
        demand=demand,
        spent=spent,
        to_pool=to_pool,
        from_pool=from_pool,
        forfeited=overflow - to_pool,
        throttled=demand - spent,
        balance=net - overflow - lent,
        pool=pool - drawn + shift + segments.total(to_pool + lent),
        lent=lent,
        conversions=drew.conversions,
    )
