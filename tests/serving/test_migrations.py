"""The service's tables come from its own migration chain, on SQLite and PostgreSQL.

Stores built before that chain existed hold the same tables, created by the market's
revisions ``0003_api``, ``0007_owner_values`` and ``0009_collector_tokens`` as they
were then; :func:`_legacy_store` rebuilds such a store with those revisions' own
operations, and the new code must keep its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from market import migrations as market_migrations
from market.ledger import create_store_engine
from serving import migrations
from serving.owner_values import OwnerValueStore
from serving.tables import metadata
from serving.tokens import TokenKind, TokenStore

API_TABLES = {"api_idempotency", "api_owner_values", "api_tokens", "api_user_forecasts"}
NOW = datetime(2027, 1, 20, 12, tzinfo=UTC)


def clock() -> datetime:
    return NOW


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    store = create_store_engine(url)
    yield store
    store.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _old_0003_api(op: Operations) -> None:
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger),
    )
    op.create_table(
        "api_idempotency",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_user_forecasts",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def _old_0007_owner_values(op: Operations) -> None:
    op.create_table(
        "api_owner_values",
        sa.Column("instance_id", sa.String(200), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def _old_0009_collector_tokens(op: Operations) -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(8), type_=sa.String(16), existing_nullable=False
        )


def _legacy_store(engine: Engine, market_revision: str) -> None:
    # the market's chain to ``market_revision`` as it ran when it owned the API's tables
    market_migrations.upgrade(engine, market_revision)
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        _old_0003_api(op)
        _old_0007_owner_values(op)
        if market_revision == "0009_collector_tokens":
            _old_0009_collector_tokens(op)


def test_a_new_store_gets_the_api_tables_from_the_services_chain_only(engine: Engine) -> None:
    market_migrations.upgrade(engine)
    assert table_names(engine).isdisjoint(API_TABLES)
    migrations.upgrade(engine)
    assert table_names(engine) >= API_TABLES | {migrations.VERSION_TABLE}
    assert migrations.current(engine) == migrations.SERVING_CHAIN.head() == "0001_api_tables"
    assert market_migrations.current(engine) == market_migrations.head_revision()
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        migrated = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name: c.nullable for c in table.columns}, table.name
    migrations.upgrade(engine)  # a second run is a no-op
    assert migrations.current(engine) == "0001_api_tables"


def test_the_services_chain_runs_on_an_empty_store_after_the_markets(engine: Engine) -> None:
    migrations.upgrade(engine)
    assert market_migrations.current(engine) == market_migrations.head_revision()
    assert migrations.current(engine) == "0001_api_tables"


def test_a_store_built_when_the_market_owned_the_api_tables_keeps_its_rows(
    engine: Engine,
) -> None:
    _legacy_store(engine, "0009_collector_tokens")
    issued = TokenStore(engine, clock).issue(TokenKind.COLLECTOR, "rack-7")
    OwnerValueStore(engine, clock).set("vm-1", 1_250, "owner@example")
    assert migrations.current(engine) is None

    migrations.upgrade(engine)

    assert migrations.current(engine) == "0001_api_tables"
    principal = TokenStore(engine, clock).authenticate(issued.token)
    assert principal is not None
    assert principal.kind is TokenKind.COLLECTOR
    assert principal.subject == "rack-7"
    kept = OwnerValueStore(engine, clock).get("vm-1")
    assert kept is not None
    assert (kept.value, kept.updated_by) == (1_250, "owner@example")


def test_a_store_from_before_collector_tokens_gets_the_wide_kind(engine: Engine) -> None:
    _legacy_store(engine, "0008_live_accrual")
    agent = TokenStore(engine, clock).issue(TokenKind.AGENT, "vm-1")
    kind = next(c for c in sa.inspect(engine).get_columns("api_tokens") if c["name"] == "kind")
    assert kind["type"].length == 8

    migrations.upgrade(engine)

    kind = next(c for c in sa.inspect(engine).get_columns("api_tokens") if c["name"] == "kind")
    assert kind["type"].length == 16
    tokens = TokenStore(engine, clock)
    collector = tokens.issue(TokenKind.COLLECTOR, "rack-7")
    assert tokens.authenticate(agent.token) is not None
    assert tokens.authenticate(collector.token) is not None
    assert market_migrations.current(engine) == market_migrations.head_revision()


def test_the_services_chain_downgrades_without_touching_the_markets(engine: Engine) -> None:
    migrations.upgrade(engine)
    config = migrations.SERVING_CHAIN.config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert table_names(engine).isdisjoint(API_TABLES)
    assert market_migrations.current(engine) == market_migrations.head_revision()
    migrations.upgrade(engine)
    assert table_names(engine) >= API_TABLES
