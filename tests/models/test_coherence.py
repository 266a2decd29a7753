"""One predictive distribution per instance and horizon, and the prior of new instances.

Whatever the series (constant, all zero, all at 100 %, a single day, bursty), the
served quantiles never cross, the point forecast is their median, and every value
lies within 0-100 % of the instance's vCPUs. An instance with less than a day of
history is forecast from the fleet's profile scaled to what it has shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import FleetForecaster, ForecastConfig
from models.prior import PRIOR_HOURS

QUICK = ForecastConfig(
    candidates=("naive", "seasonal_naive", "linear"),
    calibration_hours=72,
    horizon_max=48,
    quantiles=(0.1, 0.5, 0.9),
)
START = pd.Timestamp("2024-01-01", tz="UTC")
KINDS = ("random", "constant", "zero", "full", "bursty", "cycle")


def _series(kind: str, hours: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(hours)
    if kind == "constant":
        return np.full(hours, float(rng.uniform(0, 100)))
    if kind == "zero":
        return np.zeros(hours)
    if kind == "full":
        return np.full(hours, 100.0)
    if kind == "bursty":
        base = np.where(rng.random(hours) < 0.1, 95.0, 3.0)
        return np.where(t > hours // 2, base + 40, base).clip(0, 100)
    if kind == "cycle":
        return 50 + 50 * np.sin(2 * np.pi * t / 24)
    return rng.uniform(0, 100, hours)


def _frame(specs: list[tuple[str, int]], seed: int) -> pd.DataFrame:
    # Series of different lengths end at the same hour, as a fleet's telemetry does.
    rng = np.random.default_rng(seed)
    longest = max(hours for _, hours in specs)
    parts = []
    for i, (kind, hours) in enumerate(specs):
        ds = START + pd.to_timedelta(np.arange(longest - hours, longest), unit="h")
        parts.append(
            pd.DataFrame({"unique_id": f"vm-{i}", "ds": ds, "y": _series(kind, hours, rng)})
        )
    return pd.concat(parts, ignore_index=True)


def _assert_coherent(out: pd.DataFrame) -> None:
    values = out[["yhat", "q10", "q50", "q90"]].to_numpy()
    assert np.isfinite(values).all()
    assert (values >= 0).all()
    assert (values <= 100).all()
    assert (out["q10"] <= out["q50"]).all()
    assert (out["q50"] <= out["q90"]).all()
    np.testing.assert_allclose(out["yhat"], out["q50"])


series_specs = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from([1, 7, 23, 24, 30, 49, 120, 200])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=series_specs, seed=st.integers(0, 2**16), h=st.sampled_from([1, 24, 168]))
def test_quantiles_never_cross_and_stay_within_range(
    specs: list[tuple[str, int]], seed: int, h: int
) -> None:
    frame = _frame(specs, seed)
    fleet = FleetForecaster(QUICK).fit(frame)
    out = fleet.predict(h)
    assert len(out) == len(specs) * h
    _assert_coherent(out)
    # Forecasting from newer observations without refitting keeps the same guarantees.
    newer = frame.assign(y=(frame["y"] * 1.7).clip(0, 100))
    _assert_coherent(fleet.predict(h, frame=newer))


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_day_fleet_is_coherent_at_every_quantile(kind: str) -> None:
    frame = _frame([(kind, 24), (kind, 24), ("random", 24)], seed=3)
    out = FleetForecaster(QUICK).fit(frame).predict(48, quantiles=(0.05, 0.1, 0.5, 0.9, 0.99))
    levels = out[["q5", "q10", "q50", "q90", "q99"]].to_numpy()
    assert (np.diff(levels, axis=1) >= 0).all()
    assert (levels >= 0).all()
    assert (levels <= 100).all()


def test_backtests_are_coherent_too() -> None:
    frame = _frame([("bursty", 200), ("cycle", 200), ("random", 120), ("full", 90)], seed=5)
    origins = [frame["ds"].max() - pd.Timedelta(hours=k) for k in (30, 10)]
    out = FleetForecaster(QUICK).backtest(frame, origins, 24)
    _assert_coherent(out)


def _cycle(hours: np.ndarray) -> np.ndarray:
    return 1 + 0.5 * np.sin(2 * np.pi * hours / 24)


def test_a_new_instance_is_forecast_from_the_fleet_profile_scaled_to_its_level() -> None:
    # Every established instance follows one daily shape at its own level; the
    # newcomer shows six hours of that shape at 60 %. Its prior is the shape at 60 %.
    hours = np.arange(14 * 24)
    ds = START + pd.to_timedelta(hours, unit="h")
    parts = [
        pd.DataFrame({"unique_id": f"vm-{i}", "ds": ds, "y": level * _cycle(hours)})
        for i, level in enumerate([5.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    ]
    parts.append(pd.DataFrame({"unique_id": "vm-new", "ds": ds[-6:], "y": 60 * _cycle(hours[-6:])}))
    fleet = FleetForecaster(QUICK).fit(pd.concat(parts, ignore_index=True))
    out = fleet.predict(48).set_index("unique_id")
    new = out.loc["vm-new"]
    assert (new["source"] == "prior").all()
    assert (new["model"] == "prior").all()
    expected = 60 * _cycle(hours[-1] + 1 + np.arange(48))
    np.testing.assert_allclose(new["yhat"], expected, rtol=1e-6)
    # The established instances' shapes are exact, so the prior is sure of itself.
    np.testing.assert_allclose(new["q90"], expected, rtol=1e-6)
    _assert_coherent(out.reset_index())
    established = out.drop(index="vm-new")
    assert (established["source"] == "learned").all()
    assert fleet.summary().set_index("model").loc["prior", "day_instances"] == 1


def test_the_prior_uses_the_profile_of_the_new_instance_s_tier() -> None:
    hours = np.arange(10 * 24)
    ds = START + pd.to_timedelta(hours, unit="h")
    night = 1 + 0.5 * np.cos(2 * np.pi * hours / 24)  # gold peaks at midnight
    parts = []
    for i in range(12):
        tier, shape = ("silver", _cycle(hours)) if i < 6 else ("gold", night)
        parts.append(
            pd.DataFrame({"unique_id": f"vm-{i}", "ds": ds, "y": 20 * shape, "tier": tier})
        )
    for tier in ("silver", "gold"):
        shown = (night if tier == "gold" else _cycle(hours))[-4:]
        parts.append(
            pd.DataFrame({"unique_id": f"new-{tier}", "ds": ds[-4:], "y": 30 * shown, "tier": tier})
        )
    out = FleetForecaster(QUICK).fit(pd.concat(parts, ignore_index=True)).predict(24)
    ahead = hours[-1] + 1 + np.arange(24)
    gold = out.loc[out["unique_id"] == "new-gold", "yhat"].to_numpy()
    silver = out.loc[out["unique_id"] == "new-silver", "yhat"].to_numpy()
    np.testing.assert_allclose(gold, 30 * (1 + 0.5 * np.cos(2 * np.pi * ahead / 24)), rtol=1e-6)
    np.testing.assert_allclose(silver, 30 * _cycle(ahead), rtol=1e-6)


def test_an_instance_with_a_day_of_history_is_learned_not_prior() -> None:
    frame = _frame([("cycle", 200), ("random", 200), ("cycle", PRIOR_HOURS)], seed=2)
    out = FleetForecaster(QUICK).fit(frame).predict(24)
    assert (out["source"] == "learned").all()


def test_a_fleet_of_only_new_instances_still_gets_a_forecast() -> None:
    frame = _frame([("random", 5), ("cycle", 12), ("zero", 3)], seed=9)
    out = FleetForecaster(QUICK).fit(frame).predict(24)
    assert (out["source"] == "prior").all()
    _assert_coherent(out)
    zero = out.loc[out["unique_id"] == "vm-2"]
    assert (zero["yhat"] == 0).all()
