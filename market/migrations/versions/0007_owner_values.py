"""Once owners' values (``api_owner_values``); serving's own chain creates it now.

Revision ID: 0007_owner_values
Revises: 0006_order_escrow
Create Date: 2026-12-04

See ``serving/migrations`` (revision ``0001_api_tables``); the revision stays in the
chain so that stores that ran it keep a known revision.
"""

revision = "0007_owner_values"
down_revision = "0006_order_escrow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
