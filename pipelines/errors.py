"""Errors of the ``pipelines`` package.

::

    PipelineError                          root: every error this package raises
    ├── InvalidParametersError (ValueError) flow parameters that cannot be run
    ├── SnapshotError                      a telemetry snapshot that cannot be used
    │   └── EmptySnapshotError             nothing left after validation
    ├── StoreUnavailableError              the MLflow or Prefect store cannot be reached
    ├── ModelNotFoundError (LookupError)   no registered version under a name or alias
    ├── BrokenModelError                   a model that fails its checks; never promoted
    └── MarketRoundError                   the API refused or failed an hour's market round

The pyfunc model raises :class:`mlflow.exceptions.MlflowException` with
``INVALID_PARAMETER_VALUE`` instead, as MLflow's serving layer expects.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised by :mod:`pipelines`."""


class InvalidParametersError(PipelineError, ValueError):
    """Flow parameters that cannot be run; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class SnapshotError(PipelineError):
    """A telemetry snapshot that cannot be read, written or used."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"telemetry snapshot from {source}: {reason}")


class EmptySnapshotError(SnapshotError):
    """Telemetry with no usable row: empty, or every instance rejected by validation.

    ``rows`` counts the rows read and ``rejected`` the instances validation rejected.
    """

    def __init__(self, source: str, rows: int, rejected: int) -> None:
        self.rows = rows
        self.rejected = rejected
        reason = (
            "it holds no rows"
            if rows == 0
            else f"validation rejected every instance ({rejected} instances, {rows} rows)"
        )
        super().__init__(source, reason)


class StoreUnavailableError(PipelineError):
    """A tracking, registry or orchestration store that cannot be reached."""

    def __init__(self, store: str, uri: str, reason: str) -> None:
        self.store = store
        self.uri = uri
        self.reason = reason
        super().__init__(f"the {store} store at {uri} cannot be reached: {reason}")


class ModelNotFoundError(PipelineError, LookupError):
    """No registered model version under ``name`` (and ``alias`` if given)."""

    def __init__(self, name: str, alias: str | None = None) -> None:
        self.name = name
        self.alias = alias
        where = f"{name}@{alias}" if alias else name
        super().__init__(f"no registered model version {where}")


class BrokenModelError(PipelineError):
    """A model version that fails its checks; ``reason`` says which."""

    def __init__(self, version: str, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(f"model version {version} is broken: {reason}")


class MarketRoundError(PipelineError):
    """The API refused or failed a market round; ``status`` is its HTTP status (``None``
    when it did not answer) and ``detail`` what it said or why it did not answer."""

    def __init__(self, api_url: str, status: int | None, detail: str) -> None:
        self.api_url = api_url
        self.status = status
        self.detail = detail
        what = "did not answer" if status is None else f"answered {status}"
        super().__init__(f"the market round at {api_url} {what}: {detail}")

    @property
    def transient(self) -> bool:
        """Whether asking again may succeed: no answer, or a server error (a round
        is idempotent by its hour, so asking again books nothing twice)."""
        return self.status is None or self.status >= 500
