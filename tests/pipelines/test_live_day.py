"""The live day's parts: the accelerated clock two processes agree on, the settings that
give it to the API, and the readings of the fleet's last day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.clock import AcceleratedClock, ManualClock, system_clock
from pipelines.live_day import HOURS, live_day_readings
from pipelines.params import SyntheticFleet
from serving.settings import Settings

DAY = datetime(2024, 1, 10, tzinfo=UTC)
WALL = datetime(2026, 12, 5, 12, tzinfo=UTC)


@given(
    speed=st.floats(1.0, 10_000.0, allow_nan=False),
    elapsed=st.integers(0, 10**6),
)
def test_the_clock_runs_speed_times_faster_and_maps_back_to_the_wall(
    speed: float, elapsed: int
) -> None:
    wall = ManualClock(WALL)
    clock = AcceleratedClock(DAY, speed, origin=WALL, wall=wall)
    assert clock() == DAY
    wall.advance(timedelta(milliseconds=elapsed))
    reads = clock()
    assert abs((reads - DAY).total_seconds() - elapsed / 1000 * speed) < 1e-3 * speed
    # the wall moment it reads a time at is the moment it is read there
    assert abs((clock.wall_time_of(reads) - wall()).total_seconds()) < 1e-3


def test_two_clocks_with_one_origin_read_the_same_time() -> None:
    wall = ManualClock(WALL + timedelta(seconds=7))
    first = AcceleratedClock(DAY, 600.0, origin=WALL, wall=wall)
    second = AcceleratedClock(DAY, 600.0, origin=WALL, wall=wall)
    assert first() == second() == DAY + timedelta(seconds=4200)


def test_the_clock_refuses_naive_times_and_bad_speeds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AcceleratedClock(datetime(2024, 1, 1), 2.0)  # noqa: DTZ001
    for speed in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="speed must be positive"):
            AcceleratedClock(DAY, speed)


def test_the_settings_give_the_api_the_system_clock_or_the_accelerated_one() -> None:
    assert Settings().market_clock() is system_clock
    settings = Settings(clock_start=DAY, clock_speed=600.0, clock_origin=WALL)
    clock = settings.market_clock()
    assert isinstance(clock, AcceleratedClock)
    assert (clock.start, clock.speed, clock.origin) == (DAY, 600.0, WALL)
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(clock_speed=0)


def test_the_live_day_is_the_fleets_last_whole_day_of_known_instances() -> None:
    fleet = SyntheticFleet(instances=5, days=3.5, seed=2)
    known = ("vm-000000", "vm-000002", "vm-000004")
    readings = live_day_readings(fleet, (*known, "vm-elsewhere"))
    # 3.5 days from 2024-01-01 end at 2024-01-04 12:00: the day before it
    start = datetime(2024, 1, 3, 12, tzinfo=UTC)
    assert readings["interval_start"].min() == start
    assert readings["interval_start"].max() == start + timedelta(hours=HOURS, minutes=-5)
    assert sorted(set(readings["instance_id"])) == list(known)
    assert len(readings) == len(known) * HOURS * 12
    assert readings["step"].tolist() == sorted(readings["step"])
    assert set(readings["step"]) == set(range(HOURS * 12))
    assert readings["cpu_percent"].between(0.0, 100.0).all()
