"""One replay run: forecasts, every policy, and the document reports are made from.

:func:`replay` prepares the fleet, makes the forecasts the market policies need (the
forecaster's at the pipelines' cadence, and the oracle's), replays each policy and
returns a :class:`ReplayRun`; :meth:`ReplayRun.document` is what ``creditx replay
--json`` writes and ``creditx report`` reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.replay.engine import POLICIES, PolicyResult, run_policy
from pipelines.replay.errors import ScenarioError
from pipelines.replay.fleet import ReplayFleet, prepare_fleet
from pipelines.replay.forecasts import (
    ForecastTable,
    PathForecasts,
    hourly_utilisation,
    model_forecasts,
    oracle_forecasts,
    paths_from_table,
    week_paths,
)
from pipelines.replay.scenario import Scenario

#: Stage name -> total units; returns the callback that advances it by some units.
ProgressFactory = Callable[[str, int], Callable[[int], None]]

_SAMPLES = 4


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """A finished replay: the fleet, the forecasts and each policy's result."""

    fleet: ReplayFleet
    scenario: Scenario
    results: dict[str, PolicyResult]
    forecasts: ForecastTable | None
    forecast_seconds: float
    #: Week-ahead forecast paths of the sample instances (:func:`sample_rows`).
    week_ahead: PathForecasts | None = None

    def value_gap_closed(self) -> dict[str, float | None]:
        """Return the share of the value gap each policy closes.

        The value gap is the value-weighted throttling of ``pool+swap`` less that of
        ``optimum``; a policy closes ``(pool+swap - policy) / gap`` of it. ``None`` for
        ``pool+swap`` itself, and for every policy when either end is missing or the gap
        is empty.
        """
        base, best = self.results.get("pool+swap"), self.results.get("optimum")
        out: dict[str, float | None] = {name: None for name in self.results}
        if base is None or best is None:
            return out
        reference = base.value_cost()[0]
        gap = reference - best.value_cost()[0]
        if gap <= 0:
            return out
        for name, result in self.results.items():
            if name != "pool+swap":
                out[name] = (reference - result.value_cost()[0]) / gap
        return out

    def targets(self) -> dict[str, float | None]:
        """Return the headline figures: the value gap ``market`` and its references close,
        and, as context, how far ``market`` closes the static/physical-limit gap."""

        def share(policy: str) -> float | None:
            r = self.results.get(policy)
            if r is None:
                return None
            demand = int(r.demand.sum())
            return int(r.throttled.sum()) / demand if demand else 0.0

        closed = self.value_gap_closed()
        out: dict[str, float | None] = {
            "market_value_gap_closed": closed.get("market"),
            "market_oracle_value_gap_closed": closed.get("market-oracle"),
            "pool_by_value_gap_closed": closed.get("pool-by-value"),
            "market_reduction_vs_static": None,
            "market_gap_closed_vs_physical_limit": None,
        }
        static, physical, market = share("static"), share("physical-limit"), share("market")
        if static is not None and market is not None and static > 0:
            out["market_reduction_vs_static"] = 1 - market / static
        if static is not None and physical is not None and market is not None and static > physical:
            gap = static - physical
            out["market_gap_closed_vs_physical_limit"] = (static - market) / gap
        return out

    def document(self, source: str = "") -> dict[str, Any]:
        """Return the run as plain JSON values: summaries, per-tier figures, series."""
        fleet = self.fleet
        policies = {}
        closed = self.value_gap_closed()
        for name, r in self.results.items():
            policies[name] = {
                **r.summary(),
                "value_gap_closed": closed[name],
                "tiers": r.per_tier(),
                "series": {
                    "throttled_vcpu_minutes": (r.throttled_series / 1000).tolist(),
                    "pool_credits": (r.pool_series / 1000).tolist(),
                    "exchange_rate": (r.rate_series / 1_000_000).tolist(),
                    "clearing_price": [
                        [None if np.isnan(v) else float(v) for v in row]
                        for row in r.clearing_price_series
                    ],
                },
            }
        return {
            "source": source,
            "start": fleet.start.isoformat(),
            "hours": fleet.hours,
            "instances": len(fleet.ids),
            "tiers": list(fleet.tier_names),
            "scenario": {
                "tiers": [
                    {
                        "name": t.name,
                        "baseline_pct": str(t.baseline_pct),
                        "exchange_rate": str(t.exchange_rate),
                    }
                    for t in self.scenario.tiers
                ],
                "vcpus": self.scenario.vcpus,
                "starting_balance_share": str(self.scenario.starting_balance_share),
                "physical_vcpus_per_vcpu": str(self.scenario.physical_vcpus_per_vcpu),
                "host_vcpus": fleet.host_vcpus.tolist(),
            },
            "forecast_seconds": round(self.forecast_seconds, 3),
            "policies": policies,
            "targets": self.targets(),
            "forecast_samples": self._samples(),
        }

    def _samples(self) -> list[dict[str, Any]]:
        # Each sample's hourly CPU with its forecasts an hour, a day and a week ahead.
        if self.forecasts is None:
            return []
        actual = hourly_utilisation(self.fleet)
        rows = sample_rows(self.fleet)
        first = min(self.scenario.retrain_every_hours, self.fleet.hours)
        hour = paths_from_table(self.forecasts, rows, 1, 0)
        day = paths_from_table(self.forecasts, rows, 24, first)
        out = []
        for k, row in enumerate(rows):
            sample = {
                "instance": str(self.fleet.ids[row]),
                "tier": self.fleet.tier_names[int(self.fleet.tier_of[row])],
                "actual": np.round(actual[row], 3).tolist(),
                "hour": _path(hour, k),
                "day": _path(day, k),
            }
            if self.week_ahead is not None:
                sample["week"] = _path(self.week_ahead, k)
            out.append(sample)
        return out


def _values(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 3) for v in values]


def _path(paths: PathForecasts, k: int) -> dict[str, Any]:
    return {
        "ahead_hours": paths.ahead,
        "origins": list(paths.origins) if paths.ahead > 1 else [],
        "forecast": _values(paths.point[k]),
        "q10": _values(paths.q10[k]),
        "q90": _values(paths.q90[k]),
    }


#: How the report's sample instances are picked, as the report says it.
SAMPLES_PICKED = (
    "in each of the first {n} tiers, the instance with the highest mean CPU over the "
    "replay: the busiest, whose credits run out first and whose forecasts matter most"
)


def sample_rows(fleet: ReplayFleet) -> np.ndarray:
    """Return the rows of the report's sample instances (see :data:`SAMPLES_PICKED`)."""
    actual = hourly_utilisation(fleet)
    picked = []
    for k in range(min(_SAMPLES, len(fleet.tier_names))):
        rows = np.flatnonzero(fleet.tier_of == k)
        if len(rows):
            picked.append(int(rows[np.argmax(actual[rows].mean(axis=1))]))
    return np.asarray(picked, dtype=np.int64)


def replay(
    frame: pd.DataFrame,
    scenario: Scenario,
    policies: Sequence[str] = POLICIES,
    progress: ProgressFactory | None = None,
) -> ReplayRun:
    """Replay ``policies`` on a telemetry frame under ``scenario``.

    Raises
    ------
    ScenarioError
        For an unknown policy.
    TraceError
        If the frame cannot be replayed.
    ConservationError
        If any policy's books do not balance.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise ScenarioError("policies", list(policies), f"choose from {POLICIES}")
    fleet = prepare_fleet(frame, scenario)
    forecasts = oracle = None
    began = time.perf_counter()
    week = None
    if {"market", "pool+swap", "pool-by-value"} & set(policies):
        tick = progress("forecasts", fleet.hours) if progress is not None else None
        forecasts = model_forecasts(fleet, scenario, tick)
        # For the report: the sample instances a week ahead, refitted weekly.
        first = min(scenario.retrain_every_hours, fleet.hours)
        week = week_paths(fleet, scenario, sample_rows(fleet), first)
    if "market-oracle" in policies:
        oracle = oracle_forecasts(fleet, scenario.horizon_hours)
    forecast_seconds = time.perf_counter() - began
    results = {}
    for policy in policies:
        table = oracle if policy == "market-oracle" else forecasts
        tick = progress(policy, fleet.hours) if progress is not None else None
        results[policy] = run_policy(fleet, scenario, policy, table, tick)
    return ReplayRun(fleet, scenario, results, forecasts or oracle, forecast_seconds, week)
