"""The live accrual: pending readings, booked (instance, interval) keys, allowances
and the cursor of their feed.

Revision ID: 0008_live_accrual
Revises: 0007_owner_values
Create Date: 2027-01-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_live_accrual"
down_revision = "0007_owner_values"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accrual_pending",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("interval_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("cpu_micro", sa.BigInteger, nullable=False),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "accrual_booked",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("interval_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("cpu_micro", sa.BigInteger, nullable=False),
        sa.Column("earned", sa.BigInteger, nullable=False),
        sa.Column("demand", sa.BigInteger, nullable=False),
        sa.Column("spent", sa.BigInteger, nullable=False),
        sa.Column("from_pool", sa.BigInteger, nullable=False),
        sa.Column("to_pool", sa.BigInteger, nullable=False),
        sa.Column("forfeited", sa.BigInteger, nullable=False),
        sa.Column("throttled", sa.BigInteger, nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("booking_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "accrual_allowances",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("interval_us", sa.BigInteger, nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("throttled", sa.SmallInteger, nullable=False),
        sa.Column("last_throttled", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_accrual_allowances_seq", "accrual_allowances", ["seq"], unique=True)
    feed = op.create_table(
        "accrual_feed",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(feed, [{"id": 1, "seq": 0}])


def downgrade() -> None:
    op.drop_table("accrual_feed")
    op.drop_index("ix_accrual_allowances_seq", table_name="accrual_allowances")
    op.drop_table("accrual_allowances")
    op.drop_table("accrual_booked")
    op.drop_table("accrual_pending")
