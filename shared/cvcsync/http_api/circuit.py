"""The HTTP API's circuit breaker: the engine's ``CircuitBreaker``, kept for a warm container, with a cool-down.

An event function's breaker lives for one invocation; an HTTP container serves many short requests, so the
breaker outlives them: once CVC fails systemically (an auth error at once, or ``threshold`` consecutive failed
calls), every request that would call CVC is answered 429 with ``Retry-After`` until ``cooldown`` seconds have
passed. Then one probe is let through: its success closes the circuit, its failure opens it again at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..engine.circuit import CircuitBreaker
from ..errors import CvcError

DEFAULT_THRESHOLD = 5


class ContainerCircuit:
    def __init__(self, *, threshold: int = DEFAULT_THRESHOLD, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._breaker = CircuitBreaker(threshold)
        self._opened_at: float | None = None

    def retry_after(self, cooldown: float) -> float | None:
        """Seconds until a call may be tried again, or None when calls may go ahead now."""
        with self._lock:
            if self._opened_at is None:
                return None
            left = self._opened_at + cooldown - self._clock()
            if left > 0:
                return left
            self._breaker = CircuitBreaker(1)  # half open: the next failure opens it again at once
            self._opened_at = None
            return None

    @property
    def reason(self) -> str | None:
        return self._breaker.reason

    def record(self, error: CvcError | None) -> None:
        """A call's outcome: None for a success."""
        with self._lock:
            breaker = self._breaker
            if error is None and breaker.threshold != self.threshold:
                self._breaker = breaker = CircuitBreaker(self.threshold)  # the probe passed: closed again
            breaker.record(error)
            if breaker.open and self._opened_at is None:
                self._opened_at = self._clock()
