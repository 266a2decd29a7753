"""Exceptions of the ledger.

::

    LedgerError
    ├── InvalidAmount            an amount that is not a positive int within bounds
    ├── InvalidRequest           a malformed transfer, entry request or account id
    ├── UnknownAccount           an account that was never opened
    ├── AssetMismatch            accounts holding different assets, or reopened with another
    ├── InsufficientBalance      a non-negative account would end below zero
    ├── CeilingExceeded          an account would end above the ceiling its entry set
    ├── IdempotencyConflict      a reused idempotency key with a different request
    └── StoreUnavailable         the store kept failing (contention, lost connection)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises."""


class InvalidAmount(LedgerError):
    """An amount that is not a positive ``int`` within the ledger's bounds."""

    def __init__(self, amount: object, why: str) -> None:
        self.amount = amount
        super().__init__(f"invalid amount {amount!r}: {why}")


class InvalidRequest(LedgerError):
    """A malformed transfer, entry request or account definition."""


class UnknownAccount(LedgerError):
    """An account id that was never opened."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown account {account!r}: open it before posting to it")


class AssetMismatch(LedgerError):
    """Two accounts of one transfer hold different assets, or an account is reopened."""

    def __init__(self, account: str, asset: str, expected: str) -> None:
        self.account = account
        self.asset = asset
        self.expected = expected
        super().__init__(f"account {account!r} holds {asset!r}, not {expected!r}")


class InsufficientBalance(LedgerError):
    """A posting would leave a non-negative account below zero."""

    def __init__(self, account: str, balance: int, requested: int) -> None:
        self.account = account
        self.balance = balance
        self.requested = requested
        super().__init__(
            f"insufficient balance in {account!r}: holds {balance}, "
            f"the entry takes {requested} out of it"
        )


class CeilingExceeded(LedgerError):
    """A posting would leave an account above the ceiling its entry request set."""

    def __init__(self, account: str, balance: int, ceiling: int) -> None:
        self.account = account
        self.balance = balance
        self.ceiling = ceiling
        super().__init__(
            f"{account!r} may hold at most {ceiling} but would hold {balance} after the entry"
        )


class IdempotencyConflict(LedgerError):
    """An idempotency key reused with a request that differs from the first one."""

    def __init__(self, idempotency_key: str, entry_id: str) -> None:
        self.idempotency_key = idempotency_key
        self.entry_id = entry_id
        super().__init__(
            f"idempotency key {idempotency_key!r} was already used by entry {entry_id} "
            "for a different request"
        )


class StoreUnavailable(LedgerError):
    """The store kept refusing a transaction after every retry."""
