"""Validation: the per-instance report, the repair policies and rejection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import data.validation as validation
from data.errors import InstancesRejectedError, InvalidParameterError, MissingColumnError
from data.synthetic import generate_fleet
from data.validation import REPORT_COLUMNS, ValidationPolicy, validate_telemetry


def _frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    ids, stamps, values = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "unique_id": pd.array(ids, dtype="str"),
            "ds": pd.DatetimeIndex(stamps).tz_localize("UTC").as_unit("ns"),
            "y": np.array(values, dtype=np.float64),
        }
    )


def _dirty() -> pd.DataFrame:
    # "bad": a duplicate, 140 %, a NaN, a row out of order, a timestamp off the grid,
    # and a two-interval gap; "good": clean.
    return _frame(
        [
            ("bad", "2024-01-01 00:00", 10.0),
            ("bad", "2024-01-01 00:05", 20.0),
            ("bad", "2024-01-01 00:05", 99.0),
            ("bad", "2024-01-01 00:15", 140.0),
            ("bad", "2024-01-01 00:10", np.nan),
            ("bad", "2024-01-01 00:22", 30.0),
            ("bad", "2024-01-01 00:35", 40.0),
            ("good", "2024-01-01 00:00", 5.0),
            ("good", "2024-01-01 00:05", 6.0),
            ("good", "2024-01-01 00:10", 7.0),
        ]
    )


def _row(report: pd.DataFrame, uid: str) -> pd.Series:
    return report.set_index("unique_id").loc[uid]


def test_report_counts_every_problem() -> None:
    result = validate_telemetry(_dirty(), interval="5min")
    assert tuple(result.report.columns) == REPORT_COLUMNS
    bad = _row(result.report, "bad")
    assert bad["rows"] == 7
    assert bad["duplicates"] == 1
    assert bad["out_of_range"] == 1
    assert bad["nan"] == 1
    assert bad["out_of_order"] == 1
    assert bad["irregular"] == 1
    # 00:22 -> 00:35 leaves 00:25 and 00:30 missing; nothing else is missing.
    assert (bad["gaps"], bad["longest_gap"]) == (1, 2)
    assert bad["status"] == "repaired"
    good = _row(result.report, "good")
    assert good[["duplicates", "nan", "gaps"]].tolist() == [0, 0, 0]
    assert good["status"] == "ok"
    assert good["actions"] == ""


def test_default_policy_repairs_by_hand() -> None:
    result = validate_telemetry(_dirty(), interval="5min")
    bad = result.frame[result.frame["unique_id"] == "bad"]
    minutes = ((bad["ds"] - bad["ds"].iloc[0]) / pd.Timedelta("1min")).tolist()
    assert minutes == [0, 5, 10, 15, 20, 25, 30, 35]
    # dedupe keeps the first 00:05; the NaN at 00:10 is interpolated between 20 and 100
    # (140 clipped); 00:22 snaps to 00:20; 00:25 and 00:30 lie on the line to 40.
    assert bad["y"].tolist() == pytest.approx([10, 20, 60, 100, 30, 33.3333333, 36.6666667, 40])
    assert _row(result.report, "bad")["filled"] == 3
    actions = _row(result.report, "bad")["actions"]
    for word in ("sorted", "snapped", "duplicate", "clipped", "interpolated"):
        assert word in actions
    assert result.interval == pd.Timedelta("5min")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (ValidationPolicy(duplicates="reject"), "duplicates=reject"),
        (ValidationPolicy(out_of_range="reject"), "out_of_range=reject"),
        (ValidationPolicy(nan="reject"), "nan=reject"),
        (ValidationPolicy(out_of_order="reject"), "out_of_order=reject"),
        (ValidationPolicy(irregular="reject"), "irregular=reject"),
        (ValidationPolicy(max_gap=1, long_gaps="reject"), "long_gaps=reject"),
    ],
)
def test_reject_policies_drop_the_instance_and_keep_the_good(
    policy: ValidationPolicy, reason: str
) -> None:
    result = validate_telemetry(_dirty(), policy, interval="5min")
    assert result.rejected == ("bad",)
    assert set(result.frame["unique_id"]) == {"good"}
    assert result.frame["y"].tolist() == [5.0, 6.0, 7.0]
    bad = _row(result.report, "bad")
    assert bad["status"] == "rejected"
    assert reason in bad["problems"]
    assert bad["actions"] == ""


def test_long_gaps_are_kept_unfilled_by_default() -> None:
    result = validate_telemetry(_dirty(), ValidationPolicy(max_gap=1), interval="5min")
    bad = result.frame[result.frame["unique_id"] == "bad"]
    assert len(bad) == 6  # 00:25 and 00:30 stay missing
    assert _row(result.report, "bad")["longest_gap"] == 2


def test_all_rejected_raises_with_the_report() -> None:
    with pytest.raises(InstancesRejectedError, match="all 2 instances") as info:
        validate_telemetry(_dirty(), ValidationPolicy(duplicates="reject"), rejected={"good": "x"})
    assert set(info.value.report["status"]) == {"rejected"}


def test_upstream_rejections_join_the_report() -> None:
    result = validate_telemetry(_dirty(), rejected={"good": "unreadable", "ghost": "unreadable"})
    assert set(result.frame["unique_id"]) == {"bad"}
    assert set(result.rejected) == {"good", "ghost"}
    assert _row(result.report, "ghost")["problems"] == "unreadable"


def test_clean_fleet_passes_unchanged() -> None:
    fleet = generate_fleet(5, 1, seed=9)
    result = validate_telemetry(fleet)
    assert set(result.report["status"]) == {"ok"}
    pd.testing.assert_frame_equal(result.frame, fleet)


def test_interleaved_rows_are_not_out_of_order() -> None:
    fleet = generate_fleet(4, 0.5, seed=1, attributes=False)
    interleaved = fleet.sort_values(["ds", "unique_id"], ignore_index=True)
    result = validate_telemetry(interleaved)
    assert result.report["out_of_order"].sum() == 0
    pd.testing.assert_frame_equal(result.frame, fleet)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    drop=st.floats(0.0, 0.5),
    max_gap=st.integers(0, 6),
    block_rows=st.sampled_from([7, 100, 1_000_000]),
)
def test_repair_matches_a_pandas_reference(
    seed: int, drop: float, max_gap: int, block_rows: int
) -> None:
    fleet = generate_fleet(3, 0.25, seed=seed, freq="5min", attributes=False)
    rng = np.random.default_rng(seed)
    keep = rng.random(len(fleet)) >= drop
    starts = fleet.groupby("unique_id", observed=True).cumcount() == 0
    kept = fleet[keep | starts].sample(frac=1.0, random_state=seed)
    original = validation._BLOCK_ROWS
    validation._BLOCK_ROWS = block_rows
    try:
        result = validate_telemetry(kept, ValidationPolicy(max_gap=max_gap), interval="5min")
    finally:
        validation._BLOCK_ROWS = original

    for uid, group in kept.groupby("unique_id", observed=True):
        series = group.set_index("ds")["y"].sort_index()
        grid = series.reindex(pd.date_range(series.index[0], series.index[-1], freq="5min"))
        # Fill runs of NaN no longer than max_gap, leave longer ones missing.
        run = grid.isna().groupby(grid.notna().cumsum()).transform("sum")
        filled = grid.interpolate(limit_area="inside")
        expected = filled[grid.notna() | (run <= max_gap)].dropna()
        ours = result.frame[result.frame["unique_id"] == uid].set_index("ds")["y"]
        assert ours.index.tolist() == expected.index.tolist()
        np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-9)


def test_bad_policy_and_interval_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="duplicates"):
        ValidationPolicy(duplicates="ignore")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="max_gap"):
        ValidationPolicy(max_gap=-1)
    with pytest.raises(InvalidParameterError, match="interval"):
        validate_telemetry(_dirty(), interval="90s")
    with pytest.raises(InvalidParameterError, match="explicit interval"):
        validate_telemetry(_frame([("a", "2024-01-01", 1.0), ("b", "2024-01-01", 2.0)]))


def test_missing_column_is_named() -> None:
    with pytest.raises(MissingColumnError, match="'y'"):
        validate_telemetry(_dirty().drop(columns="y"), source="fleet.csv")
