"""Each order's share of its owner's escrow account, on the order's row.

Revision ID: 0006_order_escrow
Revises: 0005_market
Create Date: 2026-11-24

Escrow moved from one ledger account per order to one per instance and asset; the
venue persists each open order's share here. Rows written before stay NULL: the
venue's ``restore`` moves their per-order escrow into the instance's account.
"""

from alembic import op

from market.venue import tables as schema

revision = "0006_order_escrow"
down_revision = "0005_market"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in schema.TABLES:
        for name in schema.ADDED_LATER[revision].get(table.name, ()):
            op.add_column(table.name, schema.column_definition(table.c[name]))


def downgrade() -> None:
    for table in schema.TABLES:
        for name in schema.ADDED_LATER[revision].get(table.name, ()):
            with op.batch_alter_table(table.name) as batch:
                batch.drop_column(name)
