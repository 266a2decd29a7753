"""Alembic migrations of the creditx store (ledger, registry and market tables).

``upgrade(url_or_engine)`` brings a store to the newest schema; ``creditx store init``
calls it. ``alembic_config(url)`` gives the configuration for any other Alembic command.
A store already at the newest revision (every start of the service finds one) is left
as it is without loading Alembic, which costs a restart a good part of a second.

:class:`MigrationChain` is that logic for any chain of revisions with a version table
of its own: the service keeps its tables in one beside this one (``serving.migrations``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class MigrationChain:
    """A chain of Alembic revisions in ``directory`` that records itself in ``version_table``.

    The chain's ``env.py`` must configure Alembic with the same ``version_table``.
    """

    directory: Path
    version_table: str

    def config(self, url: str | None = None) -> Config:
        """Return the chain's Alembic configuration, optionally bound to ``url``."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(self.directory))
        if url is not None:
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        return config

    def head(self) -> str | None:
        """Return the newest revision, read from the revision files without loading Alembic.

        ``None`` if the files do not make one chain of revisions this reading understands
        (a merge, say); Alembic then decides.
        """
        revisions: set[str] = set()
        parents: set[str] = set()
        for path in (self.directory / "versions").glob("*.py"):
            found = dict(_REVISION_LINE.findall(path.read_text()))
            if set(found) != {"revision", "down_revision"}:
                return None
            revisions.add(found["revision"].strip('"'))
            if found["down_revision"] != "None":
                parents.add(found["down_revision"].strip('"'))
        heads = revisions - parents
        return heads.pop() if len(heads) == 1 and parents <= revisions else None

    def stored(self, engine: Engine) -> list[str]:
        """Return the revisions the store records for this chain, without loading Alembic."""
        with read_connection(engine) as conn:
            if not sa.inspect(conn).has_table(self.version_table):
                return []
            query = f"SELECT version_num FROM {self.version_table}"
            return list(conn.exec_driver_sql(query).scalars())

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        """Upgrade the store at ``engine`` to ``revision`` of this chain."""
        if revision == "head":
            newest = self.head()
            if newest is not None and self.stored(engine) == [newest]:
                return
        from alembic import command

        config = self.config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def current(self, engine: Engine) -> str | None:
        """Return the revision of this chain the store is at, or ``None`` before its first."""
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
            return context.get_current_revision()


#: The market's chain: ledger, registry, decisions, venue and live accrual tables.
STORE_CHAIN = MigrationChain(_HERE, "alembic_version")


def alembic_config(url: str | None = None) -> Config:
    """Return the Alembic configuration of the creditx store, optionally bound to ``url``."""
    return STORE_CHAIN.config(url)


def head_revision() -> str | None:
    """Return the newest revision of the store's chain, read without loading Alembic."""
    return STORE_CHAIN.head()


@contextmanager
def store_engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    """Yield the engine of ``url_or_engine``; one opened from a URL is disposed after."""
    if not isinstance(url_or_engine, str):
        yield url_or_engine
        return
    engine = create_store_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Upgrade the store at ``url_or_engine`` to ``revision`` (the newest by default)."""
    with store_engine(url_or_engine) as engine:
        STORE_CHAIN.upgrade(engine, revision)


def current(url_or_engine: str | Engine) -> str | None:
    """Return the revision the store is at, or ``None`` for an empty store."""
    with store_engine(url_or_engine) as engine:
        return STORE_CHAIN.current(engine)
