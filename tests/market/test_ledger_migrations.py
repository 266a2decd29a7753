"""Alembic migrations build the store from empty, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from market.ledger import LedgerError, create_store_engine
from market.migrations import alembic_config, current, head_revision, upgrade

TABLES = {
    "ledger_accounts",
    "ledger_entries",
    "ledger_transfers",
    "rtm_hosts",
    "rtm_instances",
    "rtm_rate_changes",
    "rtm_settings",
    "rtm_tiers",
}


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def tables(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def test_upgrade_from_empty_builds_every_table(store_url: str) -> None:
    assert current(store_url) is None
    assert tables(store_url) == set()
    upgrade(store_url)
    assert current(store_url) == head()
    assert tables(store_url) >= TABLES
    upgrade(store_url)  # a second run is a no-op
    assert current(store_url) == head()


def test_the_newest_revision_read_from_the_files_is_alembics_head() -> None:
    # upgrade() leaves a store at this revision alone without loading Alembic
    assert head_revision() == head()
    assert head_revision() is not None


def test_downgrade_and_upgrade_round_trip(store_url: str) -> None:
    upgrade(store_url, "0001_ledger")
    assert tables(store_url) == {t for t in TABLES if t.startswith("ledger_")}
    upgrade(store_url, "0002_registry")
    assert tables(store_url) == TABLES
    upgrade(store_url)
    engine = create_store_engine(store_url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    engine.dispose()
    assert tables(store_url) == set()


def test_sqlite_store_runs_wal_with_full_sync(sqlite_url: str) -> None:
    engine = create_store_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


def test_store_urls_are_checked() -> None:
    with pytest.raises(LedgerError, match="needs a SQLite file"):
        create_store_engine("sqlite://")
    with pytest.raises(LedgerError, match="unsupported store URL"):
        create_store_engine("mysql://x/y")


MARKET_TABLES = {"market_auctions", "market_limits", "market_orders", "market_trades"}


def test_market_tables_come_from_their_own_revision(store_url: str) -> None:
    from market.venue.handling import t_auctions, t_limits, t_orders, t_trades

    upgrade(store_url, "0004_decisions")
    assert tables(store_url).isdisjoint(MARKET_TABLES)
    upgrade(store_url)
    assert tables(store_url) >= MARKET_TABLES
    engine = create_store_engine(store_url)
    try:
        inspector = sa.inspect(engine)
        for table in (t_auctions, t_limits, t_orders, t_trades):
            migrated = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
            assert migrated == {c.name: c.nullable for c in table.columns}, table.name
            assert inspector.get_pk_constraint(table.name)["constrained_columns"] == [
                c.name for c in table.primary_key.columns
            ]
    finally:
        engine.dispose()
    engine = create_store_engine(store_url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004_decisions")
    engine.dispose()
    assert tables(store_url).isdisjoint(MARKET_TABLES)


def test_the_migrations_build_exactly_the_tables_of_the_one_metadata(store_url: str) -> None:
    from market.schema import market_tables

    upgrade(store_url)
    engine = create_store_engine(store_url)
    try:
        inspector = sa.inspect(engine)
        expected = market_tables()
        built = {t for t in inspector.get_table_names() if not t.startswith("api_")}
        assert built - {"alembic_version"} == set(expected)
        for name, table in expected.items():
            columns = {c["name"] for c in inspector.get_columns(name)}
            assert columns == {c.name for c in table.columns}, name
    finally:
        engine.dispose()
