"""The Resource Tier Manager's registry: tiers, hosts, instances, settings, rate audit.

Revision ID: 0002_registry
Revises: 0001_ledger
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_registry"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rtm_tiers",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("cpu_ghz", sa.String(40), nullable=False),
        sa.Column("memory_gib_per_vcpu", sa.String(40), nullable=False),
        sa.Column("ssd", sa.String(40), nullable=False),
        sa.Column("network_gbps", sa.String(40), nullable=False),
        sa.Column("baseline_bps", sa.Integer, nullable=False),
        sa.Column("exchange_rate", sa.BigInteger, nullable=False),
        sa.Column("pool_horizon_hours", sa.Integer, nullable=False),
    )
    op.create_table(
        "rtm_hosts",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
    )
    op.create_table(
        "rtm_instances",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("pool_draw", sa.Boolean, nullable=False),
    )
    op.create_table(
        "rtm_settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "rtm_rate_changes",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        ),
        sa.Column("tier", sa.String(100), sa.ForeignKey("rtm_tiers.name"), nullable=False),
        sa.Column("old_rate", sa.BigInteger, nullable=False),
        sa.Column("new_rate", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rtm_rate_changes_tier", "rtm_rate_changes", ["tier"])


def downgrade() -> None:
    op.drop_table("rtm_rate_changes")
    op.drop_table("rtm_settings")
    op.drop_table("rtm_instances")
    op.drop_table("rtm_hosts")
    op.drop_table("rtm_tiers")
