"""The priced pool in the live exchange: a market round keeps its CEM interval's
decision and how far booking it got, the agents that sold all they held and the hour's
pool terms; the accrual keeps each instance's draws and loans of an hour until the next
round settles them, and what lenders are still owed.

Revision ID: 0011_round_pool
Revises: 0010_market_rounds
Create Date: 2027-02-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_round_pool"
down_revision = "0010_market_rounds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("market_rounds") as batch:
        batch.add_column(sa.Column("cem", sa.Text))
        batch.add_column(sa.Column("sellers", sa.Text))
        batch.add_column(sa.Column("terms", sa.Text))
    op.create_table(
        "pool_hours",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("hour_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("drawn", sa.BigInteger, nullable=False),
        sa.Column("lent", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "pool_owed",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("owed", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_owed")
    op.drop_table("pool_hours")
    with op.batch_alter_table("market_rounds") as batch:
        batch.drop_column("terms")
        batch.drop_column("sellers")
        batch.drop_column("cem")
