"""The call auction: collect orders, then clear them all at once.

Uniform-price mode (the default)
--------------------------------
Every trade happens at one clearing price ``p``. At ``p`` the demand ``D(p)`` is the
quantity bid at ``p`` or higher and the supply ``S(p)`` the quantity asked at ``p`` or
lower; the matched volume is ``min(D(p), S(p))``. The clearing price is the on-tick
price that

1. maximises the matched volume, then
2. leaves the least imbalance ``|D(p) - S(p)|``, then
3. lies nearest the previous clearing price (when one is given), then
4. is the lowest such price.

``D`` and ``S`` only change at limit prices, so the candidates are every limit price,
one tick either side of it and the previous price; the brute-force reference in the
tests checks this against every tick.

Rationing at the margin: each side is filled in price-time priority (best price first,
then the order that arrived first, i.e. its position in the input) until the matched
volume is used up, so on the long side only orders at the clearing price can go short,
and of those the latest arrivals first; one order at most is filled partially.

Buy fills and sell fills are then paired in the same priority order into trades, each
worth ``quantity * price // 1000`` with the buyer's fee on top (see
:mod:`market.venue.orders`).

McAfee trade-reduction mode
---------------------------
For users who want truthful bidding to be each order's best strategy (McAfee, 1992).
Sort bids by price-time priority (``b1 >= b2 >= ...``) and asks likewise
(``s1 <= s2 <= ...``) and match them greedily while the bid covers the ask; the last
bid ``b_k`` and the last ask ``s_l`` that take part are the marginal orders. If the
first bid and ask left out both exist, let ``p0`` be their midpoint rounded down to
the tick: when ``s_l <= p0 <= b_k`` everything matched trades at ``p0``. Otherwise the
two marginal orders are dropped; the rest trade (the long side rationed as above) with
buyers paying ``b_k`` per credit and sellers receiving ``s_l``. The exchange keeps the
difference, so the mechanism never runs a deficit. Quantities make this a
generalisation of McAfee's single-unit mechanism: it is truthful in price for orders
that do not set the margin.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import repeat
from operator import attrgetter, is_
from typing import NamedTuple

import numpy as np

from market.errors import InvalidAuction, InvalidOrder
from market.units import BPS, MILLI_PER_CREDIT
from market.venue.orders import Side, Trade, check_price, check_quantity


class AuctionMode(StrEnum):
    """How a call auction sets its prices."""

    UNIFORM = "uniform"
    MCAFEE = "mcafee"


@dataclass(frozen=True, slots=True)
class AuctionOrder:
    """One limit order collected for a call auction."""

    order_id: str
    owner: str
    side: Side
    price: int
    quantity: int


class Fill(NamedTuple):
    """How much of one order an auction filled, and the price per credit it trades at."""

    order_id: str
    owner: str
    side: Side
    quantity: int
    price: int


@dataclass(frozen=True, slots=True)
class _Allocation:
    """Who trades what with whom, as arrays; fills and trades are built from it."""

    orders: Sequence[AuctionOrder]
    bid_index: np.ndarray  # input positions of the filled bids, in priority order
    bid_fill: np.ndarray
    ask_index: np.ndarray
    ask_fill: np.ndarray
    buyer: np.ndarray  # per trade: input position of the buy order
    seller: np.ndarray
    quantity: np.ndarray
    is_buy: np.ndarray  # per input position: whether the order bids
    order_quantity: np.ndarray  # per input position: the order's quantity


_NOTHING = np.empty(0, dtype=np.int64)
_ORDER_ID = attrgetter("order_id")
_OWNER = attrgetter("owner")
_PRICE = attrgetter("price")
_QUANTITY = attrgetter("quantity")
_SIDE = attrgetter("side")


@dataclass(frozen=True, kw_only=True)
class AuctionResult:
    """The outcome of one call auction.

    ``clearing_price`` is the uniform price (``None`` when nothing trades, or when a
    McAfee reduction makes buyers and sellers trade at different prices, given by
    ``buy_price`` and ``sell_price``). ``demand`` and ``supply`` are the quantities bid
    and asked at prices that cross ``buy_price``/``sell_price``; the unmatched
    quantities are what every order of each side left unfilled.

    The clearing itself is arrays; :attr:`fills` and :attr:`trades` become objects the
    first time they are read.
    """

    auction_id: str
    tier: str
    mode: AuctionMode
    at: datetime
    clearing_price: int | None
    buy_price: int | None
    sell_price: int | None
    volume: int
    demand: int
    supply: int
    unmatched_bid_quantity: int
    unmatched_ask_quantity: int
    fee_bps: int
    allocation: _Allocation = field(repr=False, compare=False)

    @functools.cached_property
    def fills(self) -> tuple[Fill, ...]:
        """Return how much of each order traded, bids then asks in priority order."""
        if not self.volume:
            return ()
        a, orders = self.allocation, self.allocation.orders
        buy_price, sell_price = self.buy_price, self.sell_price
        assert buy_price is not None
        assert sell_price is not None
        bids = [
            Fill(orders[p].order_id, orders[p].owner, Side.BUY, q, buy_price)
            for p, q in zip(a.bid_index.tolist(), a.bid_fill.tolist(), strict=True)
        ]
        asks = [
            Fill(orders[p].order_id, orders[p].owner, Side.SELL, q, sell_price)
            for p, q in zip(a.ask_index.tolist(), a.ask_fill.tolist(), strict=True)
        ]
        return (*bids, *asks)

    @functools.cached_property
    def trades(self) -> tuple[Trade, ...]:
        """Return the trades pairing buy and sell fills in priority order."""
        if not self.volume:
            return ()
        a, orders = self.allocation, self.allocation.orders
        buy_price, sell_price = self.buy_price, self.sell_price
        assert buy_price is not None
        assert sell_price is not None
        quantity, value, fee, seller_value = self.trade_amounts()
        order_ids = list(map(_ORDER_ID, orders))
        owners = list(map(_OWNER, orders))
        buyer, seller = a.buyer.tolist(), a.seller.tolist()
        prefix = f"{self.auction_id}-"
        columns = (
            [f"{prefix}{n}" for n in range(1, len(buyer) + 1)],
            repeat(self.tier),
            repeat(buy_price),
            quantity.tolist(),
            map(order_ids.__getitem__, buyer),
            map(order_ids.__getitem__, seller),
            map(owners.__getitem__, buyer),
            map(owners.__getitem__, seller),
            value.tolist(),
            fee.tolist(),
            repeat(self.at),
            repeat(None),
            seller_value.tolist() if buy_price != sell_price else repeat(None),
        )
        # the rows are built whole, so the named tuple's own constructor is skipped
        return tuple(map(tuple.__new__, repeat(Trade), zip(*columns, strict=False)))

    def trade_amounts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return per trade, in :attr:`trades` order: quantity, value, fee, seller's value.

        Exact integers, rounded down as :func:`market.units.trade_value` and
        :func:`market.units.trade_fee` round them (int64 arrays, or Python integers in
        object arrays where int64 could overflow).
        """
        quantity = self.allocation.quantity
        if not self.volume:
            return quantity, quantity, quantity, quantity
        buy_price, sell_price = self.buy_price, self.sell_price
        assert buy_price is not None
        assert sell_price is not None
        if int(quantity.max()) * max(buy_price, sell_price) * max(self.fee_bps, 1) >= 2**62:
            quantity = quantity.astype(object)
        value = quantity * buy_price // MILLI_PER_CREDIT
        fee = value * self.fee_bps // BPS
        seller_value = (
            value if buy_price == sell_price else quantity * sell_price // MILLI_PER_CREDIT
        )
        return quantity, value, fee, seller_value

    def order_fills(self) -> np.ndarray:
        """Return the quantity filled of every order, in the order the auction took them.

        Compare with ``allocation.order_quantity`` to tell filled orders from the rest.
        """
        a = self.allocation
        filled = np.zeros(len(a.orders), dtype=np.int64)
        filled[a.bid_index] = a.bid_fill
        filled[a.ask_index] = a.ask_fill
        return filled

    @property
    def surplus(self) -> int:
        """Return the minor units buyers pay beyond what sellers receive (McAfee)."""
        return sum(t.value - t.seller_receives for t in self.trades)


@dataclass(frozen=True, slots=True)
class _Side:
    """One side's orders sorted in price-time priority."""

    index: np.ndarray  # positions in the input list
    price: np.ndarray
    quantity: np.ndarray


def _sorted_side(prices: np.ndarray, quantities: np.ndarray, positions: np.ndarray, buy: bool):
    # lexsort sorts by the last key first; ties keep arrival order through `positions`
    order = np.lexsort((positions, -prices if buy else prices))
    return _Side(positions[order], prices[order], quantities[order])


def curves(
    bid_prices: np.ndarray,
    bid_quantities: np.ndarray,
    ask_prices: np.ndarray,
    ask_quantities: np.ndarray,
    prices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the cumulative demand ``D(p)`` and supply ``S(p)`` at each of ``prices``."""
    bo = np.argsort(bid_prices, kind="stable")
    bp = bid_prices[bo]
    bcum = np.concatenate(([0], np.cumsum(bid_quantities[bo])))
    demand = bcum[-1] - bcum[np.searchsorted(bp, prices, side="left")]
    ao = np.argsort(ask_prices, kind="stable")
    ap = ask_prices[ao]
    acum = np.concatenate(([0], np.cumsum(ask_quantities[ao])))
    supply = acum[np.searchsorted(ap, prices, side="right")]
    return demand, supply


def uniform_price(
    bid_prices: np.ndarray,
    bid_quantities: np.ndarray,
    ask_prices: np.ndarray,
    ask_quantities: np.ndarray,
    *,
    tick_size: int = 1,
    previous_price: int | None = None,
) -> tuple[int | None, int, int, int]:
    """Return ``(clearing_price, volume, demand, supply)`` of a uniform-price auction.

    The clearing price follows the rules of this module's docstring; it is ``None``
    with a volume of 0 when no bid crosses any ask.
    """
    if len(bid_prices) == 0 or len(ask_prices) == 0:
        return None, 0, int(bid_quantities.sum()), int(ask_quantities.sum())
    if int(bid_prices.max()) < int(ask_prices.min()):
        return None, 0, 0, 0
    limits = np.unique(np.concatenate((bid_prices, ask_prices)))
    candidates = [limits, limits - tick_size, limits + tick_size]
    if previous_price is not None and previous_price > 0 and previous_price % tick_size == 0:
        candidates.append(np.array([previous_price], dtype=np.int64))
    prices = np.unique(np.concatenate(candidates))
    prices = prices[prices > 0]
    demand, supply = curves(bid_prices, bid_quantities, ask_prices, ask_quantities, prices)
    volume = np.minimum(demand, supply)
    imbalance = np.abs(demand - supply)
    distance = np.zeros_like(prices) if previous_price is None else np.abs(prices - previous_price)
    # lexsort: the last key is the primary one
    best = int(np.lexsort((prices, distance, imbalance, -volume))[0])
    if volume[best] == 0:
        return None, 0, 0, 0
    return int(prices[best]), int(volume[best]), int(demand[best]), int(supply[best])


def _allocate(side: _Side, eligible: int, volume: int) -> np.ndarray:
    """Fill the first ``eligible`` orders of ``side`` in priority order up to ``volume``."""
    quantity = side.quantity[:eligible]
    before = np.cumsum(quantity) - quantity
    return np.clip(volume - before, 0, quantity)


class CallAuction:
    """A periodic call auction for one tier's credits.

    Parameters
    ----------
    tier
        The tier whose credits trade.
    tick_size
        Every limit and clearing price is a positive multiple of it.
    fee_bps
        The buyer's fee in basis points of each trade's value, rounded down.
    mode
        Uniform price (default) or McAfee trade reduction.
    """

    def __init__(
        self,
        tier: str,
        *,
        tick_size: int = 1,
        fee_bps: int = 0,
        mode: AuctionMode = AuctionMode.UNIFORM,
    ) -> None:
        if type(tick_size) is not int or tick_size <= 0:
            raise ValueError(f"tick_size must be a positive integer, got {tick_size!r}")
        if type(fee_bps) is not int or not 0 <= fee_bps < BPS:
            raise ValueError(f"fee_bps must be an integer in [0, 10000), got {fee_bps!r}")
        self.tier = tier
        self.tick_size = tick_size
        self.fee_bps = fee_bps
        self.mode = AuctionMode(mode)

    def clear(
        self,
        auction_id: str,
        orders: Sequence[AuctionOrder],
        *,
        at: datetime,
        previous_price: int | None = None,
    ) -> AuctionResult:
        """Clear ``orders`` (listed in arrival order) and return fills and trades.

        Raises
        ------
        InvalidAuction
            If an order id repeats, or a price or quantity is invalid or off the tick.
        """
        n = len(orders)
        raw_prices = list(map(_PRICE, orders))
        raw_quantities = list(map(_QUANTITY, orders))
        prices = np.array(raw_prices) if n else np.empty(0, dtype=np.int64)
        quantities = np.array(raw_quantities) if n else np.empty(0, dtype=np.int64)
        well_formed = (
            prices.dtype == np.int64
            and quantities.dtype == np.int64
            and bool((prices > 0).all() and (quantities > 0).all())
            and not bool((prices % self.tick_size).any())
            and len(set(map(_ORDER_ID, orders))) == n
        )
        if not well_formed:
            self._reject(orders)
        is_buy = np.fromiter(map(is_, map(_SIDE, orders), repeat(Side.BUY)), dtype=bool, count=n)
        positions = np.arange(n)
        bids = _sorted_side(prices[is_buy], quantities[is_buy], positions[is_buy], buy=True)
        asks = _sorted_side(prices[~is_buy], quantities[~is_buy], positions[~is_buy], buy=False)
        if self.mode is AuctionMode.UNIFORM:
            return self._uniform(auction_id, orders, bids, asks, at, previous_price)
        return self._mcafee(auction_id, orders, bids, asks, at)

    def _reject(self, orders: Sequence[AuctionOrder]) -> None:
        """Raise the error of the first malformed order."""
        seen: set[str] = set()
        for o in orders:
            if o.order_id in seen:
                raise InvalidAuction(f"order id {o.order_id!r} appears twice in the auction")
            seen.add(o.order_id)
            try:
                check_price(o.price)
                check_quantity(o.quantity)
            except InvalidOrder as exc:
                raise InvalidAuction(f"order {o.order_id!r}: {exc}") from exc
            if o.price % self.tick_size:
                raise InvalidAuction(
                    f"order {o.order_id!r}: price {o.price} is off the tick {self.tick_size}"
                )
        raise InvalidAuction("prices and quantities must be integers within int64")

    def _uniform(
        self,
        auction_id: str,
        orders: Sequence[AuctionOrder],
        bids: _Side,
        asks: _Side,
        at: datetime,
        previous_price: int | None,
    ) -> AuctionResult:
        price, volume, demand, supply = uniform_price(
            bids.price,
            bids.quantity,
            asks.price,
            asks.quantity,
            tick_size=self.tick_size,
            previous_price=previous_price,
        )
        if price is None:
            return self._result(auction_id, orders, bids, asks, at, None, None, 0, 0, 0)
        n_bids = int(np.searchsorted(-bids.price, -price, side="right"))
        n_asks = int(np.searchsorted(asks.price, price, side="right"))
        return self._result(
            auction_id, orders, bids, asks, at, price, price, volume, n_bids, n_asks, demand, supply
        )

    def _mcafee(
        self,
        auction_id: str,
        orders: Sequence[AuctionOrder],
        bids: _Side,
        asks: _Side,
        at: datetime,
    ) -> AuctionResult:
        # the efficient volume and the marginal orders, by the greedy walk
        bcum = np.cumsum(bids.quantity)
        acum = np.cumsum(asks.quantity)
        i = j = 0
        matched = 0
        nb, na = len(bids.price), len(asks.price)
        while i < nb and j < na and bids.price[i] >= asks.price[j]:
            matched = int(min(bcum[i], acum[j]))
            if bcum[i] == matched:
                i += 1
            if acum[j] == matched:
                j += 1
        if matched == 0:
            return self._result(auction_id, orders, bids, asks, at, None, None, 0, 0, 0)
        # marginal orders: the last bid and ask the walk touched
        k = int(np.searchsorted(bcum, matched, side="left"))
        m = int(np.searchsorted(acum, matched, side="left"))
        b_k, s_m = int(bids.price[k]), int(asks.price[m])
        if k + 1 < nb and m + 1 < na:
            p0 = (int(bids.price[k + 1]) + int(asks.price[m + 1])) // 2
            p0 -= p0 % self.tick_size
            if s_m <= p0 <= b_k:
                return self._result(
                    auction_id, orders, bids, asks, at, p0, p0, matched, k + 1, m + 1
                )
        reduced = int(min(bcum[k - 1] if k else 0, acum[m - 1] if m else 0))
        if reduced == 0:
            return self._result(auction_id, orders, bids, asks, at, None, None, 0, 0, 0)
        return self._result(auction_id, orders, bids, asks, at, b_k, s_m, reduced, k, m)

    def _result(
        self,
        auction_id: str,
        orders: Sequence[AuctionOrder],
        bids: _Side,
        asks: _Side,
        at: datetime,
        buy_price: int | None,
        sell_price: int | None,
        volume: int,
        n_bids: int,
        n_asks: int,
        demand: int | None = None,
        supply: int | None = None,
    ) -> AuctionResult:
        is_buy = np.zeros(len(orders), dtype=bool)
        is_buy[bids.index] = True
        order_quantity = np.zeros(len(orders), dtype=np.int64)
        order_quantity[bids.index] = bids.quantity
        order_quantity[asks.index] = asks.quantity
        bid_fill = _allocate(bids, n_bids, volume)
        ask_fill = _allocate(asks, n_asks, volume)
        bid_index = bids.index[:n_bids][bid_fill > 0]
        ask_index = asks.index[:n_asks][ask_fill > 0]
        if volume:
            buyer, seller, quantity = _pair(bids, asks, bid_fill, ask_fill)
        else:
            buyer = seller = quantity = _NOTHING
        allocation = _Allocation(
            orders,
            bid_index,
            bid_fill[bid_fill > 0],
            ask_index,
            ask_fill[ask_fill > 0],
            buyer,
            seller,
            quantity,
            is_buy,
            order_quantity,
        )
        total_bid = int(bids.quantity.sum())
        total_ask = int(asks.quantity.sum())
        uniform = buy_price if buy_price == sell_price else None
        return AuctionResult(
            auction_id=auction_id,
            tier=self.tier,
            mode=self.mode,
            at=at,
            clearing_price=uniform,
            buy_price=buy_price,
            sell_price=sell_price,
            volume=volume,
            demand=int(bids.quantity[:n_bids].sum()) if demand is None else demand,
            supply=int(asks.quantity[:n_asks].sum()) if supply is None else supply,
            unmatched_bid_quantity=total_bid - volume,
            unmatched_ask_quantity=total_ask - volume,
            fee_bps=self.fee_bps,
            allocation=allocation,
        )


def _pair(
    bids: _Side, asks: _Side, bid_fill: np.ndarray, ask_fill: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per trade the input positions of buyer and seller order, and the quantity."""
    # each trade is one segment between consecutive fill boundaries of either side
    bcum = np.cumsum(bid_fill)
    acum = np.cumsum(ask_fill)
    ends = np.union1d(bcum[bid_fill > 0], acum[ask_fill > 0])
    starts = np.concatenate(([0], ends[:-1]))
    buyer = bids.index[np.searchsorted(bcum, starts, side="right")]
    seller = asks.index[np.searchsorted(acum, starts, side="right")]
    return buyer, seller, ends - starts
