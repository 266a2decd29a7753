"""Alembic migrations of the creditx store (ledger and registry tables).

``upgrade(url_or_engine)`` brings a store to the newest schema; ``creditx store init``
calls it. ``alembic_config(url)`` gives the configuration for any other Alembic command.
A store already at the newest revision (every start of the service finds one) is left
as it is without loading Alembic, which costs a restart a good part of a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.ledger import create_store_engine, read_connection

if TYPE_CHECKING:
    from alembic.config import Config

_HERE = Path(__file__).resolve().parent
# a revision file's own id and its parent's, as Alembic's template writes them
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*=\s*(None|\"[^\"]*\")\s*$", re.M)


def alembic_config(url: str | None = None) -> Config:
    """Return the Alembic configuration of the creditx store, optionally bound to ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """Return the newest revision, read from the revision files without loading Alembic.

    ``None`` if the files do not make one chain of revisions this reading understands
    (a merge, say); Alembic then decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_HERE / "versions").glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text()))
        if set(found) != {"revision", "down_revision"}:
            return None
        revisions.add(found["revision"].strip('"'))
        if found["down_revision"] != "None":
            parents.add(found["down_revision"].strip('"'))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _stored_revisions(engine: Engine) -> list[str]:
    with read_connection(engine) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Upgrade the store at ``url_or_engine`` to ``revision`` (the newest by default)."""
    engine = create_store_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        if revision == "head":
            newest = head_revision()
            if newest is not None and _stored_revisions(engine) == [newest]:
                return
        from alembic import command

        config = alembic_config()
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
