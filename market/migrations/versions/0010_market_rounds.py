"""The live exchange's hourly market rounds: one row per round, its stage, plan and
record.

Revision ID: 0010_market_rounds
Revises: 0009_collector_tokens
Create Date: 2027-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_market_rounds"
down_revision = "0009_collector_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market_rounds",
        sa.Column("round_id", sa.String(64), primary_key=True),
        sa.Column("hour_us", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("record", sa.Text),
        sa.Column("started_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("market_rounds")
