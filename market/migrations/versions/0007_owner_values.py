"""Owners' values: what a throttled vCPU-minute costs each instance's owner.

Revision ID: 0007_owner_values
Revises: 0006_order_escrow
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_owner_values"
down_revision = "0006_order_escrow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_owner_values",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_owner_values")
