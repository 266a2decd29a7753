"""Orders, their lifecycle table, and the immutable events and trades the market emits.

Units
-----
* ``price``: integer minor currency units per credit, a multiple of the tier's tick size.
* ``quantity``: integer milli-credits (1 credit = 1000).
* A fill of ``quantity`` at ``price`` is worth ``quantity * price // 1000`` minor units
  (:func:`trade_value`, rounded down). The fee is ``value * fee_bps // 10_000``
  (:func:`trade_fee`, rounded down) and **the buyer pays it** on top of the value; the
  seller receives the whole value. Rounding down on every fill means the fills of a bid
  never cost more than the escrow :func:`bid_escrow` locked for it.

Lifecycle
---------
:data:`LIFECYCLE` is the whole ``(state, event) -> state`` table; :func:`transition`
raises :class:`~market.errors.InvalidTransition` for any move it does not list::

    pending ──accept──> open ──partial_fill──> partially_filled ──fill──> filled
       │                 │ ╰──fill──> filled          │
       reject            ├──cancel/expire──>          ├──cancel/expire──> cancelled/expired
       v                 ╰──modify──> open            ╰──modify──> partially_filled
    rejected
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from market.errors import InvalidExpiry, InvalidPrice, InvalidQuantity, InvalidTransition
from market.units import Credits, Price, trade_fee, trade_value


class Side(StrEnum):
    """Whether an order buys (bid) or sells (ask) credits."""

    BUY = "buy"
    SELL = "sell"


class TimeInForce(StrEnum):
    """How long an order may rest: until cancelled, not at all, or until a time."""

    GTC = "gtc"
    IOC = "ioc"
    GTT = "gtt"


class OrderState(StrEnum):
    """Where an order is in its lifecycle."""

    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class OrderEventType(StrEnum):
    """What happened to an order."""

    ACCEPT = "accept"
    REJECT = "reject"
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    CANCEL = "cancel"
    EXPIRE = "expire"
    MODIFY = "modify"


_S, _E = OrderState, OrderEventType

LIFECYCLE: Mapping[tuple[OrderState, OrderEventType], OrderState] = MappingProxyType(
    {
        (_S.PENDING, _E.ACCEPT): _S.OPEN,
        (_S.PENDING, _E.REJECT): _S.REJECTED,
        (_S.OPEN, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
        (_S.OPEN, _E.FILL): _S.FILLED,
        (_S.OPEN, _E.CANCEL): _S.CANCELLED,
        (_S.OPEN, _E.EXPIRE): _S.EXPIRED,
        (_S.OPEN, _E.MODIFY): _S.OPEN,
        (_S.PARTIALLY_FILLED, _E.PARTIAL_FILL): _S.PARTIALLY_FILLED,
        (_S.PARTIALLY_FILLED, _E.FILL): _S.FILLED,
        (_S.PARTIALLY_FILLED, _E.CANCEL): _S.CANCELLED,
        (_S.PARTIALLY_FILLED, _E.EXPIRE): _S.EXPIRED,
        (_S.PARTIALLY_FILLED, _E.MODIFY): _S.PARTIALLY_FILLED,
    }
)
"""Every allowed move of an order; a pair missing here is an invalid move."""

TERMINAL_STATES: frozenset[OrderState] = frozenset(
    {_S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED}
)
ACTIVE_STATES: frozenset[OrderState] = frozenset({_S.OPEN, _S.PARTIALLY_FILLED})


def transition(order_id: str, state: OrderState, event: OrderEventType) -> OrderState:
    """Return the state an order in ``state`` moves to on ``event``.

    Raises
    ------
    InvalidTransition
        If :data:`LIFECYCLE` has no move for ``(state, event)``.
    """
    try:
        return LIFECYCLE[state, event]
    except KeyError:
        raise InvalidTransition(order_id, state.value, event.value) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An immutable snapshot of one order.

    ``quantity`` is the order's current size: the original size, or the size its last
    modification set, plus what was filled before that modification. ``priority`` is
    the book's sequence number of the order's arrival at its price level (lower
    trades first at one price; 0 for an order that never rested).
    """

    order_id: str
    tier: str
    owner: str
    side: Side
    price: int
    quantity: int
    filled: int
    time_in_force: TimeInForce
    expires_at: datetime | None
    created_at: datetime
    state: OrderState
    priority: int = 0

    @property
    def remaining(self) -> int:
        """Return the open quantity still to fill, in milli-credits."""
        return self.quantity - self.filled


class OrderEvent(NamedTuple):
    """Something that happened to an order: the event, and the state it led to.

    Events are immutable named tuples: the books emit one per accept, fill, cancel,
    expiry and modification, so they are made cheaply.
    """

    order_id: str
    tier: str
    event: OrderEventType
    state: OrderState
    remaining: int
    at: datetime
    reason: str = ""


class Trade(NamedTuple):
    """One fill between a buy order and a sell order (an immutable named tuple).

    ``value`` is what the buyer pays the seller and ``fee`` what the buyer pays the
    exchange, both in minor units. ``aggressor`` is the side of the incoming order in
    continuous matching and ``None`` for a call auction's trades. In a McAfee auction
    the buyer pays ``value`` and the seller receives ``seller_value`` (lower); the
    difference is the exchange's surplus.
    """

    trade_id: str
    tier: str
    price: int
    quantity: int
    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    value: int
    fee: int
    at: datetime
    aggressor: Side | None = None
    seller_value: int | None = None

    @property
    def seller_receives(self) -> int:
        """Return the minor units the seller is paid for this trade."""
        return self.value if self.seller_value is None else self.seller_value


def bid_escrow(quantity: int, limit_price: int, fee_bps: int) -> int:
    """Return the funds a bid locks: its whole value at its limit plus the largest fee."""
    value = trade_value(quantity, limit_price)
    return value + trade_fee(value, fee_bps)


def check_quantity(quantity: object) -> int:
    """Return ``quantity`` if it is a positive ``int`` or :class:`~market.units.Credits`.

    Raises
    ------
    InvalidQuantity
        If ``quantity`` is not a positive integer of milli-credits (a bool, a float, or
        an amount of another unit).
    """
    if type(quantity) is not int and not isinstance(quantity, Credits):
        raise InvalidQuantity(quantity)
    if quantity <= 0:
        raise InvalidQuantity(quantity)
    return int(quantity)


def check_price(price: object) -> int:
    """Return ``price`` if it is a positive ``int`` or :class:`~market.units.Price`.

    Raises
    ------
    InvalidPrice
        If ``price`` is not a positive integer of minor units per credit (a bool, a
        float, or an amount of another unit).
    """
    if type(price) is not int and not isinstance(price, Price):
        raise InvalidPrice(price)
    if price <= 0:
        raise InvalidPrice(price)
    return int(price)


def check_expiry(
    time_in_force: TimeInForce, expires_at: datetime | None, now: datetime
) -> datetime | None:
    """Return ``expires_at`` if it fits ``time_in_force`` at ``now``, else raise.

    Raises
    ------
    InvalidExpiry
        If a good-till-time order lacks a timezone-aware expiry after ``now``, or a
        GTC or IOC order carries one.
    """
    if time_in_force is TimeInForce.GTT:
        if expires_at is None or expires_at.tzinfo is None:
            raise InvalidExpiry(
                "a good-till-time order needs a timezone-aware expires_at", expires_at
            )
        if expires_at <= now:
            raise InvalidExpiry(f"expires_at {expires_at} is not after now ({now})", expires_at)
        return expires_at
    if expires_at is not None:
        raise InvalidExpiry(
            f"only good-till-time orders take expires_at, not {time_in_force.value}",
            expires_at,
        )
    return None
