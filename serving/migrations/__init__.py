"""Alembic migrations of the service's tables in the creditx store.

The service keeps its tables (API tokens, idempotent responses, user forecasts,
owners' values: ``serving.tables``) in the market's store but in a chain of its own,
recorded in ``alembic_version_serving``. ``upgrade(url_or_engine)`` runs the market's
chain first and then this one; like the market's, it leaves a store at the newest
revisions as it is without loading Alembic.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from market.migrations import MigrationChain, store_engine
from market.migrations import upgrade as upgrade_market

#: The table that records the service's revision, beside the market's ``alembic_version``.
VERSION_TABLE = "alembic_version_serving"

SERVING_CHAIN = MigrationChain(Path(__file__).resolve().parent, VERSION_TABLE)

__all__ = ["SERVING_CHAIN", "VERSION_TABLE", "current", "upgrade"]


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring the market's chain to its newest revision, then the service's to ``revision``."""
    with store_engine(url_or_engine) as engine:
        upgrade_market(engine)
        SERVING_CHAIN.upgrade(engine, revision)


def current(url_or_engine: str | Engine) -> str | None:
    """Return the service's revision of the store, or ``None`` before its first."""
    with store_engine(url_or_engine) as engine:
        return SERVING_CHAIN.current(engine)
