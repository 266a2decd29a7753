"""The service's own tables in the creditx store: API tokens, idempotent responses,
user-defined forecasts and owners' values, created by the service's own migrations
(``serving.migrations``, versioned apart from the market's tables)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_us", sa.BigInteger),
)

api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("idempotency_key", sa.String(128), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

api_user_forecasts = sa.Table(
    "api_user_forecasts",
    metadata,
    sa.Column("instance_id", sa.String(200), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)

api_owner_values = sa.Table(
    "api_owner_values",
    metadata,
    sa.Column("instance_id", sa.String(200), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
