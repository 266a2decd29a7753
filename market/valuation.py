"""The valuation behind every limit price a Virtual Instance Agent sets.

A credit is one vCPU at 100 % for one minute. An instance that lacks one credit is
throttled to its baseline for one vCPU-minute, so the owner states what a throttled
minute costs them, ``throttle_cost`` (minor currency units per credit lacked). That
is the most a credit can be worth to its owner, and the agent never bids above it.

A surplus credit is one the instance's upper-quantile need (quantile ``q``, e.g. q90)
says it will not use. It is worth keeping only in case demand lands in the tail beyond
that quantile, so its *keep value* is ``throttle_cost * (1 - q)``; and it is worth
nothing when the balance would overflow its cap anyway (earnings above the cap are
forfeited), so then its keep value is zero. The agent never asks less than the keep
value.

Between those two bounds the market sets the price. With

* ``anchor``: the median of the tier's recent clearing prices, or ``throttle_cost / 2``
  when nothing traded yet;
* ``scarcity`` in ``[0, 1]``: how short the tier's credits are (``1/2`` is balanced;
  :func:`pool_scarcity` reads it from the tier's pool);
* ``uncertainty`` in ``[0, 1]``: ``(need_high - need_mid) / need_high``, the relative
  spread of the forecast need between its upper quantile and its median;

the *market value* of a credit is ``anchor * (1 + (scarcity - 1/2))``: scarce credits
cost more. Uncertainty moves each side away from it in its own way. A short instance
whose forecast is wide may lack more than planned, so it pays up for insurance: its
bid value is ``anchor * (1 + (scarcity - 1/2) + uncertainty / 2)``. A long instance's
surplus is a buffer against the tail, worth more when the forecast is wide: its keep
value grows to ``throttle_cost * (1 - q) * (1 + uncertainty)``. So::

    bid = min(throttle_cost, max_bid, bid value)     rounded down to the tick
    ask = max(keep value, min_ask, market value)     rounded up to the tick

Both rise with scarcity and with uncertainty, and a confident seller asks the market
value an uncertain buyer bids above, so they meet. All arithmetic is exact
(``Fraction``, or integers over a common denominator) until the final rounding to an
integer price on the tier's tick.

:func:`credit_prices` prices a whole group of agents that read the same market at
once (arrays over instances, exact Python integers); :func:`value_credit` prices one
and returns the figures behind the prices. Both round through the same code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median_low

import numpy as np

from market.decisions import InvalidAgentInput

_HALF = Fraction(1, 2)


@dataclass(frozen=True, slots=True)
class Valuation:
    """The prices one decision works out, and the figures they came from."""

    anchor: Fraction
    scarcity: Fraction
    uncertainty: Fraction
    market_value: Fraction
    bid_value: Fraction
    keep_value: Fraction
    bid_price: int | None
    ask_price: int


def _unit_interval(name: str, value: Fraction) -> Fraction:
    if type(value) is Fraction and 0 <= value.numerator <= value.denominator:
        return value  # the common case, checked without building new fractions
    if not isinstance(value, Fraction | int) or isinstance(value, bool):
        raise InvalidAgentInput(name, value, "must be an exact Fraction or int")
    if not 0 <= value <= 1:
        raise InvalidAgentInput(name, value, "must lie in [0, 1]")
    return Fraction(value)


def clearing_anchor(recent_prices: Sequence[int], throttle_cost: int) -> Fraction:
    """Return the price a credit trades around: the median of recent clearing prices.

    The lower median keeps the anchor an observed price; without trades the anchor is
    half the throttle cost.
    """
    if not recent_prices:
        return Fraction(throttle_cost, 2)
    for price in recent_prices:
        if type(price) is not int or price <= 0:
            raise InvalidAgentInput("clearing price", price, "must be a positive int")
    # every agent of a tier reads the same recent prices in an interval
    return _median_anchor(tuple(recent_prices))


@functools.lru_cache(maxsize=64)
def _median_anchor(recent_prices: tuple[int, ...]) -> Fraction:
    return Fraction(median_low(recent_prices))


def forecast_uncertainty(need_mid: int, need_high: int) -> Fraction:
    """Return the relative spread ``(need_high - need_mid) / need_high``, in ``[0, 1]``."""
    if need_high <= 0:
        return Fraction(0)
    return min(Fraction(1), Fraction(max(0, need_high - need_mid), need_high))


def pool_scarcity(available: int, capacity: int) -> Fraction:
    """Return how scarce a tier's credits are: the share of its pool's capacity not held.

    ``0`` for a full pool, ``1`` for an empty one or a tier without spare capacity.
    Every agent of a tier reads the same figure, whatever orders it holds itself.
    """
    if available < 0 or capacity < 0:
        raise InvalidAgentInput("pool", (available, capacity), "holds a negative amount")
    if capacity == 0:
        return Fraction(1)
    return Fraction(max(0, capacity - available), capacity)


def value_credit(
    *,
    throttle_cost: int,
    quantile: Fraction,
    recent_prices: Sequence[int],
    scarcity: Fraction,
    uncertainty: Fraction,
    overflows_cap: bool,
    tick_size: int = 1,
    max_bid: int | None = None,
    min_ask: int | None = None,
) -> Valuation:
    """Work out the bid and ask limit prices of one credit (minor units per credit).

    Parameters
    ----------
    throttle_cost
        What a throttled vCPU-minute costs the owner, minor units; the bid ceiling.
    quantile
        The upper quantile the surplus is measured against (``9/10`` for q90).
    recent_prices
        The tier's recent clearing prices, any order.
    scarcity, uncertainty
        Exact fractions in ``[0, 1]``; see the module docstring.
    overflows_cap
        Whether the balance reaches its cap within the horizon (surplus then keeps nothing).
    tick_size
        Prices are positive multiples of it.
    max_bid, min_ask
        The owner's limits; ``None`` for none.

    Returns
    -------
    Valuation
        ``bid_price`` is ``None`` when no positive price on the tick is allowed.

    Raises
    ------
    InvalidAgentInput
        For a non-positive throttle cost or tick, or a fraction outside ``[0, 1]``.
    """
    _check_prices(throttle_cost, tick_size)
    quantile = _unit_interval("quantile", quantile)
    scarcity = _unit_interval("scarcity", scarcity)
    uncertainty = _unit_interval("uncertainty", uncertainty)
    anchor = clearing_anchor(recent_prices, throttle_cost)
    market_value = anchor * (scarcity + _HALF)
    bid_value = market_value + anchor * uncertainty / 2
    keep_value = (
        Fraction(0) if overflows_cap else throttle_cost * (1 - quantile) * (1 + uncertainty)
    )
    bids, asks = _prices(
        throttle_cost=throttle_cost,
        quantile=quantile,
        anchor=anchor,
        scarcity=scarcity,
        spread=np.array([uncertainty.numerator], dtype=object),
        need=np.array([uncertainty.denominator], dtype=object),
        overflows_cap=np.array([overflows_cap]),
        tick_size=tick_size,
        max_bid=max_bid,
        min_ask=min_ask,
    )
    bid, ask = int(bids[0]), int(asks[0])
    return Valuation(
        anchor=anchor,
        scarcity=scarcity,
        uncertainty=uncertainty,
        market_value=market_value,
        bid_value=bid_value,
        keep_value=keep_value,
        bid_price=bid or None,
        ask_price=ask,
    )


def credit_prices(
    *,
    throttle_cost: int,
    quantile: Fraction,
    recent_prices: Sequence[int],
    scarcity: Fraction,
    need_mid: np.ndarray,
    need_high: np.ndarray,
    overflows_cap: np.ndarray,
    tick_size: int = 1,
    max_bid: int | None = None,
    min_ask: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Work out the bid and ask limit prices of many agents that read one market.

    Each agent's uncertainty is :func:`forecast_uncertainty` of its ``need_mid`` and
    ``need_high`` (integer arrays, milli-credits); ``overflows_cap`` is a boolean array.
    The other parameters are those of :func:`value_credit`, shared by every agent.

    Returns
    -------
    tuple of numpy.ndarray
        ``(bid_prices, ask_prices)``, int64; a bid price of ``0`` means no positive
        price on the tick is allowed (``None`` in :func:`value_credit`).

    Raises
    ------
    InvalidAgentInput
        As :func:`value_credit`, or for arrays of different lengths.
    """
    _check_prices(throttle_cost, tick_size)
    high = np.asarray(need_high, dtype=np.int64)
    mid = np.asarray(need_mid, dtype=np.int64)
    overflows = np.asarray(overflows_cap, dtype=bool)
    if not high.shape == mid.shape == overflows.shape or high.ndim != 1:
        raise InvalidAgentInput(
            "need arrays", (mid.shape, high.shape, overflows.shape), "must be 1-d of one length"
        )
    # (high - mid) / high clipped to [0, 1], and 0 / 1 where nothing is needed
    positive = high > 0
    spread = np.where(positive, np.clip(high - mid, 0, np.maximum(high, 0)), 0)
    bids, asks = _prices(
        throttle_cost=throttle_cost,
        quantile=_unit_interval("quantile", quantile),
        anchor=clearing_anchor(recent_prices, throttle_cost),
        scarcity=_unit_interval("scarcity", scarcity),
        spread=spread.astype(object),
        need=np.where(positive, high, 1).astype(object),
        overflows_cap=overflows,
        tick_size=tick_size,
        max_bid=max_bid,
        min_ask=min_ask,
    )
    return bids.astype(np.int64), asks.astype(np.int64)


def _check_prices(throttle_cost: int, tick_size: int) -> None:
    if type(throttle_cost) is not int or throttle_cost <= 0:
        raise InvalidAgentInput("throttle_cost", throttle_cost, "must be a positive int")
    if type(tick_size) is not int or tick_size <= 0:
        raise InvalidAgentInput("tick_size", tick_size, "must be a positive int")


def _prices(
    *,
    throttle_cost: int,
    quantile: Fraction,
    anchor: Fraction,
    scarcity: Fraction,
    spread: np.ndarray,
    need: np.ndarray,
    overflows_cap: np.ndarray,
    tick_size: int,
    max_bid: int | None,
    min_ask: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    # Uncertainty is spread / need (object arrays of Python ints, so nothing overflows):
    # each price is one fraction over a common denominator, floored or ceiled to the tick.
    market_value = anchor * (scarcity + _HALF)
    half_anchor = anchor / 2
    m, dm = market_value.numerator, market_value.denominator
    h, dh = half_anchor.numerator, half_anchor.denominator
    # bid value = m/dm + (h/dh) * spread/need, over dm * dh * need
    denominator = dm * dh * need
    bid_value = m * dh * need + h * dm * spread
    ceiling = throttle_cost if max_bid is None else min(throttle_cost, max_bid)
    bid_value = np.minimum(bid_value, ceiling * denominator)
    bids = bid_value // (denominator * tick_size) * tick_size
    # ask = max(market value, min_ask, tick, keep value), over df * dk * need with
    # keep value = k/dk * (need + spread)/need, or 0 when the balance overflows its cap
    keep = throttle_cost * (1 - quantile)
    k, dk = keep.numerator, keep.denominator
    floor = max(market_value, Fraction(max(min_ask or 0, tick_size)))
    f, df = floor.numerator, floor.denominator
    keep_value = np.where(overflows_cap, 0, k * df * (need + spread))
    ask_value = np.maximum(f * dk * need, keep_value)
    asks = -((-ask_value) // (df * dk * need * tick_size)) * tick_size
    return np.where(bids >= tick_size, bids, 0), asks
