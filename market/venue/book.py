"""The in-memory continuous limit order book of one tier.

Matching follows price-time priority: an incoming order trades against the best
opposite price level first and, within a level, against the order that has rested
longest; every trade happens at the resting order's price, and orders fill partially.
What is left of a GTC or good-till-time order rests; what is left of an IOC order is
cancelled.

Modification keeps time priority only when it shrinks the open quantity at the same
price; a larger quantity or a new price moves the order to the back of its (new) level,
and a new price that crosses the book trades as an incoming order would.

Good-till-time orders expire when the injected clock reaches their ``expires_at``;
every public operation first expires what is due, and :meth:`OrderBook.expire` does
only that.

Self-trade prevention stops an order from trading with a resting order of the same
owner. :class:`SelfTradePrevention` chooses what is cancelled: the incoming (newest)
order by default, the resting (oldest) one, or both.

Levels are dicts of price to a deque of resting orders, and the prices of each side
are one sorted list whose best price sits at the end; a cancelled order is marked dead
and skipped when it reaches the front of its level, so cancel is O(1).
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from operator import attrgetter

from market.errors import DuplicateOrder, InvalidOrder, OffTickPrice, UnknownOrder
from market.units import BPS, MILLI_PER_CREDIT
from market.venue.orders import (
    Order,
    OrderEvent,
    OrderEventType,
    OrderState,
    Side,
    TimeInForce,
    Trade,
    check_expiry,
    check_price,
    check_quantity,
    transition,
)

Clock = Callable[[], datetime]
BookEvent = OrderEvent | Trade

_BUY = Side.BUY
_SELL = Side.SELL
_OPEN = OrderState.OPEN
_PARTIAL = OrderState.PARTIALLY_FILLED
_FILLED = OrderState.FILLED
_CANCELLED = OrderState.CANCELLED
_EV_FILL = OrderEventType.FILL
_EV_PARTIAL = OrderEventType.PARTIAL_FILL
_EV_ACCEPT = OrderEventType.ACCEPT
_GTC = TimeInForce.GTC
# named tuples built straight from a tuple: events are made on every operation
_new = tuple.__new__
_IOC = TimeInForce.IOC


class SelfTradePrevention(StrEnum):
    """What to cancel when an order would trade with its own owner's resting order."""

    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"


@dataclass(frozen=True, slots=True, kw_only=True)
class BookConfig:
    """The rules of one tier's book.

    Parameters
    ----------
    tier
        The tier whose credits the book trades.
    tick_size
        Every price is a positive multiple of it (minor units per credit).
    fee_bps
        The buyer's fee in basis points of each trade's value, rounded down.
    self_trade
        What self-trade prevention cancels.
    """

    tier: str
    tick_size: int = 1
    fee_bps: int = 0
    self_trade: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST

    def __post_init__(self) -> None:
        if not self.tier:
            raise ValueError("tier must be a non-empty string")
        if type(self.tick_size) is not int or self.tick_size <= 0:
            raise ValueError(f"tick_size must be a positive integer, got {self.tick_size!r}")
        if type(self.fee_bps) is not int or not 0 <= self.fee_bps < BPS:
            raise ValueError(f"fee_bps must be an integer in [0, 10000), got {self.fee_bps!r}")

    def check_price(self, price: object) -> int:
        """Return ``price`` if it is a positive multiple of the tick size, else raise.

        Raises
        ------
        InvalidPrice
            If ``price`` is not a positive integer.
        OffTickPrice
            If ``price`` is not a multiple of :attr:`tick_size`.
        """
        checked = check_price(price)
        if checked % self.tick_size:
            raise OffTickPrice(checked, self.tick_size, self.tier)
        return checked


class _Resting:
    """The mutable state of one order inside the book."""

    __slots__ = (
        "created_at",
        "expires_at",
        "filled",
        "live",
        "order_id",
        "owner",
        "price",
        "priority",
        "quantity",
        "remaining",
        "side",
        "state",
        "time_in_force",
    )

    def __init__(
        self,
        order_id: str,
        owner: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce,
        expires_at: datetime | None,
        created_at: datetime,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        self.filled = 0
        self.time_in_force = time_in_force
        self.expires_at = expires_at
        self.created_at = created_at
        self.state = OrderState.PENDING
        # false once the order has left its level: the deque entry is then skipped
        self.live = False
        # the book-wide sequence of its (last) arrival at a level: its time priority
        self.priority = 0

    @classmethod
    def of(cls, order: Order) -> _Resting:
        """Return the book state of an order snapshot (not yet resting)."""
        resting = cls(
            order.order_id,
            order.owner,
            order.side,
            order.price,
            order.quantity,
            order.time_in_force,
            order.expires_at,
            order.created_at,
        )
        resting.filled, resting.remaining, resting.state = (
            order.filled,
            order.remaining,
            order.state,
        )
        return resting


class _Level:
    __slots__ = ("count", "orders", "quantity")

    def __init__(self) -> None:
        self.orders: deque[_Resting] = deque()
        self.quantity = 0
        self.count = 0


class OrderBook:
    """A continuous limit order book for one tier's credits.

    Parameters
    ----------
    config
        The tier, tick size, fee and self-trade prevention mode.
    clock
        Returns the current UTC time; it stamps events and drives expiry.
    id_prefix
        Starts every trade id, so that ids stay unique across books and restarts.
    """

    def __init__(self, config: BookConfig, clock: Clock, *, id_prefix: str = "") -> None:
        self.config = config
        self._clock = clock
        self._id_prefix = id_prefix
        self._tick = config.tick_size
        self._tier = config.tier
        self._orders: dict[str, _Resting] = {}
        self._bid_levels: dict[int, _Level] = {}
        self._ask_levels: dict[int, _Level] = {}
        # bids keyed by price, asks by -price: the best level is always the last key
        self._bid_keys: list[int] = []
        self._ask_keys: list[int] = []
        self._expiries: list[tuple[datetime, int, _Resting]] = []
        self._expiry_seq = 0
        self._trade_seq = 0
        self._rest_seq = 0

    # ----------------------------------------------------------------- queries

    @property
    def tier(self) -> str:
        """Return the tier whose credits this book trades."""
        return self.config.tier

    def best_bid(self) -> int | None:
        """Return the highest resting bid price, or ``None`` on an empty bid side."""
        return self._bid_keys[-1] if self._bid_keys else None

    def best_ask(self) -> int | None:
        """Return the lowest resting ask price, or ``None`` on an empty ask side."""
        return -self._ask_keys[-1] if self._ask_keys else None

    def depth(self, side: Side, levels: int | None = None) -> list[tuple[int, int, int]]:
        """Return ``(price, quantity, order_count)`` per level, best price first."""
        if side is _BUY:
            prices = [k for k in reversed(self._bid_keys)]
            book = self._bid_levels
        else:
            prices = [-k for k in reversed(self._ask_keys)]
            book = self._ask_levels
        if levels is not None:
            prices = prices[:levels]
        return [(p, book[p].quantity, book[p].count) for p in prices]

    def order(self, order_id: str) -> Order:
        """Return a snapshot of the order with this id.

        Raises
        ------
        UnknownOrder
            If the book has never seen ``order_id``.
        """
        try:
            return self._snapshot(self._orders[order_id])
        except KeyError:
            raise UnknownOrder(order_id) from None

    def open_orders(self, side: Side | None = None) -> Iterator[Order]:
        """Yield snapshots of the resting orders, best price and oldest first."""
        for s in (_BUY, _SELL) if side is None else (side,):
            keys = self._bid_keys if s is _BUY else self._ask_keys
            book = self._bid_levels if s is _BUY else self._ask_levels
            for key in reversed(keys):
                for resting in book[key if s is _BUY else -key].orders:
                    if resting.live:
                        yield self._snapshot(resting)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    # -------------------------------------------------------------- operations

    def submit(
        self,
        order_id: str,
        owner: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce = TimeInForce.GTC,
        expires_at: datetime | None = None,
    ) -> list[BookEvent]:
        """Match a new limit order and rest what is left of it.

        Returns
        -------
        list of OrderEvent and Trade
            In the order they happened: expiries that were due, the acceptance, each
            trade followed by the fill events of both orders, cancellations by
            self-trade prevention or IOC.

        Raises
        ------
        InvalidOrder
            If the quantity, price, tick, side or expiry is wrong; nothing changes.
        DuplicateOrder
            If the book has seen ``order_id`` before; nothing changes.
        """
        now = self._clock()
        if not (
            type(quantity) is int
            and quantity > 0
            and type(price) is int
            and price > 0
            and not price % self._tick
            and (side is _BUY or side is _SELL)
            and expires_at is None
            and (time_in_force is _GTC or time_in_force is _IOC)
            and order_id not in self._orders
        ):
            # the slow path says precisely what is wrong, or admits a good-till-time order
            self.validate(order_id, side, price, quantity, time_in_force, expires_at, now)
        events: list[BookEvent] = []
        if self._expiries and self._expiries[0][0] <= now:
            self._expire_due(now, events)
        order = _Resting(order_id, owner, side, price, quantity, time_in_force, expires_at, now)
        self._orders[order_id] = order
        order.state = _OPEN
        events.append(
            _new(OrderEvent, (order_id, self._tier, _EV_ACCEPT, _OPEN, quantity, now, ""))
        )
        if side is _BUY:
            crosses = self._ask_keys and -self._ask_keys[-1] <= price
        else:
            crosses = self._bid_keys and self._bid_keys[-1] >= price
        if crosses:
            self._match_and_rest(order, now, events)
        elif time_in_force is _IOC:
            self._end(order, OrderEventType.CANCEL, now, events, "immediate-or-cancel")
        else:
            self._rest(order)
        return events

    def validate(
        self,
        order_id: str,
        side: Side,
        price: int,
        quantity: int,
        time_in_force: TimeInForce,
        expires_at: datetime | None,
        now: datetime,
    ) -> None:
        """Raise the error a :meth:`submit` of these fields would raise, without submitting.

        Raises
        ------
        InvalidOrder
            If the quantity, price, tick, side or expiry is wrong.
        DuplicateOrder
            If the book has seen ``order_id`` before.
        """
        check_quantity(quantity)
        self.config.check_price(price)
        if side is not _BUY and side is not _SELL:
            raise InvalidOrder(f"side must be a Side, got {side!r}", field="side", value=side)
        if not isinstance(time_in_force, TimeInForce):
            raise InvalidOrder(
                f"time_in_force must be a TimeInForce, got {time_in_force!r}",
                field="time_in_force",
                value=time_in_force,
            )
        check_expiry(time_in_force, expires_at, now)
        if order_id in self._orders:
            raise DuplicateOrder(order_id)

    def cancel(self, order_id: str, reason: str = "cancelled by owner") -> list[BookEvent]:
        """Cancel a resting order and return the events (the cancel last).

        An order whose expiry the clock has reached expires instead, and the events say so.

        Raises
        ------
        UnknownOrder
            If the book has never seen ``order_id``.
        InvalidTransition
            If the order is already filled, cancelled or expired.
        """
        now = self._clock()
        order = self._get(order_id)
        transition(order_id, order.state, OrderEventType.CANCEL)
        events: list[BookEvent] = []
        if self._expiries and self._expiries[0][0] <= now:
            self._expire_due(now, events)
        if order.state in (_OPEN, _PARTIAL):
            self._unlink(order)
            self._end(order, OrderEventType.CANCEL, now, events, reason)
        return events

    def modify(
        self, order_id: str, *, price: int | None = None, quantity: int | None = None
    ) -> list[BookEvent]:
        """Change a resting order's price and/or open quantity.

        ``quantity`` is the new open (unfilled) quantity. A smaller open quantity at the
        same price keeps the order's time priority; a larger one or a new price sends it
        to the back of its level, and a new price that crosses the book trades at once.
        An order whose expiry the clock has reached expires instead, and the events say so.

        Raises
        ------
        UnknownOrder
            If the book has never seen ``order_id``.
        InvalidTransition
            If the order is already filled, cancelled or expired.
        InvalidOrder
            If the new price or quantity is wrong; nothing changes.
        """
        now = self._clock()
        order = self._get(order_id)
        transition(order_id, order.state, OrderEventType.MODIFY)
        new_price = order.price if price is None else self.config.check_price(price)
        new_remaining = order.remaining if quantity is None else check_quantity(quantity)
        events: list[BookEvent] = []
        if self._expiries and self._expiries[0][0] <= now:
            self._expire_due(now, events)
            if not order.live:
                # the clock reached its expiry first: the expiry wins
                return events
        if new_price == order.price and new_remaining <= order.remaining:
            level = (self._bid_levels if order.side is _BUY else self._ask_levels)[order.price]
            level.quantity -= order.remaining - new_remaining
            order.quantity -= order.remaining - new_remaining
            order.remaining = new_remaining
            events.append(self._event(order, OrderEventType.MODIFY, now, "kept priority"))
            return events
        self._unlink(order)
        # a fresh object: the old one's deque entry must stay dead
        moved = _Resting(
            order_id,
            order.owner,
            order.side,
            new_price,
            order.filled + new_remaining,
            order.time_in_force,
            order.expires_at,
            order.created_at,
        )
        moved.filled, moved.remaining, moved.state = order.filled, new_remaining, order.state
        self._orders[order_id] = order = moved
        events.append(self._event(order, OrderEventType.MODIFY, now, "lost priority"))
        self._match_and_rest(order, now, events)
        return events

    def restore(self, order: Order) -> None:
        """Rest an order again exactly as a snapshot left it, without matching.

        Restore a book's open orders in the order of their ``priority`` to rebuild
        their time priority.

        Raises
        ------
        DuplicateOrder
            If the book already has the order.
        InvalidOrder
            If the order is not open, is off the tick, or would cross the book.
        """
        self._check_open(order, "restored")
        buying = order.side is _BUY
        best = self.best_ask() if buying else self.best_bid()
        if best is not None and (order.price >= best if buying else order.price <= best):
            raise InvalidOrder(
                f"order {order.order_id!r} at {order.price} would cross the book at {best}",
                field="price",
                value=order.price,
            )
        resting = self._orders[order.order_id] = _Resting.of(order)
        self._rest(resting, priority=order.priority)

    def resume(self, order: Order) -> list[BookEvent]:
        """Take back an open order from a snapshot and match it as if it arrived now.

        What crosses the book trades in price-time priority; an immediate-or-cancel
        order is cancelled for what is left; anything else rests, in its old time
        priority if it did not trade. For a store whose orders were accepted but not
        matched before a crash: resume them in the order of their ``priority``.

        Raises
        ------
        DuplicateOrder
            If the book already has the order.
        InvalidOrder
            If the order is not open or is off the tick.
        """
        self._check_open(order, "resumed")
        now = self._clock()
        resting = self._orders[order.order_id] = _Resting.of(order)
        events: list[BookEvent] = []
        if order.side is _BUY:
            crosses = self._ask_keys and -self._ask_keys[-1] <= order.price
        else:
            crosses = self._bid_keys and self._bid_keys[-1] >= order.price
        if crosses:
            self._match_and_rest(resting, now, events)
        elif order.time_in_force is _IOC:
            self._end(resting, OrderEventType.CANCEL, now, events, "immediate-or-cancel")
        else:
            self._rest(resting, priority=order.priority)
        return events

    def rewind(self, before: Iterable[Order], added: Iterable[str] = ()) -> None:
        """Undo what submits, cancels, modifies and expiries did since snapshots were taken.

        ``before`` holds a snapshot, taken before those operations, of every order they
        touched that was open then; each goes back to its level in its old time
        priority. The orders in ``added`` arrived since and are forgotten. A venue
        rewinds its books when the store refuses the transaction settling them.
        """
        for order_id in added:
            dropped = self._orders.pop(order_id, None)
            if dropped is not None:
                self._unlink(dropped)
        for order in before:
            current = self._orders.get(order.order_id)
            if current is not None:
                self._unlink(current)
            resting = self._orders[order.order_id] = _Resting.of(order)
            self._rest(resting, priority=order.priority)

    def expire(self) -> list[BookEvent]:
        """Expire every good-till-time order whose time has come; return the events."""
        events: list[BookEvent] = []
        now = self._clock()
        if self._expiries and self._expiries[0][0] <= now:
            self._expire_due(now, events)
        return events

    # ---------------------------------------------------------------- internals

    def _check_open(self, order: Order, verb: str) -> None:
        if order.order_id in self._orders:
            raise DuplicateOrder(order.order_id)
        if order.state not in (_OPEN, _PARTIAL) or order.remaining <= 0:
            raise InvalidOrder(
                f"only open orders can be {verb}, {order.order_id!r} is {order.state.value}",
                field="state",
                value=order.state,
            )
        self.config.check_price(order.price)

    def _get(self, order_id: str) -> _Resting:
        try:
            return self._orders[order_id]
        except KeyError:
            raise UnknownOrder(order_id) from None

    def _snapshot(self, o: _Resting) -> Order:
        return Order(
            order_id=o.order_id,
            tier=self.config.tier,
            owner=o.owner,
            side=o.side,
            price=o.price,
            quantity=o.quantity,
            filled=o.filled,
            time_in_force=o.time_in_force,
            expires_at=o.expires_at,
            created_at=o.created_at,
            state=o.state,
            priority=o.priority,
        )

    def _event(
        self, o: _Resting, kind: OrderEventType, now: datetime, reason: str = ""
    ) -> OrderEvent:
        return OrderEvent(o.order_id, self.config.tier, kind, o.state, o.remaining, now, reason)

    def _end(
        self,
        o: _Resting,
        kind: OrderEventType,
        now: datetime,
        events: list[BookEvent],
        reason: str,
    ) -> None:
        o.state = transition(o.order_id, o.state, kind)
        events.append(
            OrderEvent(o.order_id, self.config.tier, kind, o.state, o.remaining, now, reason)
        )

    def _expire_due(self, now: datetime, events: list[BookEvent]) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, _, order = heapq.heappop(heap)
            if order.live and order.expires_at is not None and order.expires_at <= now:
                self._unlink(order)
                self._end(order, OrderEventType.EXPIRE, now, events, "good-till-time reached")

    def _unlink(self, order: _Resting) -> None:
        """Take a resting order off its level; its deque entry is skipped later."""
        if not order.live:
            return
        order.live = False
        if order.side is _BUY:
            levels, keys, key = self._bid_levels, self._bid_keys, order.price
        else:
            levels, keys, key = self._ask_levels, self._ask_keys, -order.price
        level = levels[order.price]
        level.quantity -= order.remaining
        level.count -= 1
        if level.count == 0:
            del levels[order.price]
            if keys[-1] == key:
                keys.pop()
            else:
                del keys[bisect.bisect_left(keys, key)]

    def _rest(self, order: _Resting, priority: int = 0) -> None:
        """Rest ``order`` at the back of its level, or at ``priority`` if it has one."""
        if order.side is _BUY:
            levels, keys, key = self._bid_levels, self._bid_keys, order.price
        else:
            levels, keys, key = self._ask_levels, self._ask_keys, -order.price
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = _Level()
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                bisect.insort(keys, key)
        queue = level.orders
        if priority and queue and queue[-1].priority > priority:
            # back into its old place in time priority
            live = [o for o in queue if o.live]
            live.insert(bisect.bisect(live, priority, key=attrgetter("priority")), order)
            level.orders = deque(live)
        else:
            queue.append(order)
        level.quantity += order.remaining
        level.count += 1
        order.live = True
        if priority:
            order.priority = priority
            self._rest_seq = max(self._rest_seq, priority)
        else:
            self._rest_seq += 1
            order.priority = self._rest_seq
        if order.expires_at is not None:
            self._expiry_seq += 1
            heapq.heappush(self._expiries, (order.expires_at, self._expiry_seq, order))

    def _match_and_rest(self, order: _Resting, now: datetime, events: list[BookEvent]) -> None:
        if self._match(order, now, events) and order.remaining:
            if order.time_in_force is TimeInForce.IOC:
                self._end(order, OrderEventType.CANCEL, now, events, "immediate-or-cancel")
            else:
                self._rest(order)

    def _match(self, incoming: _Resting, now: datetime, events: list[BookEvent]) -> bool:
        """Trade ``incoming`` against the opposite side; return whether it may still rest."""
        # One function on purpose: this is the matching loop, the venue's hot path
        # (``creditx bench market``: about 300,000 orders a second in memory); a call
        # per level or per fill would cost a measurable share of it.
        tier = self.config.tier
        fee_bps = self.config.fee_bps
        prefix = f"{self._id_prefix}{tier}-"
        buying = incoming.side is _BUY
        if buying:
            levels, keys = self._ask_levels, self._ask_keys
        else:
            levels, keys = self._bid_levels, self._bid_keys
        limit = incoming.price
        while incoming.remaining and keys:
            price = -keys[-1] if buying else keys[-1]
            if (price > limit) if buying else (price < limit):
                break
            level = levels[price]
            queue = level.orders
            while incoming.remaining and queue:
                resting = queue[0]
                if not resting.live:
                    queue.popleft()
                    continue
                if resting.owner == incoming.owner:
                    mode = self.config.self_trade
                    if mode is not SelfTradePrevention.CANCEL_NEWEST:
                        self._unlink(resting)
                        self._end(resting, OrderEventType.CANCEL, now, events, "self-trade")
                    if mode is not SelfTradePrevention.CANCEL_OLDEST:
                        self._end(incoming, OrderEventType.CANCEL, now, events, "self-trade")
                        return False
                    if level.count == 0:
                        break
                    continue
                qty = (
                    incoming.remaining
                    if incoming.remaining < resting.remaining
                    else (resting.remaining)
                )
                value = qty * price // MILLI_PER_CREDIT
                self._trade_seq += 1
                if buying:
                    buy, sell = incoming, resting
                else:
                    buy, sell = resting, incoming
                events.append(
                    _new(
                        Trade,
                        (
                            f"{prefix}{self._trade_seq}",
                            tier,
                            price,
                            qty,
                            buy.order_id,
                            sell.order_id,
                            buy.owner,
                            sell.owner,
                            value,
                            value * fee_bps // BPS,
                            now,
                            incoming.side,
                            None,
                        ),
                    )
                )
                resting.remaining -= qty
                resting.filled += qty
                level.quantity -= qty
                incoming.remaining -= qty
                incoming.filled += qty
                if resting.remaining:
                    resting.state = _PARTIAL
                    events.append(
                        _new(
                            OrderEvent,
                            (
                                resting.order_id,
                                tier,
                                _EV_PARTIAL,
                                _PARTIAL,
                                resting.remaining,
                                now,
                                "",
                            ),
                        )
                    )
                else:
                    resting.state = _FILLED
                    resting.live = False
                    queue.popleft()
                    level.count -= 1
                    events.append(
                        _new(OrderEvent, (resting.order_id, tier, _EV_FILL, _FILLED, 0, now, ""))
                    )
                if incoming.remaining:
                    incoming.state = _PARTIAL
                    events.append(
                        _new(
                            OrderEvent,
                            (
                                incoming.order_id,
                                tier,
                                _EV_PARTIAL,
                                _PARTIAL,
                                incoming.remaining,
                                now,
                                "",
                            ),
                        )
                    )
                else:
                    incoming.state = _FILLED
                    events.append(
                        _new(OrderEvent, (incoming.order_id, tier, _EV_FILL, _FILLED, 0, now, ""))
                    )
            if level.count == 0 and price in levels:
                del levels[price]
                keys.pop()
        return True
