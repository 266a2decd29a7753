"""The double-entry ledger: every credit and every unit of money moves through it.

Assets are ``credits:<tier>`` (integer milli-credits) and ``funds`` (integer minor
units). Each account holds one asset; only mint, burn and conversion accounts may go
negative. An entry is a tuple of transfers posted atomically, at most once per
idempotency key. ``SqlStore`` (SQLite or PostgreSQL) and ``MemoryStore`` hold it.
"""

from market.ledger._errors import (
    AssetMismatch,
    CeilingExceeded,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidAmount,
    InvalidRequest,
    LedgerError,
    StoreUnavailable,
    UnknownAccount,
)
from market.ledger._ledger import Clock, Ledger
from market.ledger._model import (
    FEES_ACCOUNT,
    FUNDS,
    MAX_AMOUNT,
    Account,
    AccountKind,
    Entry,
    EntryRequest,
    MetadataValue,
    Transfer,
    VerifyReport,
    burn_account,
    check_amount,
    conversion_account,
    credits_asset,
    escrow_account,
    escrow_credits,
    escrow_funds,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
    rounding_account,
)
from market.ledger._sql import SqlStore, create_store_engine, read_connection
from market.ledger._store import ExtraWrites, MemoryStore, Store

__all__ = [
    "FEES_ACCOUNT",
    "FUNDS",
    "MAX_AMOUNT",
    "Account",
    "AccountKind",
    "AssetMismatch",
    "CeilingExceeded",
    "Clock",
    "Entry",
    "EntryRequest",
    "ExtraWrites",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidAmount",
    "InvalidRequest",
    "Ledger",
    "LedgerError",
    "MemoryStore",
    "MetadataValue",
    "SqlStore",
    "Store",
    "StoreUnavailable",
    "Transfer",
    "UnknownAccount",
    "VerifyReport",
    "burn_account",
    "check_amount",
    "conversion_account",
    "create_store_engine",
    "credits_asset",
    "escrow_account",
    "escrow_credits",
    "escrow_funds",
    "instance_credits",
    "instance_funds",
    "mint_account",
    "pool_account",
    "read_connection",
    "rounding_account",
]
