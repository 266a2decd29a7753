"""One settings object for the service and the command line, read from ``CREDITX_*``.

Every store lives under one working directory (``CREDITX_HOME``, default ``.creditx``)
unless its own URL is given: the ledger database, the MLflow tracking store and
artifacts, Prefect's home, the batch predictions the API serves, the telemetry
directories the ``telemetry`` flow reads and the allowances snapshot it writes, and the
administrator token file the scheduled ``market-round`` flow reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pipelines.config import OrchestrationConfig
    from pipelines.demo import Workspace
    from pipelines.params import TrackingParams


class Settings(BaseSettings):
    """Configuration of creditx, from environment variables prefixed ``CREDITX_``."""

    model_config = SettingsConfigDict(env_prefix="CREDITX_", extra="forbid", frozen=True)

    home: Path = Field(default=Path(".creditx"), description="working directory of all stores")
    database_url: str | None = Field(
        default=None, description="ledger store; default SQLite file under home"
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow store; default SQLite file under home"
    )
    mlflow_artifact_root: str | None = None
    prefect_api_url: str | None = Field(
        default=None, description="Prefect server API; default the embedded server"
    )
    prefect_database_url: str | None = Field(
        default=None, description="embedded Prefect server's database; default SQLite under home"
    )
    prefect_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="port of `creditx prefect-ui`, where pipeline commands look for it",
    )
    model_name: str = "creditx-fleet-forecaster"
    tiers_config: Path | None = Field(
        default=None, description="tier, host and instance config (TOML); default built in"
    )
    api_host: str = Field(default="127.0.0.1", description="address `creditx serve` binds")
    api_port: int = Field(default=8000, ge=1, le=65535)
    rate_limit_per_second: float = Field(
        default=50.0, gt=0, description="requests per second each API token earns"
    )
    rate_limit_burst: int = Field(
        default=100, ge=1, description="most requests a token makes at once"
    )
    max_body_bytes: int = Field(default=65_536, ge=1024, description="largest request body")
    token_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long a valid token is trusted without a store read"
    )
    forecast_reload_seconds: float = Field(
        default=30.0, gt=0, description="how often the service looks for new forecasts"
    )
    late_window_minutes: int = Field(
        default=60,
        ge=0,
        le=7 * 24 * 60,
        description="how long after a 5-minute interval ends its reading may still be booked",
    )
    telemetry_max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="largest POST /v1/telemetry body"
    )
    api_url: str | None = Field(
        default=None,
        description="the API the market-round flow calls; default where `creditx serve` listens",
    )
    clock_start: AwareDatetime | None = Field(
        default=None,
        description="run the API's market clock from this time (an accelerated clock); "
        "the system clock when not given",
    )
    clock_speed: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="simulated seconds per second"
    )
    clock_origin: AwareDatetime | None = Field(
        default=None,
        description="the wall-clock moment the accelerated clock reads clock_start; "
        "the service's start when not given",
    )

    @cached_property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'ledger.db').resolve()}"

    @cached_property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @cached_property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or (self.home / "mlartifacts").resolve().as_uri()

    @cached_property
    def prefect_home(self) -> Path:
        return (self.home / "prefect").resolve()

    @cached_property
    def predictions_dir(self) -> Path:
        return (self.home / "predictions").resolve()

    @cached_property
    def telemetry_dir(self) -> Path:
        """Where the ``telemetry`` flow finds dropped files (``inbox/``) and moves them."""
        return (self.home / "telemetry").resolve()

    @cached_property
    def allowances_path(self) -> Path:
        """The Parquet snapshot of every instance's allowance the ``telemetry`` flow writes."""
        return (self.home / "allowances" / "allowances.parquet").resolve()

    @cached_property
    def admin_token_file(self) -> Path:
        """The administrator token the scheduled ``market-round`` flow reads (mode 0600)
        when ``CREDITX_ADMIN_TOKEN`` is not set."""
        return (self.home / "secrets" / "admin.token").resolve()

    @property
    def base_url(self) -> str:
        """Return the API's URL: ``api_url``, or where ``creditx serve`` listens."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def market_clock(self) -> Callable[[], datetime]:
        """Return the service's clock: the system clock, or an accelerated one from
        ``clock_start`` at ``clock_speed``."""
        from market.clock import AcceleratedClock, system_clock

        if self.clock_start is None:
            return system_clock
        return AcceleratedClock(self.clock_start, self.clock_speed, origin=self.clock_origin)

    @property
    def late_window(self) -> timedelta:
        """Return the late window as a duration."""
        return timedelta(minutes=self.late_window_minutes)

    # The layers below take explicit parameters; these compose them from the settings.

    def tracking(self, fleet: str = "default") -> TrackingParams:
        """Return where MLflow tracks the fleet's runs and registers its model."""
        from pipelines.params import TrackingParams

        return TrackingParams(
            tracking_uri=self.tracking_uri,
            artifact_root=self.artifact_root,
            model_name=self.model_name,
            fleet=fleet,
        )

    def orchestration_config(self) -> OrchestrationConfig:
        """Return where Prefect keeps its state and which server the flows use."""
        from pipelines.config import OrchestrationConfig

        return OrchestrationConfig(
            prefect_home=self.prefect_home,
            api_url=self.prefect_api_url,
            database_url=self.prefect_database_url,
            local_port=self.prefect_port,
        )

    def workspace(self) -> Workspace:
        """Return every store the pipelines and the exchange write, for the demo."""
        from pipelines.demo import FLEET, Workspace

        return Workspace(
            home=self.home,
            tracking=self.tracking(fleet=FLEET),
            orchestration=self.orchestration_config(),
            ledger_url=self.ledger_url,
            tiers_config=self.tiers_config,
            predictions_dir=self.predictions_dir,
        )


def get_settings() -> Settings:
    """Return the settings of this process, read from the environment."""
    return Settings()
