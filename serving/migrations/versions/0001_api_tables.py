"""The service's tables: bearer tokens, idempotent responses, user forecasts, owners' values.

Revision ID: 0001_api_tables
Revises:
Create Date: 2027-01-20

The market's chain created these tables once (its revisions ``0003_api``,
``0007_owner_values`` and ``0009_collector_tokens``, now empty). A store that ran
those keeps its tables and rows: this revision creates only the tables that are
missing, and widens a token's kind a store left at eight characters.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_api_tables"
down_revision = None
branch_labels = None
depends_on = None

_KIND_LENGTH = 16  # ``collector`` and any later kind of token


def _tables() -> dict[str, list[sa.Column[object]]]:
    return {
        "api_tokens": [
            sa.Column("token_id", sa.String(32), primary_key=True),
            sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("kind", sa.String(_KIND_LENGTH), nullable=False),
            sa.Column("subject", sa.String(200), nullable=False),
            sa.Column("created_at_us", sa.BigInteger, nullable=False),
            sa.Column("revoked_at_us", sa.BigInteger),
        ],
        "api_idempotency": [
            sa.Column("scope", sa.String(200), primary_key=True),
            sa.Column("idempotency_key", sa.String(128), primary_key=True),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("status_code", sa.Integer, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("created_at_us", sa.BigInteger, nullable=False),
        ],
        "api_user_forecasts": [
            sa.Column("instance_id", sa.String(200), primary_key=True),
            sa.Column("document", sa.Text, nullable=False),
            sa.Column("updated_at_us", sa.BigInteger, nullable=False),
            sa.Column("updated_by", sa.String(200), nullable=False),
        ],
        "api_owner_values": [
            sa.Column("instance_id", sa.String(200), primary_key=True),
            sa.Column("value", sa.BigInteger, nullable=False),
            sa.Column("updated_at_us", sa.BigInteger, nullable=False),
            sa.Column("updated_by", sa.String(200), nullable=False),
        ],
    }


def _widen_token_kind(inspector: sa.Inspector) -> None:
    kind = next(c for c in inspector.get_columns("api_tokens") if c["name"] == "kind")
    length = getattr(kind["type"], "length", None)
    if length is not None and length < _KIND_LENGTH:
        with op.batch_alter_table("api_tokens") as batch:
            batch.alter_column(
                "kind",
                existing_type=sa.String(length),
                type_=sa.String(_KIND_LENGTH),
                existing_nullable=False,
            )


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    kept = {name for name in _tables() if inspector.has_table(name)}
    for name, columns in _tables().items():
        if name not in kept:
            op.create_table(name, *columns)
    if "api_tokens" in kept:
        _widen_token_kind(inspector)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
