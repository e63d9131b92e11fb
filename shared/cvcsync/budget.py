"""The time a run may spend: the invocation's deadline less the margin kept free to checkpoint and commit.

One value passed down to everything that waits: the applier checks it before each batch and each bisection step,
the client clips every read timeout to it and never sleeps for a retry past it, the rate limiter never books a
token after it. A margin checked only before a batch starts is not enough: one slow call (a 20 s read timeout
against a 10 s margin) would eat the time the platform gives to checkpoint, and the run would be killed before it
recorded what it did. Monotonic seconds, like ``time.monotonic()``; the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimeBudget:
    """Spend until ``ends_at`` on ``clock`` (None: no limit, as in a local run without a deadline)."""

    ends_at: float | None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def until(
        cls, deadline: float | None, margin: float = 0.0, *, clock: Callable[[], float] = time.monotonic
    ) -> TimeBudget:
        """The budget of an invocation ending at ``deadline`` that keeps ``margin`` seconds for its own finish."""
        return cls(None if deadline is None else deadline - margin, clock)

    @classmethod
    def of(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> TimeBudget:
        """``seconds`` from now."""
        return cls(clock() + seconds, clock)

    @classmethod
    def unlimited(cls) -> TimeBudget:
        return cls(None)

    def remaining(self) -> float | None:
        """Seconds left (negative once spent), or None without a limit."""
        return None if self.ends_at is None else self.ends_at - self.clock()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def clip(self, timeout: float) -> float:
        """``timeout`` cut to what is left (never negative): a call must not outlast the budget."""
        remaining = self.remaining()
        return timeout if remaining is None else max(0.0, min(timeout, remaining))

    def allows(self, wait: float) -> bool:
        """Whether waiting ``wait`` seconds still leaves time to do something after it."""
        remaining = self.remaining()
        return remaining is None or wait < remaining
