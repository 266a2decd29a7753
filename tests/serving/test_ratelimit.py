"""The token bucket against a brute-force reference in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.ratelimit import RateLimiter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _reference(rate: int, burst: int, arrivals: list[tuple[int, str]]) -> list[bool]:
    # per key: tokens refill at `rate` per second up to `burst`; a request takes one
    buckets: dict[str, tuple[Fraction, int]] = {}
    out = []
    for at_ms, key in arrivals:
        tokens, last = buckets.get(key, (Fraction(burst), at_ms))
        tokens = min(Fraction(burst), tokens + Fraction(at_ms - last, 1000) * rate)
        allowed = tokens >= 1
        buckets[key] = (tokens - 1 if allowed else tokens, at_ms)
        out.append(allowed)
    return out


@settings(max_examples=80, deadline=None)
@given(
    rate=st.integers(1, 20),
    burst=st.integers(1, 10),
    steps=st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from(["a", "b"])), min_size=1, max_size=60
    ),
)
def test_the_bucket_allows_exactly_what_the_reference_allows(
    rate: int, burst: int, steps: list[tuple[int, str]]
) -> None:
    clock = _Clock()
    limiter = RateLimiter(rate, burst, monotonic=clock)
    arrivals = []
    at_ms = 0
    for gap_ms, key in steps:
        at_ms += gap_ms
        arrivals.append((at_ms, key))
    expected = _reference(rate, burst, arrivals)
    got = []
    for at_ms, key in arrivals:
        clock.now = at_ms / 1000
        wait = limiter.acquire(key)
        got.append(wait == 0)
        if wait:
            # the advice is enough: after waiting, the next request of the key would pass
            assert wait >= 1
    assert got == expected
    # no key ever exceeds its burst plus what the elapsed time earned
    for key in ("a", "b"):
        times = [t for (t, k), ok in zip(arrivals, got, strict=True) if k == key and ok]
        if times:
            assert len(times) <= burst + (times[-1] - times[0]) * rate / 1000 + 1e-9


def test_a_limiter_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        RateLimiter(0, 5)
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        RateLimiter(1, 0)
