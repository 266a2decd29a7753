"""Collector tokens: a token's kind may be ``collector`` (nine characters).

Revision ID: 0009_collector_tokens
Revises: 0008_live_accrual
Create Date: 2027-01-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_collector_tokens"
down_revision = "0008_live_accrual"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(8), type_=sa.String(16), existing_nullable=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM api_tokens WHERE kind = 'collector'")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(16), type_=sa.String(8), existing_nullable=False
        )
