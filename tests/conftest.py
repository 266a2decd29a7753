"""Fixtures shared by the whole suite.

PostgreSQL tests take the ``pg_url`` fixture: a fresh schema on the server named by
``CREDITX_TEST_PG_URL`` (default ``postgresql://127.0.0.1:5432/test``), dropped after the
test. Without a reachable server they skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
AZURE_TRACE = SHARED_DATA / "azure_v1_100vms.parquet"

_DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"


def _sqlalchemy_pg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if "+" not in url else url


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The SQLAlchemy URL of the test PostgreSQL server, or a skip/fail saying why not."""
    url = _sqlalchemy_pg_url(os.environ.get("CREDITX_TEST_PG_URL", _DEFAULT_PG_URL))
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {url}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true requires the PostgreSQL tests to run)")
        pytest.skip(f"{reason}; set CREDITX_TEST_PG_URL to run the PostgreSQL tests")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A SQLAlchemy URL whose connections use a fresh schema, dropped afterwards."""
    with pg_schema(pg_server_url) as url:
        yield url


@contextmanager
def pg_schema(pg_server_url: str) -> Iterator[str]:
    """Yield a SQLAlchemy URL whose connections use a fresh schema; drop it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_server_url else "?"
    try:
        yield f"{pg_server_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(scope="session")
def azure_trace() -> Path:
    """The real Azure V1 trace of ``../shared/data``; skip where it is not beside the repo."""
    if not AZURE_TRACE.exists():
        pytest.skip(f"the shared Azure trace is not at {AZURE_TRACE}")
    return AZURE_TRACE
