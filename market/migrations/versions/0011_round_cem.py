"""A market round keeps its CEM interval's decision and how far booking it got, so a
round killed while booking its swaps finishes them exactly once.

Revision ID: 0011_round_cem
Revises: 0010_market_rounds
Create Date: 2027-02-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_round_cem"
down_revision = "0010_market_rounds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("market_rounds") as batch:
        batch.add_column(sa.Column("cem", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("market_rounds") as batch:
        batch.drop_column("cem")
