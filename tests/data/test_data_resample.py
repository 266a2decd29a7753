"""Resampling and credit usage, against hand computations and pandas references."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.errors import InvalidParameterError, MissingColumnError
from data.resample import (
    credit_usage,
    drop_partial_first_hours,
    resample,
    to_hourly,
    to_steps,
)
from data.synthetic import generate_fleet


def _one_instance(
    values: list[float], start: str = "2024-01-01", freq: str = "5min"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": pd.array(["vm"] * len(values), dtype="str"),
            "ds": pd.date_range(start, periods=len(values), freq=freq, tz="UTC", unit="ns"),
            "y": np.array(values, dtype=np.float64),
        }
    )


def test_hourly_mean_max_p95_by_hand() -> None:
    frame = _one_instance([float(v) for v in range(24)])
    frame["y_max"] = frame["y"] + 1.0
    hourly = resample(frame, "1h")
    assert hourly["y"].tolist() == [5.5, 17.5]
    assert hourly["y_max"].tolist() == [12.0, 24.0]  # the true peaks, from y_max
    # p95 of 0..11 with linear interpolation: 0.95 * 11 = 10.45.
    assert hourly["y_p95"].tolist() == pytest.approx([10.45, 22.45])
    assert hourly["ds"].tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 01:00", tz="UTC"),
    ]


def test_daily_resample_starts_at_midnight_utc() -> None:
    frame = _one_instance([10.0] * 6 + [40.0] * 6, start="2024-01-01 23:30", freq="5min")
    daily = resample(frame, "1D", ("mean", "max"))
    assert daily["ds"].dt.hour.tolist() == [0, 0]
    assert daily["y"].tolist() == [10.0, 40.0]
    assert daily["y_max"].tolist() == [10.0, 40.0]  # without y_max, max of y


def test_nan_readings_are_ignored_and_all_nan_gives_nan() -> None:
    frame = _one_instance([1.0, np.nan, 3.0] + [np.nan] * 3, freq="20min")
    hourly = resample(frame, "1h")
    assert hourly["y"].iloc[0] == 2.0
    assert np.isnan(hourly["y"].iloc[1])


def test_to_hourly_interpolates_gaps_and_fills_edges_by_hand() -> None:
    frame = _one_instance([np.nan, 10.0, 40.0, np.nan], freq="1h")
    frame = frame.drop(index=2)  # hour 2 missing: between 10 (hour 1) and nothing
    frame = pd.concat([frame, _one_instance([70.0], start="2024-01-01 05:00")])
    hourly = to_hourly(frame)
    # hours 0..5: NaN, 10, missing, NaN, missing, 70 -> bfill 10, 10, 25, 40, 55, 70
    assert hourly["y"].tolist() == [10.0, 10.0, 25.0, 40.0, 55.0, 70.0]
    assert (hourly["ds"].diff().dropna() == pd.Timedelta("1h")).all()


def _pandas_reference(frame: pd.DataFrame) -> pd.DataFrame:
    # The forecast task's own preparation, written the slow, obvious way.
    hourly = frame.set_index("ds").groupby("unique_id")["y"].resample("1h").mean().reset_index()
    hourly["y"] = hourly.groupby("unique_id")["y"].transform(
        lambda s: s.interpolate().bfill().ffill()
    )
    return hourly


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.floats(0.0, 0.9), n=st.integers(1, 4))
def test_to_hourly_equals_the_forecast_task_preparation(seed: int, drop: float, n: int) -> None:
    fleet = generate_fleet(n, 0.5, seed=seed, freq="10min", attributes=False)
    rng = np.random.default_rng(seed)
    kept = fleet[rng.random(len(fleet)) >= drop].copy()
    kept.loc[rng.random(len(kept)) < 0.1, "y"] = np.nan
    kept = kept.sample(frac=1.0, random_state=seed)  # any row order
    kept["unique_id"] = kept["unique_id"].astype(str)
    if kept.empty:
        return
    ours = to_hourly(kept)
    reference = _pandas_reference(kept)
    assert ours["unique_id"].tolist() == reference["unique_id"].tolist()
    assert ours["ds"].tolist() == reference["ds"].tolist()
    np.testing.assert_allclose(ours["y"], reference["y"], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.floats(0.0, 0.8), freq=st.sampled_from(["1h", "1D"]))
def test_resample_equals_pandas_groupby(seed: int, drop: float, freq: str) -> None:
    fleet = generate_fleet(3, 2, seed=seed, freq="15min", attributes=False)
    rng = np.random.default_rng(seed)
    kept = fleet[rng.random(len(fleet)) >= drop]
    if kept.empty:
        return
    ours = resample(kept, freq)
    grouped = kept.set_index("ds").groupby("unique_id", observed=True).resample(freq)
    reference = pd.DataFrame(
        {
            "y": grouped["y"].mean(),
            "y_max": grouped["y_max"].max(),
            "y_p95": grouped["y"].quantile(0.95),
        }
    ).dropna()
    np.testing.assert_allclose(ours["y"], reference["y"], rtol=1e-12)
    np.testing.assert_allclose(ours["y_max"], reference["y_max"], rtol=1e-12)
    np.testing.assert_allclose(ours["y_p95"], reference["y_p95"], rtol=1e-12)


def test_resample_keeps_tier_and_vcpus() -> None:
    fleet = generate_fleet(3, 1, seed=4)
    hourly = resample(fleet, "1h", ("mean",))
    per_instance = fleet.groupby("unique_id", observed=True)[["tier", "vcpus"]].first()
    merged = hourly.merge(per_instance, left_on="unique_id", right_index=True, suffixes=("", "_"))
    assert (merged["vcpus"] == merged["vcpus_"]).all()
    assert (merged["tier"].astype(str) == merged["tier_"].astype(str)).all()


def test_credit_usage_by_hand() -> None:
    frame = _one_instance([50.0, 100.0, 0.0])
    usage = credit_usage(frame, baseline="0.1", vcpus=2)
    # 50 % of 2 vCPUs for 5 minutes = 5 credits; earnings 0.1 x 2 x 5 = 1 credit.
    assert usage["credits_used"].tolist() == [5.0, 10.0, 0.0]
    assert usage["millicredits_used"].tolist() == [5000, 10000, 0]
    assert usage["credits_earned"].tolist() == [1.0, 1.0, 1.0]
    assert usage["millicredits_earned"].tolist() == [1000, 1000, 1000]
    assert usage["millicredits_earned"].dtype == np.int64


def test_t3_micro_earns_twelve_credits_an_hour() -> None:
    frame = _one_instance([0.0] * 12)
    usage = credit_usage(frame, baseline=Decimal("0.10"), vcpus=2)
    assert usage["millicredits_earned"].sum() == 12_000


def test_credit_usage_reads_vcpus_and_infers_the_interval() -> None:
    frame = _one_instance([25.0, 25.0], freq="1h").assign(vcpus=np.array([4, 4], dtype=np.int64))
    usage = credit_usage(frame, baseline=0.2)
    assert usage["credits_used"].tolist() == [60.0, 60.0]  # 0.25 x 4 x 60
    assert usage["millicredits_earned"].tolist() == [48_000, 48_000]  # 0.2 x 4 x 60


@pytest.mark.parametrize("baseline", [1.5, -0.1, "abc", float("nan"), True])
def test_bad_baseline_is_rejected(baseline: object) -> None:
    with pytest.raises(InvalidParameterError, match="baseline"):
        credit_usage(_one_instance([1.0, 2.0]), baseline=baseline, vcpus=1)  # type: ignore[arg-type]


def test_baseline_finer_than_a_millicredit_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="whole milli-credits"):
        credit_usage(_one_instance([1.0, 2.0]), baseline="0.0001", vcpus=1)


def test_bad_vcpus_and_missing_vcpus_column_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="vcpus"):
        credit_usage(_one_instance([1.0, 2.0]), baseline=0.1, vcpus=0)
    with pytest.raises(MissingColumnError, match="vcpus"):
        credit_usage(_one_instance([1.0, 2.0]), baseline=0.1)


@pytest.mark.parametrize("freq", ["soon", "30s", "2D"])
def test_bad_frequency_is_rejected(freq: str) -> None:
    with pytest.raises(InvalidParameterError, match="freq"):
        resample(_one_instance([1.0]), freq)


def test_unknown_aggregate_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="aggregates"):
        resample(_one_instance([1.0]), "1h", ("median",))


def test_to_steps_puts_cloudwatch_readings_on_the_grid_from_a_whole_hour() -> None:
    # Readings every 5 minutes, but at 10:07:23, 10:12:23, ...: off the grid and the hour.
    frame = _one_instance([float(v) for v in range(36)], start="2024-01-01 10:07:23")
    steps, notes = to_steps(frame, "5min")
    assert steps["ds"].iloc[0] == pd.Timestamp("2024-01-01 11:00", tz="UTC")
    assert (steps["ds"].diff().dropna() == pd.Timedelta("5min")).all()
    # 10:07:23 falls in the 10:05 step: the 11:00 step holds the reading of 11:02:23.
    assert steps["y"].iloc[0] == 11.0
    assert len(notes) == 2
    assert "partial first hour of 1 instance" in notes[1]


def test_to_steps_repeats_hourly_readings_over_their_steps() -> None:
    frame = _one_instance([10.0, 20.0, 30.0], freq="1h")
    steps, notes = to_steps(frame, "5min")
    assert len(steps) == 36
    assert steps["y"].tolist() == [10.0] * 12 + [20.0] * 12 + [30.0] * 12
    assert steps["ds"].iloc[-1] == pd.Timestamp("2024-01-01 02:55", tz="UTC")
    assert len(notes) == 1


def test_to_steps_leaves_a_grid_aligned_fleet_alone() -> None:
    frame = generate_fleet(3, 1, seed=2, attributes=False)
    steps, notes = to_steps(frame, "5min")
    assert notes == []
    pd.testing.assert_frame_equal(steps, frame)


def test_drop_partial_first_hours_keeps_whole_hours_only() -> None:
    late = _one_instance([1.0] * 24, start="2024-01-01 00:50")
    late["unique_id"] = "late"
    prompt = _one_instance([2.0] * 24, start="2024-01-01 00:00")
    prompt["unique_id"] = "prompt"
    frame = pd.concat([late, prompt], ignore_index=True)
    kept, note = drop_partial_first_hours(frame)
    assert kept.loc[kept["unique_id"] == "late", "ds"].min() == pd.Timestamp(
        "2024-01-01 01:00", tz="UTC"
    )
    assert (kept["unique_id"] == "prompt").sum() == 24
    assert note is not None
    assert "1 instance" in note
    assert "(2 readings" in note
    assert (
        drop_partial_first_hours(prompt) == (prompt, None)
        or drop_partial_first_hours(prompt)[1] is None
    )


def test_to_steps_refuses_an_interval_it_cannot_spread() -> None:
    frame = _one_instance([1.0, 2.0, 3.0], freq="7min")
    with pytest.raises(InvalidParameterError, match="interval"):
        to_steps(frame, "5min")
