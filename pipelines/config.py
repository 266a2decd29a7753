"""Where the pipelines keep their state: the MLflow store and Prefect's home.

Both default to one working directory (``CREDITX_HOME``): an MLflow SQLite store
``mlflow.db`` with artifacts under ``mlartifacts/``, and Prefect's home ``prefect/``.
Flows run on the local Prefect server that ``creditx prefect-ui`` keeps (at
:attr:`OrchestrationConfig.local_url`) whenever it answers, so their runs show in its UI and a
command starts in seconds; otherwise on a temporary server of their own. Either store
moves to PostgreSQL or a remote server through ``CREDITX_MLFLOW_TRACKING_URI``,
``CREDITX_PREFECT_API_URL`` or ``CREDITX_PREFECT_DATABASE_URL``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from data.errors import TelemetryError
from models.errors import ForecastError
from pipelines.errors import PipelineError, StoreUnavailableError

# A store that does not answer within this many seconds is reported unreachable.
_CONNECT_TIMEOUT_S = 5

_USER_ERRORS = (TelemetryError, ForecastError, PipelineError)

#: Where ``creditx prefect-ui`` serves Prefect's API and UI on this machine, unless
#: ``CREDITX_PREFECT_PORT`` moves it (:attr:`OrchestrationConfig.local_port`).
LOCAL_PREFECT_HOST = "127.0.0.1"
LOCAL_PREFECT_PORT = 4200

# Prefect's and MLflow's defaults that do not suit a command line: usage telemetry
# (the server's writes lock the embedded SQLite database; without internet every
# attempt logs an error), INFO lines of every task and store migration on the console
# (they stay in the Prefect UI), and a slow first migration of a fresh database.
_PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",  # the Prefect client's own usage events
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}


class OrchestrationConfig(BaseModel):
    """Where Prefect keeps its state: its home, and optionally a server or database."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefect_home: Path
    api_url: str | None = None
    database_url: str | None = None
    local_port: int = LOCAL_PREFECT_PORT

    @property
    def local_url(self) -> str:
        """Return the API URL of the local server ``creditx prefect-ui`` runs."""
        return f"http://{LOCAL_PREFECT_HOST}:{self.local_port}/api"

    def environment(self) -> dict[str, str]:
        """Return the ``PREFECT_*`` variables that point Prefect at this configuration."""
        env = {"PREFECT_HOME": str(self.prefect_home)}
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = _async_database_url(self.database_url)
        return env

    def server_environment(self) -> dict[str, str]:
        """Return the environment of a Prefect server or client of this configuration."""
        env = dict(_PREFECT_DEFAULTS)
        env.update({k: v for k, v in os.environ.items() if k in _PREFECT_DEFAULTS})
        env.update(self.environment())
        return env

    def apply(self) -> str | None:
        """Export the Prefect settings into this process, before Prefect reads them.

        Returns
        -------
        str | None
            The URL of the local Prefect server the flows will run on, when
            ``creditx prefect-ui`` runs one and no other server is configured.
        """
        from pipelines.servers import answers

        self.prefect_home.mkdir(parents=True, exist_ok=True)
        for name, value in _PREFECT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        os.environ.update(self.environment())
        configured = self.api_url is not None or "PREFECT_API_URL" in os.environ
        if not configured and answers(f"{self.local_url}/health", timeout=0.3):
            os.environ["PREFECT_API_URL"] = self.local_url
            return self.local_url
        return None


class _UserErrorsStayOff(logging.Filter):
    # A flow that fails on the user's input (a bad file, no champion yet) has its
    # message printed once by the command; its traceback stays in the Prefect UI.
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, _USER_ERRORS)


def quiet_user_errors() -> None:
    """Keep tracebacks of user errors in flows off Prefect's console (they reach its UI)."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(
            isinstance(f, _UserErrorsStayOff) for f in handler.filters
        ):
            handler.addFilter(_UserErrorsStayOff())


def _async_database_url(url: str) -> str:
    # Prefect's server talks to its database through async drivers.
    for sync, async_ in (
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(sync):
            return async_ + url[len(sync) :]
    return url


def check_tracking_store(uri: str) -> None:
    """Check that the MLflow store at ``uri`` answers, without MLflow's long retries.

    Parameters
    ----------
    uri
        An MLflow tracking URI: a database URL, ``http(s)://`` or a ``file:`` path.

    Raises
    ------
    StoreUnavailableError
        If the database refuses a connection, the server does not answer, or the
        directory of a SQLite or file store cannot be created.
    """
    scheme = uri.split(":", 1)[0].lower()
    try:
        if scheme.startswith("sqlite"):
            path = uri.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        elif scheme in ("http", "https"):
            httpx.get(f"{uri.rstrip('/')}/health", timeout=_CONNECT_TIMEOUT_S).raise_for_status()
        elif scheme in ("file", "") or "://" not in uri:
            Path(uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        else:
            engine = sa.create_engine(uri, connect_args={"connect_timeout": _CONNECT_TIMEOUT_S})
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("select 1")
            finally:
                engine.dispose()
    except (OSError, sa.exc.SQLAlchemyError, ImportError, httpx.HTTPError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailableError("MLflow", uri, reason) from exc
