"""Typed parameters of the flows: what each run is asked to do.

Every flow takes exactly one of these models, so a run's parameters are validated
before any work starts and show in the Prefect UI as one typed form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from models.config import CANDIDATES, DEFAULT_CANDIDATES
from pipelines.errors import InvalidParametersError

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Forecasters a training run chooses from per instance and horizon: the baselines,
#: the global ridge and the global LightGBM, the set ``creditx bench forecast`` scores.
#: Calibration window of a training run's forecasters, in hours: one week of rolling
#: origins chooses and calibrates about as well as two (2,000 synthetic instances:
#: back-test MASE within 0.2 %) at 58 % of the training CPU.
CALIBRATION_HOURS = 168

Runner = Literal["default", "dask"]


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticFleet(_Params):
    """A seeded synthetic fleet to ingest instead of a telemetry file."""

    instances: int = Field(default=20, ge=1, le=1_000_000)
    days: float = Field(default=21.0, gt=0)
    seed: int = 0
    freq: str = "5min"


class IngestParams(_Params):
    """Parameters of the ``ingest`` flow: one telemetry source to snapshot.

    Parameters
    ----------
    source
        A telemetry file (Parquet or CSV in a schema ``data`` reads).
    synthetic
        A synthetic fleet instead of ``source``; exactly one of the two is given.
    home
        Working directory; the snapshot lands in ``home/snapshots``.
    policy
        ``"repair"`` fixes what validation can (clip, dedupe, interpolate short
        gaps); ``"strict"`` rejects every instance with any problem instead.
    format
        The source's schema (``data.loaders.FORMATS``); detected by default.
    columns
        Contract column to the source's column, for a file in its own schema.
    """

    source: Path | None = None
    synthetic: SyntheticFleet | None = None
    home: Path = Path(".creditx")
    policy: Literal["repair", "strict"] = "repair"
    format: Literal["auto", "shared", "contract", "azure", "cloudwatch", "mapped"] = "auto"
    columns: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> IngestParams:
        if (self.source is None) == (self.synthetic is None):
            raise ValueError("give exactly one of source or synthetic")
        return self


class TrackingParams(_Params):
    """Where a flow tracks its runs and finds the registered fleet model."""

    tracking_uri: str
    artifact_root: str
    model_name: str = "creditx-fleet-forecaster"
    fleet: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    registry_uri: str | None = None

    @property
    def experiment(self) -> str:
        """Return the MLflow experiment of this fleet."""
        return f"creditx-{self.fleet}"

    def client(self) -> MlflowClient:
        """Return an MLflow client on this store, after checking it can be reached.

        Raises
        ------
        StoreUnavailableError
            If the store does not answer.
        """
        import mlflow
        from mlflow import MlflowClient

        from pipelines.config import check_tracking_store

        check_tracking_store(self.tracking_uri)
        # The fluent API (log_model, start_run) reads the process-wide URI.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


def check_candidates(names: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``names`` if they name known forecasters, at least one.

    Raises
    ------
    InvalidParametersError
        Naming the unknown ones, before any flow starts.
    """
    if not names:
        raise InvalidParametersError("candidates", "name at least one forecaster")
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise InvalidParametersError(
            "candidates", f"unknown forecaster {', '.join(unknown)}; choose from {CANDIDATES}"
        )
    return names


class TrainParams(_Params):
    """Parameters of the ``train`` flow.

    Parameters
    ----------
    snapshot
        Path of the telemetry snapshot to train on (from the ``ingest`` flow).
    ingest
        Ingest this source first and train on its snapshot, instead of ``snapshot``.
    tracking
        MLflow store, model name and fleet.
    candidates
        Forecaster names the fleet forecaster chooses from per instance and horizon.
    shard_size
        Instances per training shard; shards are fitted in parallel by the task runner.
    backtest_days
        Length of the back-test window at the end of the snapshot.
    calibration_hours
        Hours at the end of each fit's history that every forecaster back-tests from
        rolling origins to choose the model per instance and calibrate its quantiles.
    sample_instances
        Instances drawn in the forecast-against-actual plot.
    seed
        Seed of the forecasters and of the plot's sample.
    promote
        Run the ``promote`` flow on the new version when training ends.
    margin
        Relative improvement in MASE the candidate needs over the champion.
    """

    tracking: TrackingParams
    snapshot: Path | None = None
    ingest: IngestParams | None = None
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    shard_size: int = Field(default=500, ge=1)
    backtest_days: int = Field(default=7, ge=1)
    calibration_hours: int = Field(default=CALIBRATION_HOURS, ge=24)
    sample_instances: int = Field(default=4, ge=0, le=32)
    seed: int = 0
    promote: bool = True
    margin: float = Field(default=0.02, ge=0.0, lt=1.0)

    @field_validator("candidates")
    @classmethod
    def _some_candidates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_candidates(value)

    @model_validator(mode="after")
    def _one_snapshot(self) -> TrainParams:
        if (self.snapshot is None) == (self.ingest is None):
            raise ValueError("give exactly one of snapshot or ingest")
        return self


class PromoteParams(_Params):
    """Parameters of the ``promote`` flow: gate one registered version.

    Parameters
    ----------
    version
        Registered version of the candidate; the newest version by default. It is
        compared with the champion on its own training run's back-test window.
    margin
        Relative improvement in MASE the candidate needs over the champion.
    max_fallback_share
        Largest share of instances allowed on a fallback model before the candidate
        counts as broken.
    """

    tracking: TrackingParams
    version: str | None = None
    margin: float = Field(default=0.02, ge=0.0, lt=1.0)
    max_fallback_share: float = Field(default=0.5, ge=0.0, le=1.0)


class PredictParams(_Params):
    """Parameters of the ``predict`` flow: batch forecasts from the champion.

    Parameters
    ----------
    snapshot
        Newest telemetry to forecast from; else the newest snapshot in
        ``snapshots_dir``; else the champion's own history.
    output_dir
        Directory the API reads forecasts from (``home/predictions``).
    """

    tracking: TrackingParams
    output_dir: Path
    snapshot: Path | None = None
    snapshots_dir: Path | None = None
    alias: str = "champion"


class EvaluateParams(_Params):
    """Parameters of the ``evaluate`` flow: score the served champion on recent telemetry.

    Parameters
    ----------
    snapshot
        Telemetry to score on; the newest snapshot in ``snapshots_dir`` by default.
    backtest_days
        Length of the scored window at the end of the snapshot.
    """

    tracking: TrackingParams
    snapshot: Path | None = None
    snapshots_dir: Path = Path(".creditx/snapshots")
    backtest_days: int = Field(default=7, ge=1)
    alias: str = "champion"


class ReplayParams(_Params):
    """Parameters of the ``replay`` flow: a trace, a scenario and the policies to compare.

    Parameters
    ----------
    source
        A telemetry file in a schema ``data`` reads; validated and put on the replay's
        5-minute grid as ``creditx replay`` does.
    synthetic
        A synthetic fleet instead of ``source``; exactly one of the two is given.
    scenario
        A scenario TOML, or the name of a shipped one; the standard scenario without.
    policies
        The policies to replay; every policy when empty.
    out_dir
        Where ``replay.json`` and ``report.html`` land.
    tracking
        The MLflow store: the run lands in the fleet's replay experiment.
    """

    source: Path | None = None
    synthetic: SyntheticFleet | None = None
    scenario: str | None = None
    policies: tuple[str, ...] = ()
    out_dir: Path = Path(".creditx/replay")
    tracking: TrackingParams

    @model_validator(mode="after")
    def _one_source(self) -> ReplayParams:
        if (self.source is None) == (self.synthetic is None):
            raise ValueError("give exactly one of source or synthetic")
        return self


class TelemetryParams(_Params):
    """Parameters of the ``telemetry`` flow: the drop directory, the store, the snapshot.

    Parameters
    ----------
    ledger_url
        The creditx store the readings are booked in (SQLite or PostgreSQL URL).
    telemetry_dir
        Files dropped in ``telemetry_dir/inbox`` are booked, then moved to ``done/``
        (with what became of each reading) or ``rejected/`` (with the problems).
    allowances_path
        Where the Parquet snapshot of every instance's allowance is written.
    tiers_config
        The tier configuration stored when the store holds no tiers yet.
    late_window_minutes
        How long after an interval ends its reading may still be booked.
    now
        The time of the run (UTC); the system clock when not given.
    """

    ledger_url: str
    telemetry_dir: Path
    allowances_path: Path
    tiers_config: Path | None = None
    late_window_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    now: AwareDatetime | None = None


class MarketRoundParams(_Params):
    """Parameters of the ``market-round`` flow: which API runs the round, and which hour.

    The administrator token is not a parameter (parameters show in the Prefect UI):
    the flow reads it from the environment variable ``token_env`` or, when that is
    unset, from ``token_file``, which only its owner may read (mode 0600).

    Parameters
    ----------
    api_url
        The creditx API, e.g. ``http://127.0.0.1:8000``.
    hour
        Any moment of the hour whose round to run (UTC); the API's current hour when
        not given.
    token_env
        The environment variable holding the administrator token.
    token_file
        The file holding the administrator token when ``token_env`` is unset.
    timeout_seconds
        How long one request may take; a round of ten thousand agents takes seconds.
    """

    api_url: str = Field(pattern=r"^https?://\S+$")
    hour: AwareDatetime | None = None
    token_env: str = Field(default="CREDITX_ADMIN_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = None
    timeout_seconds: float = Field(default=300.0, gt=0)
