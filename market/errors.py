"""Every error of the market, in one tree.

Each error carries the fields a caller needs to react without parsing the message.
The ledger's errors (:mod:`market.ledger`) have a root of their own, ``LedgerError``;
the three shortfalls of the CEM are both an ``ExchangeError`` and a ledger
``InsufficientBalance``::

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
    ├── UnitMismatch                 (also TypeError) arithmetic mixing credits, money, price
    ├── ExchangeError                the tier manager, burstable accounting and the CEM
    │   ├── ConfigError              a tier/host/instance config that cannot be used
    │   ├── InvalidParameter         a rate, size or measurement out of its domain
    │   ├── DuplicateId              a tier, host or instance defined twice
    │   ├── TierNotFound
    │   ├── HostNotFound
    │   ├── InstanceNotFound
    │   ├── CrossTierTrade           seller and buyer hold credits of different tiers
    │   ├── NotAuthorised            an administrator action by someone who is not one
    │   ├── InsufficientHeadroom     a pool cannot take more credits than its capacity
    │   ├── InsufficientPoolCredits  (also InsufficientBalance) a pool runs short
    │   ├── InsufficientCredits      (also InsufficientBalance) an instance runs short
    │   ├── InsufficientFunds        (also InsufficientBalance) a buyer cannot pay
    │   └── AccrualContention        other writers kept booking the same intervals
    └── AgentError                   an agent or the CEM automation cannot proceed
        ├── InvalidAgentInput        a state, forecast or market figure out of its domain
        ├── InvalidPolicy            an owner's or administrator's setting out of its domain
        └── TransportError           the API did not answer after every retry

Amounts that are not positive ints in bounds raise the ledger's ``InvalidAmount``.
"""

from __future__ import annotations

from market.ledger import InsufficientBalance


class MarketError(Exception):
    """Root of every error the market raises, apart from the ledger's own."""


class UnitMismatch(MarketError, TypeError):
    """Two amounts of different units met in one operation (credits plus money, ...)."""

    def __init__(self, unit: str, other: str, operation: str) -> None:
        super().__init__(f"cannot {operation} {other} and {unit}: they are different units")
        self.unit = unit
        self.other = other
        self.operation = operation


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


class ExchangeError(MarketError):
    """Root of every error of the tier manager, the accounting and the CEM."""


class ConfigError(ExchangeError):
    """A configuration that cannot be loaded."""


class InvalidParameter(ExchangeError):
    """A parameter outside its domain."""

    def __init__(self, name: str, value: object, why: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"invalid {name} {value!r}: {why}")


class DuplicateId(ExchangeError):
    """A tier, host or instance id defined twice."""

    def __init__(self, kind: str, identifier: str) -> None:
        self.kind = kind
        self.identifier = identifier
        super().__init__(f"{kind} {identifier!r} is already defined")


class TierNotFound(ExchangeError):
    """No tier has this name."""

    def __init__(self, tier: str) -> None:
        self.tier = tier
        super().__init__(f"unknown tier {tier!r}")


class HostNotFound(ExchangeError):
    """No host has this id."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        super().__init__(f"unknown host {host_id!r}")


class InstanceNotFound(ExchangeError):
    """No instance has this id."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"unknown instance {instance_id!r}")


class CrossTierTrade(ExchangeError):
    """A trade between instances whose credits belong to different tiers."""

    def __init__(self, seller_tier: str, buyer_tier: str) -> None:
        self.seller_tier = seller_tier
        self.buyer_tier = buyer_tier
        super().__init__(
            f"seller credits are {seller_tier!r} but the buyer's are {buyer_tier!r}; "
            "instances trade within their tier, the CEM swaps between tiers"
        )


class NotAuthorised(ExchangeError):
    """An administrator action requested by someone who is not an administrator."""

    def __init__(self, actor: str, action: str) -> None:
        self.actor = actor
        self.action = action
        super().__init__(f"{actor!r} is not an administrator and may not {action}")


class InsufficientHeadroom(ExchangeError):
    """A tier pool would exceed its capacity."""

    def __init__(self, tier: str, headroom: int, requested: int) -> None:
        self.tier = tier
        self.headroom = headroom
        self.requested = requested
        super().__init__(
            f"pool {tier!r} has room for {headroom} milli-credits, {requested} requested"
        )


class InsufficientPoolCredits(ExchangeError, InsufficientBalance):
    """A tier pool holds fewer credits than requested."""

    def __init__(self, tier: str, balance: int, requested: int) -> None:
        self.tier = tier
        InsufficientBalance.__init__(self, f"pool:{tier}", balance, requested)


class InsufficientCredits(ExchangeError, InsufficientBalance):
    """An instance holds fewer credits than it sells."""

    def __init__(self, instance_id: str, balance: int, requested: int) -> None:
        self.instance_id = instance_id
        InsufficientBalance.__init__(self, f"instance:{instance_id}:credits", balance, requested)


class InsufficientFunds(ExchangeError, InsufficientBalance):
    """An instance holds less money than it pays."""

    def __init__(self, instance_id: str, balance: int, requested: int) -> None:
        self.instance_id = instance_id
        InsufficientBalance.__init__(self, f"instance:{instance_id}:funds", balance, requested)


class AccrualContention(ExchangeError):
    """Other writers kept booking the intervals a booking planned, attempt after attempt."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(
            f"other writers booked the same intervals {attempts} times in a row; "
            "what they booked stands, the rest stays pending: try again"
        )


class AgentError(MarketError):
    """Root of the errors of the agents and the CEM automation."""


class InvalidAgentInput(AgentError):
    """A state, forecast or market figure outside its domain."""

    def __init__(self, name: str, value: object, why: str) -> None:
        super().__init__(f"invalid {name} {value!r}: {why}")
        self.name = name
        self.value = value


class InvalidPolicy(AgentError):
    """An owner's or an administrator's setting outside its domain."""

    def __init__(self, name: str, value: object, why: str) -> None:
        super().__init__(f"invalid {name} {value!r}: {why}")
        self.name = name
        self.value = value


class TransportError(AgentError):
    """The API refused a request or did not answer after every retry."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        where = "no answer" if status is None else f"status {status}"
        super().__init__(f"{method} {path}: {where}: {detail}")
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
