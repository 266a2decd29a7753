"""Fixtures of the models tests: a small seeded synthetic fleet at hourly resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.synthetic import generate_fleet
from models.fleet import to_panel


@pytest.fixture(scope="module")
def hourly_fleet() -> pd.DataFrame:
    """Eight instances over 20 days of hourly demand (seeded, read-only)."""
    frame = generate_fleet(8, 20, seed=3, freq="1h", attributes=False)
    return frame[["unique_id", "ds", "y"]].assign(unique_id=lambda f: f["unique_id"].astype(str))


@pytest.fixture(scope="module")
def panel(hourly_fleet: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The fleet as a ``(8, 480)`` panel and its first hour."""
    _, y, first_hour = to_panel(hourly_fleet)
    y.setflags(write=False)
    return y, first_hour
