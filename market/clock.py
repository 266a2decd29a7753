"""Clocks to inject: the system clock at the edges, a manual clock in replays and tests,
an accelerated clock for a live loop run faster than life (the demo's live day)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Return a timezone-aware ``moment`` as integer microseconds since the Unix epoch."""
    # the fields of the difference, not ``// timedelta``: the venue stamps every row
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Return the UTC datetime of integer microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def system_clock() -> datetime:
    """Return the current UTC time; pass this only at the program's edge (CLI, service)."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to, for deterministic replays.

    Parameters
    ----------
    start
        The first time it reads; must be timezone-aware.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"ManualClock needs a timezone-aware start, got {start!r}")
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"a clock does not run backwards: {delta}")
        self.now += delta
        return self.now

    def set(self, moment: datetime) -> datetime:
        """Move the clock forward to ``moment`` and return it."""
        return self.advance(moment - self.now)


class AcceleratedClock:
    """A clock that reads ``start`` at the wall-clock moment ``origin`` and then runs
    ``speed`` times as fast as the wall clock, for a live loop run faster than life.

    Two processes given the same ``start``, ``speed`` and ``origin`` read the same time.

    Parameters
    ----------
    start
        What the clock reads at ``origin``; timezone-aware.
    speed
        Simulated seconds per wall-clock second; positive and finite.
    origin
        The wall-clock moment at which the clock reads ``start``; ``wall()`` at
        construction when not given.
    wall
        The wall clock it follows.
    """

    def __init__(
        self,
        start: datetime,
        speed: float,
        *,
        origin: datetime | None = None,
        wall: Callable[[], datetime] = system_clock,
    ) -> None:
        if start.tzinfo is None or (origin is not None and origin.tzinfo is None):
            raise ValueError("AcceleratedClock needs timezone-aware start and origin")
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"an accelerated clock's speed must be positive, got {speed!r}")
        self.start = start
        self.speed = speed
        self.wall = wall
        self.origin = wall() if origin is None else origin

    def __call__(self) -> datetime:
        return self.start + (self.wall() - self.origin) * self.speed

    def wall_time_of(self, moment: datetime) -> datetime:
        """Return the wall-clock moment at which this clock reads ``moment``."""
        return self.origin + (moment - self.start) / self.speed
