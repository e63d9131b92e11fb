"""A client-side rate limit (``CVC_MAX_QPS``): a token bucket shared by every thread of one client.

CVC throttles per account; staying under its limit is cheaper than being throttled and backing off. A wait that
would pass the caller's deadline is not taken: the caller learns at once that there is no time left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token now or book the next one; return how long to wait for it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for a token; False (and no token taken) when the wait would outlast ``deadline``."""
        wait = self._reserve()
        if wait <= 0:
            return True
        if deadline is not None and self._clock() + wait > deadline:
            with self._lock:
                self._tokens += 1.0  # give the booked token back
            return False
        self._sleep(wait)
        return True
