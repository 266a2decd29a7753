"""Microsecond stamps of the store: exact both ways, before and after the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from market.clock import from_micros, to_micros

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# hypothesis bounds naive datetimes and attaches the zone
NAIVE_FROM, NAIVE_TO = EPOCH.replace(year=1900, tzinfo=None), EPOCH.replace(year=2200, tzinfo=None)
MOMENTS = st.datetimes(min_value=NAIVE_FROM, max_value=NAIVE_TO, timezones=st.just(UTC))


@given(MOMENTS)
def test_to_micros_is_the_exact_count_of_microseconds_since_the_epoch(moment: datetime) -> None:
    assert to_micros(moment) == (moment - EPOCH) // timedelta(microseconds=1)
    assert from_micros(to_micros(moment)) == moment


@given(st.integers(-(10**16), 10**16))
def test_from_micros_round_trips(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros
