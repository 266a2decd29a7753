"""Once the API's tables; they are serving's now, in its own chain.

Revision ID: 0003_api
Revises: 0002_registry
Create Date: 2026-11-24

Bearer tokens, idempotent responses and user forecasts are created by
``serving/migrations`` (revision ``0001_api_tables``), which records itself in
``alembic_version_serving`` and keeps the tables of a store that ran this revision
when it still created them. The revision stays in the chain so that such stores
keep a known revision.
"""

revision = "0003_api"
down_revision = "0002_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
