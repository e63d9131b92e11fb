"""Retry decisions as small, composable pieces: what failed, is another attempt allowed, how long to wait.

Retries live in the client (never in the HTTP adapter, which would replay a used nonce). Backoff is exponential
with full jitter; the randomness and the clock are injected so tests can pin them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import CvcError

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.Resource",
        "ServiceUnavailable",
        "InternalError",
        "ServiceUnavailableTemporary",
    }
)
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
MAX_RETRY_AFTER = 20.0


def is_retryable_code(code: str, http_status: int | None) -> bool:
    """Throttling and server-side failures may pass; anything about the request itself never will."""
    return code in THROTTLING_CODES or code.startswith("Throttling") or (http_status in TRANSIENT_STATUSES)


def parse_retry_after(header: str | None) -> float | None:
    """``x-acs-retry-after`` is in milliseconds; capped so a wild value cannot stall a function."""
    if not header:
        return None
    try:
        millis = float(header)
    except ValueError:
        return None
    if millis < 0:
        return None
    return min(millis / 1000.0, MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 5.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**(attempt-1))] after the given failed attempt."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(attempt - 1, 0)))
        return self.rng.uniform(0.0, ceiling)

    def delay_after(self, error: CvcError, attempt: int) -> float:
        if error.retry_after is not None:
            return error.retry_after
        return self.backoff(attempt)


@dataclass
class RetryContext:
    """One call's attempts against the policy and the caller's deadline (monotonic seconds, or None)."""

    policy: RetryPolicy
    deadline: float | None = None
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0

    def attempts_left(self) -> bool:
        return self.attempts < self.policy.max_attempts

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def next_delay(self, error: CvcError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error must be raised now."""
        if not error.retryable or not self.attempts_left():
            return None
        delay = self.policy.delay_after(error, self.attempts)
        remaining = self.time_left()
        if remaining is not None and delay >= remaining:
            return None
        return delay
