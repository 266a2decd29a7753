"""The back-test metrics against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import InvalidInputError
from models.metrics import score_backtest

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")


def _hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="h")


def test_metrics_match_a_hand_computation() -> None:
    history = pd.concat(
        [
            pd.DataFrame({"unique_id": "a", "ds": _hours(50), "y": np.arange(50.0)}),
            pd.DataFrame({"unique_id": "b", "ds": _hours(50), "y": 5.0}),
            pd.DataFrame({"unique_id": "c", "ds": _hours(20), "y": 2.0 * np.arange(20)}),
        ]
    )
    h = pd.Timedelta(hours=1)
    rows = [
        # a: origin 30 (scale: 24-hour differences are all 24)
        ("a", T0 + 30 * h, T0 + 30 * h, 30.0, 28.0, 29.0),
        ("a", T0 + 30 * h, T0 + 31 * h, 31.0, 34.0, 35.0),
        # a: origin 40, perfect
        ("a", T0 + 40 * h, T0 + 40 * h, 40.0, 40.0, 40.0),
        ("a", T0 + 40 * h, T0 + 41 * h, 41.0, 41.0, 41.0),
        # b: flat, zero scale: undefined, left out of the averages
        ("b", T0 + 30 * h, T0 + 30 * h, 5.0, 6.0, 6.0),
        # c: 10 hours before the origin, so the scale is the one-step change, 2
        ("c", T0 + 10 * h, T0 + 10 * h, 20.0, 21.0, 19.0),
    ]
    backtest = pd.DataFrame(rows, columns=["unique_id", "origin", "ds", "y", "yhat", "q90"])
    score = score_backtest(history, backtest, 0.9)
    a_mase = (2.5 / 24 + 0.0) / 2
    a_pinball = (((0.9 * 1) + (0.1 * 4)) / 2 / 24 + 0.0) / 2
    per = score.per_instance
    assert per.loc["a", "mase"] == pytest.approx(a_mase)
    assert per.loc["a", "pinball"] == pytest.approx(a_pinball)
    assert per.loc["a", "coverage"] == pytest.approx(0.75)
    assert np.isnan(per.loc["b", "mase"])
    assert per.loc["c", "mase"] == pytest.approx(0.5)
    assert per.loc["c", "pinball"] == pytest.approx(0.45)
    assert per.loc["c", "coverage"] == 0.0
    assert score.mase == pytest.approx((a_mase + 0.5) / 2)
    assert score.pinball == pytest.approx((a_pinball + 0.45) / 2)
    assert score.coverage == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert score.origins == 3


def test_missing_quantile_column_is_named() -> None:
    history = pd.DataFrame({"unique_id": "a", "ds": _hours(30), "y": 1.0})
    backtest = pd.DataFrame(
        {"unique_id": ["a"], "origin": [T0], "ds": [T0], "y": [1.0], "yhat": [1.0]}
    )
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) \['q90'\]"):
        score_backtest(history, backtest, 0.9)
