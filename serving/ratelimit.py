"""A token-bucket rate limit per bearer token."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Allow each key ``rate`` requests per second on average, in bursts of ``burst``.

    Parameters
    ----------
    rate
        Requests per second a key earns back.
    burst
        The most requests a key may make at once.
    monotonic
        The time source, in seconds.
    """

    def __init__(
        self, rate: float, burst: int, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> int:
        """Spend one request of ``key``; return 0, or the seconds to wait when spent."""
        now = self._monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            # a little slack, so float rounding never refuses a request that has earned its token
            if tokens >= 1.0 - 1e-9:
                self._buckets[key] = (max(0.0, tokens - 1.0), now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
