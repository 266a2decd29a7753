"""The forecasts the service serves, and their reload when the champion moves.

Two sources feed one in-memory snapshot that requests read without waiting:

* the batch predictions of the ``predict`` flow (``<home>/predictions``:
  ``forecasts.parquet`` and ``manifest.json``), reloaded whenever the manifest changes;
* the MLflow champion (``models:/NAME@champion``): when the alias moves to a version
  the batch predictions do not come from yet, the reloader scores the new champion
  itself and serves that until the predictions catch up.

Reloading runs in a background thread; a failed reload keeps the previous snapshot,
so requests never fail or block on it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from data.forecasts import MEDIAN_COL, UPPER_COL
from data.forecasts import QUANTILE_COLUMNS as ALL_QUANTILES

if TYPE_CHECKING:
    import pandas as pd

    from market.agents.forecast import InstanceForecast
    from models.user import UserForecast

# pandas (and models.user, built on it) load with the first forecasts read: a service
# restarting over a store without predictions answers a second or so sooner

logger = logging.getLogger(__name__)

#: Hours ahead of each horizon the service serves.
QUANTILE_COLUMNS = (MEDIAN_COL, UPPER_COL)
#: Served where the predictions carry it (every version trained since they do).
OPTIONAL_QUANTILE_COLUMNS = tuple(c for c in ALL_QUANTILES if c not in QUANTILE_COLUMNS)

# Seconds a stopping service waits for a reload under way.
_STOP_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class ForecastSeries:
    """One instance's forecast over one horizon, hour by hour."""

    instance_id: str
    horizon: str
    ds: tuple[datetime, ...]
    yhat: tuple[float, ...]
    quantiles: Mapping[str, tuple[float, ...]]
    sources: tuple[str, ...]


@dataclass(slots=True)
class ForecastSnapshot:
    """Every instance's forecasts from one model version."""

    model_name: str
    model_version: str
    generated_at: datetime
    origin: str
    series: dict[tuple[str, str], ForecastSeries]
    rendered: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)

    @property
    def instance_ids(self) -> list[str]:
        """Return the instances forecast, sorted."""
        return sorted({key[0] for key in self.series})


class ChampionSource(Protocol):
    """Where the champion model lives: the version its alias points at."""

    model_name: str

    def version(self) -> str | None:
        """Return the version the champion alias points at, or ``None``."""


class MlflowChampion:
    """The champion alias of a registered model in an MLflow tracking store.

    Parameters
    ----------
    tracking_uri
        The MLflow tracking (and registry) store.
    model_name
        The registered model.
    alias
        The alias served.
    """

    def __init__(self, tracking_uri: str, model_name: str, alias: str = "champion") -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias

    def version(self) -> str | None:
        """Return the version the alias points at, or ``None`` if it points nowhere."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        try:
            return str(client.get_model_version_by_alias(self.model_name, self.alias).version)
        except MlflowException:
            return None


def snapshot_from_frame(
    frame: pd.DataFrame, *, model_name: str, model_version: str, generated_at: datetime, origin: str
) -> ForecastSnapshot:
    """Build a snapshot from a frame of ``unique_id, horizon, ds, yhat, q50, q90[, source]``."""
    import pandas as pd

    missing = {"unique_id", "horizon", "ds", "yhat", *QUANTILE_COLUMNS} - set(frame.columns)
    if missing:
        raise ValueError(f"the forecast frame lacks column(s) {sorted(missing)}")
    frame = frame.sort_values(["unique_id", "horizon", "ds"], ignore_index=True)
    ds_all = pd.to_datetime(frame["ds"], utc=True)
    sources_all = frame["source"] if "source" in frame.columns else None
    series: dict[tuple[str, str], ForecastSeries] = {}
    key: Any
    for key, rows in frame.groupby(["unique_id", "horizon"], sort=False):
        unique_id, horizon = str(key[0]), str(key[1])
        sources = (
            tuple(str(s) for s in sources_all.loc[rows.index])
            if sources_all is not None
            else ("learned",) * len(rows)
        )
        series[(unique_id, horizon)] = ForecastSeries(
            instance_id=unique_id,
            horizon=horizon,
            ds=tuple(t.to_pydatetime() for t in ds_all.loc[rows.index]),
            yhat=tuple(float(v) for v in rows["yhat"]),
            quantiles={
                q: tuple(float(v) for v in rows[q])
                for q in (*OPTIONAL_QUANTILE_COLUMNS, *QUANTILE_COLUMNS)
                if q in rows
            },
            sources=sources,
        )
    return ForecastSnapshot(model_name, model_version, generated_at, origin, series)


def read_batch_predictions(directory: Path) -> ForecastSnapshot | None:
    """Read the ``predict`` flow's output in ``directory``; ``None`` if there is none yet."""
    manifest_path = directory / "manifest.json"
    forecasts_path = directory / "forecasts.parquet"
    if not manifest_path.exists() or not forecasts_path.exists():
        return None
    import pandas as pd

    manifest = json.loads(manifest_path.read_text())
    frame = pd.read_parquet(forecasts_path)
    return snapshot_from_frame(
        frame,
        model_name=str(manifest["model_name"]),
        model_version=str(manifest["model_version"]),
        generated_at=pd.Timestamp(manifest["generated_at"]).to_pydatetime(),
        origin="batch",
    )


def apply_user_forecast(series: ForecastSeries, user: UserForecast) -> ForecastSeries:
    """Return ``series`` with the owner's values where the user forecast gives them."""
    import pandas as pd

    from models.user import override_forecast

    replaced, sources = override_forecast(
        user,
        pd.DatetimeIndex(series.ds),
        {
            "yhat": np.asarray(series.yhat),
            **{q: np.asarray(v) for q, v in series.quantiles.items()},
        },
        np.asarray(series.sources, dtype=object),
    )
    return ForecastSeries(
        series.instance_id,
        series.horizon,
        series.ds,
        tuple(float(v) for v in replaced.pop("yhat")),
        {q: tuple(float(v) for v in column) for q, column in replaced.items()},
        tuple(str(s) for s in sources),
    )


def agent_forecasts(
    snapshot: ForecastSnapshot | None, user_forecast: Callable[[str], UserForecast | None]
) -> dict[str, InstanceForecast]:
    """Return every instance's served forecast as its agent reads it.

    What ``GET /v1/instances/{id}/forecast`` serves, for every instance at once: the
    snapshot's series with the owner's user forecast applied where there is one, through
    the one adapter (:func:`~market.agents.forecast.horizon_forecast`).
    """
    from market.agents.forecast import InstanceForecast, horizon_forecast

    if snapshot is None:
        return {}
    horizons: dict[str, dict[str, Any]] = {}
    for (instance_id, horizon), series in snapshot.series.items():
        user = user_forecast(instance_id)
        if user is not None:
            series = apply_user_forecast(series, user)
        columns = {"yhat": series.yhat, **series.quantiles}
        horizons.setdefault(instance_id, {})[horizon] = horizon_forecast(columns)
    return {
        instance_id: InstanceForecast(snapshot.generated_at, found, snapshot.model_version)
        for instance_id, found in horizons.items()
    }


class ForecastStore:
    """The snapshot requests read, kept current by :meth:`refresh`.

    Parameters
    ----------
    predictions_dir
        Where the ``predict`` flow writes its batch predictions.
    champion
        The MLflow champion whose version the status reports beside the served one, so a
        caller sees when the predict flow has not caught up (``stale``); ``None`` reports
        none. The service serves the predict flow's output only: it never scores a model.
    clock
        The service's clock.
    """

    def __init__(
        self,
        predictions_dir: Path,
        champion: ChampionSource | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.predictions_dir = predictions_dir
        self.champion = champion
        self._clock = clock
        self._batch: ForecastSnapshot | None = None
        self._batch_mark: tuple[int, int] | None = None
        self.champion_version: str | None = None
        self.current: ForecastSnapshot | None = None
        self.last_error: str | None = None
        # Set once the first refresh has finished, whatever it found: until then an
        # empty store is "loading", afterwards "nothing to serve".
        self.loaded = threading.Event()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload what changed; return whether the served snapshot changed.

        A failure is recorded in :attr:`last_error` and the previous snapshot stays.
        """
        with self._refresh_lock:
            before = self.current
            try:
                self._reload_batch()
                self.current = self._batch
                if self.champion is not None:
                    self.champion_version = self.champion.version()
                self.last_error = None
            except Exception as exc:  # keep serving the previous snapshot
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("forecast reload failed, keeping the previous snapshot: %s", exc)
            self.current = self._batch
            self.loaded.set()
            return self.current is not before

    @property
    def loading(self) -> bool:
        """Return whether the first load is still under way."""
        return not self.loaded.is_set()

    def _reload_batch(self) -> None:
        manifest = self.predictions_dir / "manifest.json"
        try:
            stat = manifest.stat()
        except FileNotFoundError:
            return
        mark = (stat.st_mtime_ns, stat.st_size)
        if mark == self._batch_mark:
            return
        snapshot = read_batch_predictions(self.predictions_dir)
        self._batch, self._batch_mark = snapshot, mark

    def start(self, interval: float) -> None:
        """Refresh now, then every ``interval`` seconds in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="forecast-reloader", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while True:
            self.refresh()
            if self._stop.wait(interval):
                return

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            # A reload only reads; one stuck loading MLflow must not hold up a shutdown.
            self._thread.join(timeout=_STOP_WAIT_S)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """Return what is served and what the champion is."""
        current = self.current
        return {
            "model_name": None if current is None else current.model_name,
            "model_version": None if current is None else current.model_version,
            "generated_at": None if current is None else current.generated_at,
            "origin": None if current is None else current.origin,
            "champion_version": self.champion_version,
            "stale": (
                current is not None
                and self.champion_version is not None
                and current.model_version != self.champion_version
            ),
            "instances": 0 if current is None else len(current.instance_ids),
            "last_error": self.last_error,
            "loading": self.loading,
        }
