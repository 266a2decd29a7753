"""The decision log of the agents and the CEM automation.

Revision ID: 0004_decisions
Revises: 0003_api
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_decisions"
down_revision = "0003_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_decision_log_subject", "decision_log", ["kind", "subject", "seq"])


def downgrade() -> None:
    op.drop_index("ix_decision_log_subject", table_name="decision_log")
    op.drop_table("decision_log")
