"""The frame contract: validation and coercion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.errors import FrameContractError, MissingColumnError, TelemetryParseError
from data.forecasts import quantile_column
from data.frame import coerce_frame, validate_frame


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": ["a", "a", "b"],
            "ds": ["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:00"],
            "y": ["1.5", "2", "3"],
            "vcpus": [2.0, 2.0, 4.0],
        }
    )


def test_coerce_reads_naive_timestamps_as_utc_and_numbers_as_floats() -> None:
    raw = _raw()
    frame = coerce_frame(raw)
    validate_frame(frame)
    assert frame["ds"].iloc[1] == pd.Timestamp("2024-01-01 00:05", tz="UTC")
    assert frame["y"].tolist() == [1.5, 2.0, 3.0]
    assert frame["vcpus"].dtype == np.int64
    assert raw["y"].tolist() == ["1.5", "2", "3"]  # the input is left alone


def test_coerce_converts_aware_timestamps_to_utc() -> None:
    raw = _raw().assign(ds=pd.to_datetime(["2024-01-01 01:00+01:00"] * 3))
    assert coerce_frame(raw)["ds"].iloc[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")


def test_coerce_names_the_row_of_a_bad_number() -> None:
    raw = _raw()
    raw.loc[2, "y"] = "lots"
    with pytest.raises(TelemetryParseError, match=r"row 2, column 'y': expected a number"):
        coerce_frame(raw)


def test_coerce_names_the_row_of_a_bad_timestamp() -> None:
    raw = _raw()
    raw.loc[1, "ds"] = "yesterday-ish"
    with pytest.raises(TelemetryParseError, match=r"row 1, column 'ds': expected a timestamp"):
        coerce_frame(raw)


def test_coerce_rejects_fractional_vcpus() -> None:
    with pytest.raises(TelemetryParseError, match="vcpus"):
        coerce_frame(_raw().assign(vcpus=[2.5, 2.0, 1.0]))


def test_validate_names_the_missing_column() -> None:
    with pytest.raises(MissingColumnError, match="missing column 'y'"):
        validate_frame(coerce_frame(_raw()).drop(columns="y"))


def test_validate_rejects_naive_timestamps_and_infinities() -> None:
    frame = coerce_frame(_raw())
    with pytest.raises(FrameContractError, match="'ds': expected datetime64"):
        validate_frame(frame.assign(ds=frame["ds"].dt.tz_localize(None)))
    with pytest.raises(FrameContractError, match="infinity"):
        validate_frame(frame.assign(y=[1.0, np.inf, 2.0]))
    with pytest.raises(FrameContractError, match="unit"):
        validate_frame(frame.assign(ds=frame["ds"].dt.as_unit("us")))


@pytest.mark.parametrize(("level", "name"), [(0.5, "q50"), (0.9, "q90"), (0.975, "q97.5")])
def test_quantile_column(level: float, name: str) -> None:
    assert quantile_column(level) == name
