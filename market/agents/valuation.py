"""The valuation behind every limit price a Virtual Instance Agent sets: the owner's value.

A credit is one vCPU at 100 % for one minute. An instance that lacks one credit is
throttled to its baseline for one vCPU-minute, so its owner states what a throttled
minute costs them: their **value** (minor currency units per credit). A credit is worth
to its owner its value times the chance that the instance will use it within the
horizon; the agent reads that chance off its demand forecast's quantiles, in three
tranches of the credits it holds or lacks:

* **need**: credits the median (q50) forecast uses; each is used with a chance of at
  least one half, so they are worth ``value * (1 + 1/2) / 2`` (``3/4`` of the value);
* **band**: credits only the upper quantile (q90) uses; a chance between ``1 - 9/10``
  and one half, so ``value * (1/10 + 1/2) / 2`` (``3/10``);
* **tail**: credits beyond the upper quantile; a chance below ``1 - q``, so
  ``value * (1 - q)``, and nothing at all when the balance overflows its cap within the
  horizon (those credits would be thrown away).

An agent asks no less for a credit than keeping it is worth (its *keep value*, rounded
up to the tick) and bids no more than it is worth to it (its *bid value*, net of the
buyer's fee, rounded down to the tick); the owner's ``max_bid`` and ``min_ask`` bound
both. Prices come from the owner's value and the forecast alone, never from the last
clearing price: a market whose bids are anchored on the last price can only climb. What
the market's recent prices tell an agent is *which* tranche is worth offering: it sells
everything it holds when the expected price is above what its needed credits are worth
to it, only its band and tail when the price is above the band's worth, and only its
tail otherwise (:func:`ask_tranche`).

All arithmetic is exact (integers over a common denominator) until the final rounding to
an integer price on the tier's tick. :func:`tranche_prices` prices many agents at once
(arrays over instances); :func:`value_credit` prices one and returns the figures behind
its prices. Both round through the same code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median_low

import numpy as np

from market.errors import InvalidAgentInput
from market.units import BPS

NEED_SHARE = Fraction(3, 4)
"""What a credit the median forecast uses is worth, as a share of the owner's value."""


def band_share(upper_quantile: Fraction) -> Fraction:
    """Return the worth of a credit only the upper quantile uses, as a share of the value."""
    return ((1 - upper_quantile) + Fraction(1, 2)) / 2


def tail_share(upper_quantile: Fraction) -> Fraction:
    """Return the worth of a credit beyond the upper quantile, as a share of the value."""
    return 1 - upper_quantile


@dataclass(frozen=True, slots=True)
class Valuation:
    """The prices one decision works out, and the figures they came from.

    ``expected_price`` is what the agent expects a credit to clear at (the median of
    the tier's recent clearing prices, or half its value); ``bid_value`` and
    ``keep_value`` are the worth of the tranche it bids for and offers.
    """

    value: int
    expected_price: Fraction
    scarcity: Fraction
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


def clearing_anchor(recent_prices: Sequence[int], value: int) -> Fraction:
    """Return the price an agent expects a credit to clear at.

    The lower median of the tier's recent clearing prices keeps it an observed price;
    without trades it is half the owner's value.
    """
    if not recent_prices:
        return Fraction(value, 2)
    for price in recent_prices:
        if type(price) is not int or price <= 0:
            raise InvalidAgentInput("clearing price", price, "must be a positive int")
    # every agent of a tier reads the same recent prices in an interval
    return _median_anchor(tuple(recent_prices))


@functools.lru_cache(maxsize=64)
def _median_anchor(recent_prices: tuple[int, ...]) -> Fraction:
    return Fraction(median_low(recent_prices))


def expected_price(recent_prices: Sequence[int], value: int, scarcity: Fraction) -> Fraction:
    """Return the price an agent expects: the anchor, raised or lowered by the tier's scarcity.

    ``scarcity`` is ``1/2`` for a balanced tier (the anchor as it is), ``1`` for an empty
    pool (half as much again) and ``0`` for a full one (half of it).
    """
    scale = _unit_interval("scarcity", scarcity) + Fraction(1, 2)
    return clearing_anchor(recent_prices, value) * scale


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


def _check_prices(tick_size: int, fee_bps: int) -> None:
    if type(tick_size) is not int or tick_size <= 0:
        raise InvalidAgentInput("tick_size", tick_size, "must be a positive int")
    if type(fee_bps) is not int or not 0 <= fee_bps < BPS:
        raise InvalidAgentInput("fee_bps", fee_bps, f"must be an int in [0, {BPS})")


def _check_values(value: np.ndarray) -> np.ndarray:
    values = np.asarray(value)
    if values.ndim != 1 or (values.size and (values.dtype.kind not in "iu" or values.min() <= 0)):
        raise InvalidAgentInput("value", "non-positive", "owner values must be positive ints")
    return values.astype(np.int64)


def bid_prices(
    value: np.ndarray,
    share: Fraction,
    *,
    fee_bps: int,
    tick_size: int = 1,
    max_bid: int | None = None,
) -> np.ndarray:
    """Return the highest bid on the tick whose price plus the buyer's fee stays within worth.

    Worth is ``value * share`` per credit; the buyer pays the price plus ``fee_bps`` of
    it, so the bid is ``value * share * BPS / (BPS + fee_bps)`` rounded down to the
    tick, and no more than ``max_bid``. ``0`` where no positive price on the tick fits.
    """
    _check_prices(tick_size, fee_bps)
    values = _check_values(value).astype(object)
    share = _unit_interval("share", share)
    numerator = values * share.numerator * BPS
    denominator = share.denominator * (BPS + fee_bps) * tick_size
    bids = (numerator // denominator * tick_size).astype(np.int64)
    if max_bid is not None:
        bids = np.minimum(bids, max_bid // tick_size * tick_size)
    return np.where(bids >= tick_size, bids, 0)


def ask_prices(
    value: np.ndarray,
    share: Fraction,
    *,
    tick_size: int = 1,
    min_ask: int | None = None,
    worthless: np.ndarray | None = None,
) -> np.ndarray:
    """Return the lowest ask on the tick that is no less than the keep value ``value * share``.

    Rows marked ``worthless`` (credits the cap would throw away) keep nothing and ask
    one tick; ``min_ask`` bounds every ask from below.
    """
    _check_prices(tick_size, 0)
    values = _check_values(value).astype(object)
    share = _unit_interval("share", share)
    numerator = values * share.numerator
    denominator = share.denominator * tick_size
    asks = (-((-numerator) // denominator) * tick_size).astype(np.int64)
    if worthless is not None:
        asks = np.where(np.asarray(worthless, dtype=bool), 0, asks)
    floor = max(min_ask or 0, tick_size)
    floor = -(-floor // tick_size) * tick_size
    return np.maximum(asks, floor)


def value_credit(
    *,
    value: int,
    upper_quantile: Fraction,
    recent_prices: Sequence[int],
    scarcity: Fraction,
    bid_share: Fraction,
    keep_share: Fraction,
    overflows_cap: bool = False,
    fee_bps: int = 0,
    tick_size: int = 1,
    max_bid: int | None = None,
    min_ask: int | None = None,
) -> Valuation:
    """Work out one agent's bid and ask limit prices and the figures behind them.

    ``bid_share`` and ``keep_share`` are the worth of the tranches bid for and offered
    (:data:`NEED_SHARE`, :func:`band_share`, :func:`tail_share`); a tail offered while
    the balance overflows its cap keeps nothing.

    Raises
    ------
    InvalidAgentInput
        For a non-positive value or tick, or a fraction outside ``[0, 1]``.
    """
    if type(value) is not int or value <= 0:
        raise InvalidAgentInput("value", value, "must be a positive int")
    _unit_interval("upper_quantile", upper_quantile)
    row = np.array([value], dtype=np.int64)
    worthless = overflows_cap and keep_share == tail_share(upper_quantile)
    bid = int(bid_prices(row, bid_share, fee_bps=fee_bps, tick_size=tick_size, max_bid=max_bid)[0])
    ask = int(
        ask_prices(
            row,
            keep_share,
            tick_size=tick_size,
            min_ask=min_ask,
            worthless=np.array([worthless]),
        )[0]
    )
    return Valuation(
        value=value,
        expected_price=expected_price(recent_prices, value, scarcity),
        scarcity=scarcity,
        bid_value=value * bid_share,
        keep_value=Fraction(0) if worthless else value * keep_share,
        bid_price=bid or None,
        ask_price=ask,
    )
