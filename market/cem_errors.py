"""Exceptions of the Resource Tier Manager, burstable accounting and the CEM.

::

    ExchangeError
    ├── ConfigError              a tier/host/instance config that cannot be used
    ├── InvalidParameter         a rate, size or measurement out of its domain
    ├── DuplicateId              a tier, host or instance defined twice
    ├── TierNotFound
    ├── HostNotFound
    ├── InstanceNotFound
    ├── CrossTierTrade           seller and buyer hold credits of different tiers
    ├── NotAuthorised            an administrator action by someone who is not one
    ├── InsufficientHeadroom     a pool cannot take more credits than its capacity
    ├── InsufficientPoolCredits  (also a ledger InsufficientBalance) a pool runs short
    ├── InsufficientCredits      (also a ledger InsufficientBalance) an instance runs short
    └── InsufficientFunds        (also a ledger InsufficientBalance) a buyer cannot pay

Amounts that are not positive ints in bounds raise the ledger's ``InvalidAmount``.
"""

from __future__ import annotations

from market.errors import MarketError
from market.ledger import InsufficientBalance


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
