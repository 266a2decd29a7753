"""Clocks to inject: the system clock at the edges, a manual clock in replays and tests."""

from __future__ import annotations

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
