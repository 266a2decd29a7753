"""Value objects of the ledger: accounts, transfers, entry requests, entries, reports."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from market.ledger._errors import InvalidAmount, InvalidRequest

# Far above any real fleet, far below int64 so balances can never overflow a BIGINT.
MAX_AMOUNT = 10**15
_INT64_MAX = 2**63 - 1

FUNDS = "funds"
"""The asset of money, in integer minor currency units."""

_MAX_ID_LEN = 200


class AccountKind(enum.StrEnum):
    """What an account is for; mint/burn-type kinds are the only ones allowed below zero."""

    INSTANCE = "instance"
    POOL = "pool"
    FEES = "fees"
    ESCROW = "escrow"
    MINT = "mint"
    BURN = "burn"
    CONVERSION = "conversion"
    ROUNDING = "rounding"

    @property
    def may_go_negative(self) -> bool:
        """Return whether accounts of this kind may hold a negative balance."""
        return self in _NEGATIVE_KINDS


_NEGATIVE_KINDS = frozenset({AccountKind.MINT, AccountKind.BURN, AccountKind.CONVERSION})


def credits_asset(tier: str) -> str:
    """Return the asset id of a tier's credits (held in milli-credits)."""
    _check_part("tier", tier)
    return f"credits:{tier}"


def instance_credits(instance_id: str) -> str:
    """Return the id of an instance's credit account."""
    _check_part("instance id", instance_id)
    return f"instance:{instance_id}:credits"


def instance_funds(instance_id: str) -> str:
    """Return the id of an instance's funds account."""
    _check_part("instance id", instance_id)
    return f"instance:{instance_id}:funds"


def pool_account(tier: str) -> str:
    """Return the id of a tier's credit pool account."""
    _check_part("tier", tier)
    return f"pool:{tier}"


FEES_ACCOUNT = "fees:funds"
"""The exchange's fee account (asset ``funds``)."""


def escrow_account(name: str) -> str:
    """Return the id of a named escrow account (an auction's or a replay's clearing).

    Orders do not hold escrow accounts of their own: see ``escrow_funds`` and
    ``escrow_credits``.
    """
    _check_part("escrow name", name)
    return f"escrow:order:{name}"


def escrow_funds(instance_id: str) -> str:
    """Return the id of the account holding the funds an instance's open bids lock."""
    _check_part("instance id", instance_id)
    return f"escrow:instance:{instance_id}:funds"


def escrow_credits(instance_id: str) -> str:
    """Return the id of the account holding the credits an instance's open asks lock."""
    _check_part("instance id", instance_id)
    return f"escrow:instance:{instance_id}:credits"


def mint_account(asset: str) -> str:
    """Return the id of the account an asset is minted from (accrual, deposits)."""
    return f"mint:{asset}"


def burn_account(asset: str) -> str:
    """Return the id of the account an asset is burnt into (consumption, withdrawals)."""
    return f"burn:{asset}"


def conversion_account(asset: str) -> str:
    """Return the id of the CEM's swap-conversion account of an asset."""
    return f"conversion:{asset}"


def rounding_account(asset: str) -> str:
    """Return the id of the account that keeps an asset's swap rounding remainders."""
    return f"rounding:{asset}"


def _check_part(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or ":" in value or value != value.strip():
        raise InvalidRequest(f"{what} must be a non-empty string without ':', got {value!r}")


def check_amount(amount: object) -> int:
    """Return ``amount`` if it is a positive ``int`` no larger than ``MAX_AMOUNT``.

    Raises
    ------
    InvalidAmount
        For floats (NaN and infinity included), bools, zero, negatives and oversized values.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(amount, f"must be an int in minor units, not {type(amount).__name__}")
    if amount <= 0:
        raise InvalidAmount(amount, "must be positive")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(amount, f"exceeds the largest single amount {MAX_AMOUNT}")
    return amount


def check_balance_bounds(account: str, balance: int) -> None:
    """Raise ``InvalidAmount`` if ``balance`` would not fit a signed 64-bit column."""
    if not -_INT64_MAX <= balance <= _INT64_MAX:
        raise InvalidAmount(balance, f"the balance of {account!r} would overflow 64 bits")


@dataclass(frozen=True, slots=True)
class Account:
    """An opened account: its id, the one asset it holds and its kind."""

    id: str
    asset: str
    kind: AccountKind

    @property
    def may_go_negative(self) -> bool:
        """Return whether this account may hold a negative balance."""
        return self.kind.may_go_negative


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` (> 0) of the one asset both accounts hold from source to destination."""

    source: str
    destination: str
    amount: int

    def __post_init__(self) -> None:
        for name, value in (("source", self.source), ("destination", self.destination)):
            if not isinstance(value, str) or not value or len(value) > _MAX_ID_LEN:
                raise InvalidRequest(f"transfer {name} must be an account id, got {value!r}")
        if self.source == self.destination:
            raise InvalidRequest(f"transfer from {self.source!r} to itself")
        check_amount(self.amount)


MetadataValue = str | int


def _freeze_metadata(metadata: Mapping[str, MetadataValue]) -> Mapping[str, MetadataValue]:
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequest(f"metadata keys must be non-empty strings, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidRequest(
                f"metadata value of {key!r} must be a str or an int, got {value!r}"
            )
    return MappingProxyType(dict(sorted(metadata.items())))


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """A request to post one journal entry: balanced transfers that succeed or fail as one."""

    transfers: tuple[Transfer, ...]
    reason: str
    actor: str
    idempotency_key: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    ceilings: Mapping[str, int] = field(default_factory=dict)
    """Most an account of the entry may hold after it, checked in the same transaction."""

    def __post_init__(self) -> None:
        if not isinstance(self.transfers, tuple) or not self.transfers:
            raise InvalidRequest("an entry needs a non-empty tuple of transfers")
        if not all(isinstance(t, Transfer) for t in self.transfers):
            raise InvalidRequest("every transfer of an entry must be a Transfer")
        for name, value in (("reason", self.reason), ("actor", self.actor)):
            if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID_LEN:
                raise InvalidRequest(f"entry {name} must be a non-empty string, got {value!r}")
        key = self.idempotency_key
        if key is not None and (not isinstance(key, str) or not key or len(key) > _MAX_ID_LEN):
            raise InvalidRequest(f"idempotency key must be a non-empty string, got {key!r}")
        object.__setattr__(self, "metadata", _freeze_metadata(self.metadata))
        touched = {a for t in self.transfers for a in (t.source, t.destination)}
        for account, ceiling in self.ceilings.items():
            if account not in touched:
                raise InvalidRequest(f"ceiling on {account!r}, which the entry does not touch")
            if isinstance(ceiling, bool) or not isinstance(ceiling, int) or ceiling < 0:
                raise InvalidRequest(f"ceiling of {account!r} must be an int >= 0, got {ceiling!r}")
        object.__setattr__(self, "ceilings", MappingProxyType(dict(sorted(self.ceilings.items()))))

    def fingerprint(self) -> str:
        """Return a digest of everything but the key, to tell a replay from a conflict."""
        # repr of str/int tuples is canonical and much cheaper than JSON on the hot path.
        payload = (
            tuple((t.source, t.destination, t.amount) for t in self.transfers),
            self.reason,
            self.actor,
            tuple(self.metadata.items()),
            *((tuple(self.ceilings.items()),) if self.ceilings else ()),
        )
        return hashlib.blake2b(repr(payload).encode(), digest_size=32).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """A posted, immutable journal entry."""

    id: str
    idempotency_key: str | None
    reason: str
    actor: str
    created_at: datetime
    transfers: tuple[Transfer, ...]
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``Ledger.verify`` found by replaying the journal."""

    entries: int
    accounts: int
    asset_totals: Mapping[str, int]
    balance_mismatches: Mapping[str, tuple[int, int]]
    negative_accounts: Mapping[str, int]
    asset_errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Return whether every balance, every conservation sum and every leg checked out."""
        return (
            not self.balance_mismatches
            and not self.negative_accounts
            and not self.asset_errors
            and all(total == 0 for total in self.asset_totals.values())
        )
