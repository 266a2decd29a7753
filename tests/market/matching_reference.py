"""Brute-force reference matchers the property tests hold the fast ones to.

They are written for obviousness, not speed: every step scans every order. Use them
only on small inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from market.venue.book import SelfTradePrevention
from market.venue.orders import Side, TimeInForce


@dataclass
class _RefOrder:
    order_id: str
    owner: str
    side: Side
    price: int
    remaining: int
    seq: int
    expires_at: datetime | None


class ReferenceBook:
    """A price-time priority book that scans a plain list for every decision."""

    def __init__(self, self_trade: SelfTradePrevention, clock: Callable[[], datetime]) -> None:
        self.self_trade = self_trade
        self.clock = clock
        self.resting: list[_RefOrder] = []
        self.done: set[str] = set()
        self.trades: list[tuple[int, int, str, str]] = []
        self._seq = 0

    def _expire(self) -> None:
        now = self.clock()
        for o in [o for o in self.resting if o.expires_at is not None and o.expires_at <= now]:
            self.resting.remove(o)
            self.done.add(o.order_id)

    def _best_opposite(self, side: Side) -> _RefOrder | None:
        opposite = [o for o in self.resting if o.side is not side]
        if not opposite:
            return None
        if side is Side.BUY:
            return min(opposite, key=lambda o: (o.price, o.seq))
        return min(opposite, key=lambda o: (-o.price, o.seq))

    def _match(self, incoming: _RefOrder, tif: TimeInForce) -> None:
        while incoming.remaining:
            best = self._best_opposite(incoming.side)
            if best is None:
                break
            crosses = (
                best.price <= incoming.price
                if incoming.side is Side.BUY
                else best.price >= incoming.price
            )
            if not crosses:
                break
            if best.owner == incoming.owner:
                if self.self_trade is not SelfTradePrevention.CANCEL_NEWEST:
                    self.resting.remove(best)
                    self.done.add(best.order_id)
                if self.self_trade is not SelfTradePrevention.CANCEL_OLDEST:
                    self.done.add(incoming.order_id)
                    return
                continue
            qty = min(best.remaining, incoming.remaining)
            buy, sell = (incoming, best) if incoming.side is Side.BUY else (best, incoming)
            self.trades.append((best.price, qty, buy.order_id, sell.order_id))
            best.remaining -= qty
            incoming.remaining -= qty
            if best.remaining == 0:
                self.resting.remove(best)
                self.done.add(best.order_id)
        if incoming.remaining == 0 or tif is TimeInForce.IOC:
            self.done.add(incoming.order_id)
        else:
            self._seq += 1
            incoming.seq = self._seq
            self.resting.append(incoming)

    def submit(
        self,
        order_id: str,
        owner: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce = TimeInForce.GTC,
        expires_at: datetime | None = None,
    ) -> None:
        """Match and rest a new order."""
        self._expire()
        self._match(_RefOrder(order_id, owner, side, price, quantity, 0, expires_at), time_in_force)

    def is_resting(self, order_id: str) -> bool:
        """Return whether ``order_id`` rests in the book (after due expiries)."""
        self._expire()
        return any(o.order_id == order_id for o in self.resting)

    def cancel(self, order_id: str) -> None:
        """Take a resting order out."""
        self._expire()
        for o in self.resting:
            if o.order_id == order_id:
                self.resting.remove(o)
                self.done.add(order_id)
                return

    def modify(self, order_id: str, price: int | None, quantity: int | None) -> None:
        """Reprice or resize a resting order, with the priority rule of the real book."""
        self._expire()
        order = next((o for o in self.resting if o.order_id == order_id), None)
        if order is None:
            return
        new_price = order.price if price is None else price
        new_qty = order.remaining if quantity is None else quantity
        if new_price == order.price and new_qty <= order.remaining:
            order.remaining = new_qty
            return
        self.resting.remove(order)
        order.price, order.remaining = new_price, new_qty
        self._match(order, TimeInForce.GTC)

    def open_orders(self) -> list[tuple[str, Side, int, int]]:
        """Return ``(order_id, side, price, remaining)`` of every resting order, sorted by id."""
        self._expire()
        return sorted((o.order_id, o.side, o.price, o.remaining) for o in self.resting)


def reference_uniform_price(
    bids: Sequence[tuple[int, int]],
    asks: Sequence[tuple[int, int]],
    *,
    tick_size: int,
    previous_price: int | None,
) -> tuple[int | None, int]:
    """Return ``(clearing_price, volume)`` by trying every tick price up to past the top."""
    if not bids or not asks:
        return None, 0
    top = max(p for p, _ in [*bids, *asks])
    prices = list(range(tick_size, top + 2 * tick_size, tick_size))
    if previous_price is not None and previous_price > 0 and previous_price % tick_size == 0:
        prices.append(previous_price)
    best: tuple[int, int, int, int] | None = None
    for p in prices:
        demand = sum(q for bp, q in bids if bp >= p)
        supply = sum(q for ap, q in asks if ap <= p)
        volume = min(demand, supply)
        distance = 0 if previous_price is None else abs(p - previous_price)
        key = (-volume, abs(demand - supply), distance, p)
        if best is None or key < best:
            best = key
    assert best is not None
    if best[0] == 0:
        return None, 0
    return best[3], -best[0]
