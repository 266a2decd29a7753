"""The venue's tables: orders, trades, standing limits and auction results.

Revision ID: 0005_market
Revises: 0004_decisions
Create Date: 2026-11-24

The tables are built from their one definition in :mod:`market.venue.tables`,
without the columns later revisions add (``schema.ADDED_LATER``).
"""

import sqlalchemy as sa
from alembic import op

from market.venue import tables as schema

revision = "0005_market"
down_revision = "0004_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Stores opened by earlier venues created these tables themselves: keep them.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table in schema.TABLES:
        if table.name in existing:
            continue
        op.create_table(table.name, *schema.columns_at_creation(table))
        for index in table.indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns])


def downgrade() -> None:
    for table in reversed(schema.TABLES):
        for index in table.indexes:
            op.drop_index(index.name, table_name=table.name)
        op.drop_table(table.name)
