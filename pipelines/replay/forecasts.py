"""Forecasts the agents trade on, made as the pipelines make them.

:func:`model_forecasts` refits the :class:`~models.FleetForecaster` every
``retrain_every_hours`` on the telemetry before the refit and forecasts every hour
from the telemetry before that hour (the training and prediction cadence of the
pipelines); :func:`oracle_forecasts` gives the actual future instead. Both return a
:class:`ForecastTable` of hourly mean utilisation (percent of the instance's vCPUs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from data.forecasts import MEDIAN_COL, POINT_COL, UPPER_COL
from market.agents.decision import need_from_percent
from market.agents.forecast import InstanceForecast, horizon_forecast
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet
from pipelines.replay.scenario import Scenario

_HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ForecastTable:
    """Hourly forecasts from every origin hour: arrays ``(n, hours, horizon)``.

    ``point``, ``q50``, ``q90`` (and ``q10``, which only the report reads) are NaN where
    no forecast exists (before the first fit); ``origin_hour`` ``h`` forecasts hours
    ``h .. h + horizon - 1``.
    """

    point: np.ndarray
    q50: np.ndarray
    q90: np.ndarray
    source: str
    q10: np.ndarray | None = None

    @property
    def horizon(self) -> int:
        """Return the hours each forecast covers."""
        return int(self.point.shape[2])

    def at(self, hour: int, ids: np.ndarray, generated_at: datetime) -> dict[str, InstanceForecast]:
        """Return the agents' forecasts made at ``hour`` (none for instances without one)."""
        point = self.point[:, hour, :]
        q50 = self.q50[:, hour, :]
        q90 = self.q90[:, hour, :]
        rows = np.flatnonzero(~np.isnan(point).any(axis=1))
        out: dict[str, InstanceForecast] = {}
        # one conversion to Python floats per array, not per instance
        for iid, p, a, b in zip(
            ids[rows].tolist(),
            point[rows].tolist(),
            q50[rows].tolist(),
            q90[rows].tolist(),
            strict=True,
        ):
            out[str(iid)] = InstanceForecast(
                generated_at,
                {
                    "hour": horizon_forecast(
                        {POINT_COL: p[:1], MEDIAN_COL: a[:1], UPPER_COL: b[:1]}
                    ),
                    "day": horizon_forecast({POINT_COL: p, MEDIAN_COL: a, UPPER_COL: b}),
                },
                self.source,
            )
        return out

    def needs(self, hour: int, vcpus: np.ndarray) -> HourNeeds:
        """Return the milli-credits every instance needs each hour of the day ahead at ``hour``.

        What :func:`~market.agents.decision.hourly_need` reads of the forecasts :meth:`at` returns,
        for every instance at once, and which of them the agents and the CEM can use.
        """
        point = self.point[:, hour, :]
        q50 = self.q50[:, hour, :].astype(np.float64)
        q90 = self.q90[:, hour, :].astype(np.float64)
        exists = ~np.isnan(point).any(axis=1)
        with np.errstate(invalid="ignore"):
            q50_valid = ((q50 >= 0) & (q50 <= 100)).all(axis=1)
            q90_valid = ((q90 >= 0) & (q90 <= 100)).all(axis=1)
        # the day forecast must be 24 hours long; the agents refuse a forecast with a
        # NaN or an infinity anywhere, the CEM reads only q90
        day = self.horizon == 24
        agents = exists & np.isfinite(point).all(axis=1) & q50_valid & q90_valid & day
        cem = exists & q90_valid & day
        return HourNeeds(
            q50=need_from_percent(np.where(agents[:, None], q50, 0.0), vcpus),
            q90=need_from_percent(np.where(cem[:, None], q90, 0.0), vcpus),
            agents=agents,
            cem=cem,
        )


@dataclass(frozen=True, slots=True)
class HourNeeds:
    """Milli-credits ``(n, horizon)`` each instance needs each hour ahead, by quantile.

    ``agents`` marks the rows whose forecast the agents can use (others fall back),
    ``cem`` those the CEM can (others count as missing); rows not marked need 0.
    """

    q50: np.ndarray
    q90: np.ndarray
    agents: np.ndarray
    cem: np.ndarray


def hourly_utilisation(fleet: ReplayFleet) -> np.ndarray:
    """Return ``(n, hours)`` mean utilisation per hour, percent."""
    n, hours = len(fleet.ids), fleet.hours
    steps = fleet.utilisation[:, : hours * STEPS_PER_HOUR]
    return steps.reshape(n, hours, STEPS_PER_HOUR).mean(axis=2)


def oracle_forecasts(fleet: ReplayFleet, horizon: int) -> ForecastTable:
    """Return perfect forecasts: the actual hourly utilisation ahead, every quantile alike."""
    hourly = hourly_utilisation(fleet)
    _n, hours = hourly.shape
    padded = np.concatenate([hourly, np.repeat(hourly[:, -1:], horizon, axis=1)], axis=1)
    index = np.arange(hours)[:, None] + np.arange(horizon)[None, :]
    table = padded[:, index].astype(np.float32)
    return ForecastTable(table, table, table, "oracle", q10=table)


def model_forecasts(
    fleet: ReplayFleet,
    scenario: Scenario,
    progress: Callable[[int], None] | None = None,
) -> ForecastTable:
    """Return the fleet forecaster's forecasts at the pipelines' cadence.

    The forecaster is refitted every ``scenario.retrain_every_hours`` on the hours
    before the refit; every hour it forecasts ``scenario.horizon_hours`` ahead from the
    hours before that hour. No forecast exists before the first refit (one retraining
    period of history).
    """
    from models import FleetForecaster, ForecastConfig

    hourly = hourly_utilisation(fleet)
    n, hours = hourly.shape
    horizon = scenario.horizon_hours
    shape = (n, hours, horizon)
    point, q10, q50, q90 = (np.full(shape, np.nan, dtype=np.float32) for _ in range(4))
    config = ForecastConfig(
        candidates=scenario.candidates,
        calibration_hours=min(168, max(1, scenario.retrain_every_hours)),
        horizon_max=horizon,
    )
    origin0 = pd.Timestamp(fleet.start)
    period = scenario.retrain_every_hours
    row_of = {str(i): r for r, i in enumerate(fleet.ids)}
    if progress is not None:
        progress(min(period, hours))  # the hours before the first fit have no forecast
    for first in range(period, hours, period):
        last = min(first + period, hours)
        # Only the hours before the last origin of the period are passed in.
        frame = pd.DataFrame(
            {
                "unique_id": np.repeat(fleet.ids.astype(str), last - 1),
                "ds": np.tile(origin0 + _HOUR * np.arange(last - 1), n),
                "y": hourly[:, : last - 1].reshape(-1),
            }
        )
        origins = [origin0 + _HOUR * h for h in range(first, last)]
        result = FleetForecaster(config).backtest(frame, origins, horizon, (0.1, 0.5, 0.9))
        rows = result["unique_id"].astype(str).map(row_of).to_numpy(dtype=np.int64)
        o = ((pd.DatetimeIndex(result["origin"]) - origin0) // _HOUR).to_numpy(dtype=np.int64)
        s = (
            (pd.DatetimeIndex(result["ds"]) - pd.DatetimeIndex(result["origin"])) // _HOUR
        ).to_numpy(dtype=np.int64)
        point[rows, o, s] = result["yhat"].to_numpy(dtype=np.float32)
        q10[rows, o, s] = result["q10"].to_numpy(dtype=np.float32)
        q50[rows, o, s] = result["q50"].to_numpy(dtype=np.float32)
        q90[rows, o, s] = result["q90"].to_numpy(dtype=np.float32)
        if progress is not None:
            progress(last - first)
    for table in (point, q10, q50, q90):
        np.clip(table, 0.0, 100.0, out=table)
    return ForecastTable(point, q50, q90, "forecaster", q10=q10)


@dataclass(frozen=True, slots=True)
class PathForecasts:
    """Forecast paths of a few instances: arrays ``(rows, hours)`` on the replay's hours.

    Each path covers ``ahead`` hours from one of ``origins``; an hour no path covers
    is NaN. ``point`` is the median.
    """

    ahead: int
    origins: tuple[int, ...]
    point: np.ndarray
    q10: np.ndarray
    q90: np.ndarray


def paths_from_table(
    table: ForecastTable, rows: np.ndarray, every: int, first: int
) -> PathForecasts:
    """Return the table's paths of ``rows`` from its origins ``first, first + every, ...``.

    With ``every`` the table's horizon, consecutive paths tile the hours: each stretch of
    ``every`` hours as forecast at its first hour.
    """
    n_hours = table.point.shape[1]
    ahead = min(every, table.horizon)
    out = {k: np.full((len(rows), n_hours), np.nan) for k in ("point", "q10", "q90")}
    # A table without q10 (made by hand) shows its band from the median up.
    q10 = table.q10 if table.q10 is not None else table.q50
    sources = {"point": table.point, "q10": q10, "q90": table.q90}
    origins = tuple(range(first, n_hours, every))
    for origin in origins:
        span = min(ahead, n_hours - origin)
        for key, source in sources.items():
            out[key][:, origin : origin + span] = source[rows, origin, :span]
    return PathForecasts(ahead, origins, out["point"], out["q10"], out["q90"])


def week_paths(
    fleet: ReplayFleet, scenario: Scenario, rows: np.ndarray, first: int
) -> PathForecasts:
    """Return week-ahead paths of ``rows`` from the hours ``first, first + 168, ...``.

    At each origin the fleet forecaster (the scenario's candidates) is fitted on every
    instance's hours before it, as the weekly training would, and forecasts ``rows``
    for the 168 hours after it with q10, q50 and q90.
    """
    from models import FleetForecaster, ForecastConfig

    hourly = hourly_utilisation(fleet)
    n, hours = hourly.shape
    week = 168
    config = ForecastConfig(
        candidates=scenario.candidates,
        calibration_hours=min(168, max(1, scenario.retrain_every_hours)),
        horizon_max=week,
    )
    origin0 = pd.Timestamp(fleet.start)
    ids = fleet.ids.astype(str)
    out = {k: np.full((len(rows), hours), np.nan) for k in ("yhat", "q10", "q90")}
    origins = tuple(range(first, hours, week))
    for origin in origins:
        history = pd.DataFrame(
            {
                "unique_id": np.repeat(ids, origin),
                "ds": np.tile(origin0 + _HOUR * np.arange(origin), n),
                "y": hourly[:, :origin].reshape(-1),
            }
        )
        fitted = FleetForecaster(config).fit(history)
        sample = history.loc[history["unique_id"].isin(ids[rows])]
        forecast = fitted.predict(week, (0.1, 0.5, 0.9), frame=sample)
        step = ((pd.DatetimeIndex(forecast["ds"]) - origin0) // _HOUR).to_numpy(dtype=np.int64)
        row_of = {iid: k for k, iid in enumerate(ids[rows])}
        at = forecast["unique_id"].astype(str).map(row_of).to_numpy(dtype=np.int64)
        keep = step < hours
        for key in out:
            out[key][at[keep], step[keep]] = forecast[key].to_numpy(dtype=float)[keep]
    for values in out.values():
        np.clip(values, 0.0, 100.0, out=values)
    return PathForecasts(week, origins, out["yhat"], out["q10"], out["q90"])


def generated_at(fleet: ReplayFleet, hour: int) -> datetime:
    """Return the time the forecasts of ``hour`` are made: the hour's start."""
    return fleet.start + timedelta(hours=hour)


def with_prior(
    needs: HourNeeds, hourly: np.ndarray, hour: int, vcpus: np.ndarray, horizon: int
) -> HourNeeds:
    """Return ``needs`` with a prior for every agent that has no usable forecast yet.

    The prior is what the instance has shown: over the last day it has been seen (at
    least one hour), its mean hourly utilisation as the median and the 90th percentile
    of its hours as the upper quantile, flat over the horizon. Agents act on it until the
    forecaster's first forecast, so the first day has sellers as well as buyers; the
    CEM reads only real forecasts.
    """
    missing = ~needs.agents
    if hour == 0 or not missing.any():
        return needs
    seen = hourly[missing, max(0, hour - 24) : hour]
    mid = np.repeat(seen.mean(axis=1)[:, None], horizon, axis=1)
    high = np.repeat(np.percentile(seen, 90, axis=1)[:, None], horizon, axis=1)
    q50, q90 = needs.q50.copy(), needs.q90.copy()
    q50[missing] = need_from_percent(mid, vcpus[missing])
    q90[missing] = need_from_percent(np.maximum(high, mid), vcpus[missing])
    return HourNeeds(q50=q50, q90=q90, agents=np.ones_like(needs.agents), cem=needs.cem)
