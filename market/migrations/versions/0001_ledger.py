"""The ledger: accounts, entries and their transfers.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("asset", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
    )
    op.create_index("ix_ledger_entries_reason", "ledger_entries", ["reason"])
    op.create_index("ix_ledger_entries_created_at_us", "ledger_entries", ["created_at_us"])
    # No foreign keys on the journal's legs: the ledger checks every account before it
    # writes, verify() re-checks them, and per-row FK triggers would halve batch settlement.
    op.create_table(
        "ledger_transfers",
        sa.Column("entry_id", sa.String(32), primary_key=True),
        sa.Column("position", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ledger_transfers_source", "ledger_transfers", ["source"])
    op.create_index("ix_ledger_transfers_destination", "ledger_transfers", ["destination"])


def downgrade() -> None:
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_accounts")
