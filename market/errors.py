"""Errors of the order books, auctions and the venue.

Every error the secondary market raises derives from :class:`MarketError`; each
subclass carries the fields a caller needs to react without parsing the message::

    MarketError
    ├── InvalidOrder                 a field of a new or modified order is wrong
    │   ├── InvalidQuantity          quantity is not a positive integer
    │   ├── InvalidPrice             price is not a positive integer
    │   ├── OffTickPrice             price is not a multiple of the tier's tick size
    │   └── InvalidExpiry            good-till-time without a future expiry, or vice versa
    ├── UnknownTier                  no book is configured for the tier
    ├── UnknownInstance              the venue has no such instance
    ├── UnknownOrder                 no order has this id
    ├── DuplicateOrder               an order with this id already exists
    ├── InvalidTransition            the order's lifecycle forbids the event
    ├── StandingLimitViolation       the order breaks its owner's standing bid/ask limit
    ├── InsufficientEscrow           the owner cannot fund the order's escrow
    ├── SelfTradeRejected            an auction order would meet its owner's opposite order
    ├── InvalidAuction               the auction's inputs are inconsistent
    ├── ExchangeError                tiers, accounting and the CEM (``market.cem_errors``)
    └── AgentError                   agents and decision logs (``market.decisions``)
"""

from __future__ import annotations


class MarketError(Exception):
    """Root of every error raised by the order books, the auctions and the venue."""


class InvalidOrder(MarketError):
    """A field of a new or modified order is wrong."""

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class InvalidQuantity(InvalidOrder):
    """The quantity is not a positive integer number of milli-credits."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"quantity must be a positive integer of milli-credits, got {value!r}",
            field="quantity",
            value=value,
        )


class InvalidPrice(InvalidOrder):
    """The limit price is not a positive integer number of minor units per credit."""

    def __init__(self, value: object) -> None:
        super().__init__(
            f"price must be a positive integer of minor units per credit, got {value!r}",
            field="price",
            value=value,
        )


class OffTickPrice(InvalidOrder):
    """The limit price is not a multiple of the tier's tick size."""

    def __init__(self, value: int, tick_size: int, tier: str) -> None:
        super().__init__(
            f"price {value} is not a multiple of the tick size {tick_size} of tier {tier!r}",
            field="price",
            value=value,
        )
        self.tick_size = tick_size
        self.tier = tier


class InvalidExpiry(InvalidOrder):
    """A good-till-time order lacks a future expiry, or another order carries one."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message, field="expires_at", value=value)


class UnknownTier(MarketError):
    """No order book is configured for the tier."""

    def __init__(self, tier: str) -> None:
        super().__init__(f"no order book is configured for tier {tier!r}")
        self.tier = tier


class UnknownInstance(MarketError):
    """The venue has no instance with this id."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id!r} is not registered with the venue")
        self.instance_id = instance_id


class UnknownOrder(MarketError):
    """No order has this id."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order with id {order_id!r}")
        self.order_id = order_id


class DuplicateOrder(MarketError):
    """An order with this id already exists."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"an order with id {order_id!r} already exists")
        self.order_id = order_id


class InvalidTransition(MarketError):
    """The order lifecycle table has no move for this state and event."""

    def __init__(self, order_id: str, state: str, event: str) -> None:
        super().__init__(f"order {order_id!r} is {state} and cannot take event {event}")
        self.order_id = order_id
        self.state = state
        self.event = event


class StandingLimitViolation(MarketError):
    """The order's price breaks the standing limit its owner set for the instance."""

    def __init__(self, instance_id: str, side: str, price: int, limit: int) -> None:
        bound = "at most" if side == "buy" else "at least"
        super().__init__(
            f"instance {instance_id!r} may {side} only at prices {bound} {limit}, got {price}"
        )
        self.instance_id = instance_id
        self.side = side
        self.price = price
        self.limit = limit


class InsufficientEscrow(MarketError):
    """The owner's balance cannot fund the escrow the order needs."""

    def __init__(self, instance_id: str, asset: str, balance: int, required: int) -> None:
        super().__init__(
            f"instance {instance_id!r} holds {balance} of {asset} but the order needs "
            f"{required} in escrow"
        )
        self.instance_id = instance_id
        self.asset = asset
        self.balance = balance
        self.required = required


class SelfTradeRejected(MarketError):
    """An auction order would meet an opposite order of the same owner."""

    def __init__(self, instance_id: str, order_id: str) -> None:
        super().__init__(
            f"instance {instance_id!r} already has opposite order {order_id!r} in this auction"
        )
        self.instance_id = instance_id
        self.order_id = order_id


class InvalidAuction(MarketError):
    """The inputs of a call auction are inconsistent."""
