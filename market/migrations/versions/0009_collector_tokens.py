"""Once widened a token's kind for ``collector``; serving's own chain does it now.

Revision ID: 0009_collector_tokens
Revises: 0008_live_accrual
Create Date: 2027-01-11

``serving/migrations`` (revision ``0001_api_tables``) creates ``api_tokens`` with the
wide kind and widens the kind of a store that never ran this revision when it still
did; the revision stays in the chain so that stores that ran it keep a known revision.
"""

revision = "0009_collector_tokens"
down_revision = "0008_live_accrual"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
