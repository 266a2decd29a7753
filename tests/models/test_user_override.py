"""One rule puts an owner's forecast in force, for the model and the API alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from models.user import DailyProfile, ExplicitForecast, override_forecast

HOURS = pd.date_range("2026-12-01", periods=48, freq="h", tz="UTC")


@given(
    st.lists(st.floats(0, 100), min_size=24, max_size=24),
    st.sets(st.integers(0, 47), min_size=1, max_size=48),
)
def test_the_owner_s_values_replace_every_column_where_given_and_nothing_else(
    daily: list[float], named: set[int]
) -> None:
    learned = {"yhat": np.linspace(1, 48, 48), "q90": np.linspace(2, 96, 48)}
    sources = np.array(["learned"] * 48, dtype=object)
    rows = sorted(named)
    explicit = ExplicitForecast.from_mapping(
        pd.Series([daily[i % 24] for i in rows], index=HOURS[rows], dtype="float64")
    )
    for user, where in ((DailyProfile(tuple(daily)), set(range(48))), (explicit, named)):
        out, out_sources = override_forecast(user, HOURS, learned, sources)
        for i in range(48):
            if i in where:
                assert out["yhat"][i] == out["q90"][i] == daily[i % 24]
                assert out_sources[i] == "user"
            else:
                assert (out["yhat"][i], out["q90"][i]) == (learned["yhat"][i], learned["q90"][i])
                assert out_sources[i] == "learned"
    assert sources.tolist() == ["learned"] * 48  # the inputs are left as they were
