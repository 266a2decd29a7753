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
(``Fraction``) until the final rounding to an integer price on the tier's tick.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median_low

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


def _floor_tick(value: Fraction | int, tick: int) -> int:
    return int(value // tick) * tick


def _ceil_tick(value: Fraction | int, tick: int) -> int:
    return int(-(-value // tick)) * tick


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
    if type(throttle_cost) is not int or throttle_cost <= 0:
        raise InvalidAgentInput("throttle_cost", throttle_cost, "must be a positive int")
    if type(tick_size) is not int or tick_size <= 0:
        raise InvalidAgentInput("tick_size", tick_size, "must be a positive int")
    quantile = _unit_interval("quantile", quantile)
    scarcity = _unit_interval("scarcity", scarcity)
    uncertainty = _unit_interval("uncertainty", uncertainty)
    anchor = clearing_anchor(recent_prices, throttle_cost)
    market_value = anchor * (scarcity + _HALF)
    bid_value = market_value + anchor * uncertainty / 2
    keep_value = (
        Fraction(0) if overflows_cap else throttle_cost * (1 - quantile) * (1 + uncertainty)
    )
    bid_ceiling = throttle_cost if max_bid is None else min(throttle_cost, max_bid)
    bid = _floor_tick(bid_value if bid_value < bid_ceiling else bid_ceiling, tick_size)
    ask_floor: Fraction | int = max(min_ask or 0, tick_size)
    if keep_value > ask_floor:
        ask_floor = keep_value
    ask = _ceil_tick(market_value if market_value > ask_floor else ask_floor, tick_size)
    return Valuation(
        anchor=anchor,
        scarcity=scarcity,
        uncertainty=uncertainty,
        market_value=market_value,
        bid_value=bid_value,
        keep_value=keep_value,
        bid_price=bid if bid >= tick_size else None,
        ask_price=ask,
    )
