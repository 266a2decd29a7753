"""The ledger's tables (SQLAlchemy Core); the Alembic migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

from market.schema import metadata

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("asset", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
)

entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(200), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("metadata", sa.Text, nullable=False),
)

transfers = sa.Table(
    "ledger_transfers",
    metadata,
    sa.Column("entry_id", sa.String(32), primary_key=True),
    sa.Column("position", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("destination", sa.String(200), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Index("ix_ledger_transfers_source", "source"),
    sa.Index("ix_ledger_transfers_destination", "destination"),
)
