"""Retry decisions as small, composable pieces: what failed, is another attempt allowed, how long to wait.

Retries live in the client (never in the HTTP adapter, which would replay a used nonce). Backoff is exponential
with full jitter; the randomness is injected, and time comes from the caller's ``TimeBudget`` (its clock too), so
tests can pin both.

A caller that runs many calls at once may also pace every attempt through a ``Pacer`` (``engine.concurrency``):
one thread's throttled attempt then slows them all, not only the thread that saw it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from cvcsync.budget import TimeBudget
from cvcsync.errors import CvcError

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
THROTTLING_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 20.0


def is_retryable_code(code: str, http_status: int | None) -> bool:
    """Throttling and server-side failures may pass; anything about the request itself never will."""
    return code in THROTTLING_CODES or is_throttling(code, http_status) or (http_status in TRANSIENT_STATUSES)


def is_throttling(code: str, http_status: int | None) -> bool:
    """The service asks for fewer calls: flow control by name (``Throttling*``), ``ServiceUnavailable``, or HTTP
    429 / 503 whatever the code. Other 5xx are failures of the service, not requests to slow down."""
    return code.startswith(("Throttling", "ServiceUnavailable")) or http_status in THROTTLING_STATUSES


def is_server_error(code: str, http_status: int | None) -> bool:
    """The service failed (5xx, ``InternalError``), beyond asking for fewer calls."""
    return code == "InternalError" or (http_status is not None and http_status >= 500)


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
    """One call's attempts against the policy and the caller's time budget."""

    policy: RetryPolicy
    budget: TimeBudget = field(default_factory=TimeBudget.unlimited)
    attempts: int = 0

    def attempts_left(self) -> bool:
        return self.attempts < self.policy.max_attempts

    def next_delay(self, error: CvcError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error must be raised now (a wait that would
        spend the rest of the budget is never taken: there would be no time left to use it)."""
        if not error.retryable or not self.attempts_left():
            return None
        delay = self.policy.delay_after(error, self.attempts)
        return delay if self.budget.allows(delay) else None


class Pacer(Protocol):
    """Paces the attempts of many concurrent calls (``engine.concurrency.ConcurrencyController``)."""

    def before_attempt(self, budget: TimeBudget) -> bool:
        """Wait for this attempt's turn (a pause the service asked everyone to take, ``x-acs-retry-after``; a place
        among the attempts under way); False when the turn would not come within ``budget`` (the caller stops for
        lack of time, and does not call ``after_attempt``)."""
        ...

    def after_attempt(self, latency: float | None, error: CvcError | None) -> None:
        """The attempt ended: answered after ``latency`` seconds, or with ``error``, or (both None) with neither,
        by an unexpected exception. Called once for every ``before_attempt`` that returned True."""
        ...


def cut_short(error: CvcError, policy: RetryPolicy) -> bool:
    """Whether a call that raised ``error`` ended for lack of time rather than because of the error.

    The client raises the last error when it stops; a retryable one with attempts left under ``policy`` was stopped
    by the time budget (a wait or a clipped read that did not fit). Its work is not failed, only not done yet: a
    caller leaves it pending for the continuation instead of dead-lettering it.
    """
    if error.code == "DeadlineExceeded":
        return True
    return error.retryable and 0 < error.attempts < policy.max_attempts
