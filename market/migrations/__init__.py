"""Alembic migrations of the creditx store (ledger and registry tables).

``upgrade(url_or_engine)`` brings a store to the newest schema; ``creditx store init``
calls it. ``alembic_config(url)`` gives the configuration for any other Alembic command.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from market.ledger import create_store_engine

_HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """Return the Alembic configuration of the creditx store, optionally bound to ``url``."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Upgrade the store at ``url_or_engine`` to ``revision`` (the newest by default)."""
    engine = create_store_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    config = alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def current(url_or_engine: str | Engine) -> str | None:
    """Return the revision the store is at, or ``None`` for an empty store."""
    from alembic.runtime.migration import MigrationContext

    engine = create_store_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
