"""The HTTP API's circuit breaker: the engine's ``CircuitBreaker``, kept for a warm container, with a cool-down.

An event function's breaker lives for one invocation; an HTTP container serves many short requests, so the
breaker outlives them: once CVC fails systemically (an auth error at once, or ``threshold`` consecutive failed
calls), every request that would call CVC is answered 429 with ``Retry-After`` until ``cooldown`` seconds have
passed. Then the circuit is half open and admits exactly one probe: every other request keeps its 429 until the
probe's answer is recorded. Its success (or an answer about one record, which proves CVC is serving) closes the
circuit; a systemic failure opens it again at once for another cool-down. A probe whose request ended without
recording an answer (it raised something else) would hold the circuit half open for ever: after one cool-down
without an answer it is presumed lost and the next request probes instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cvcsync.engine.circuit import CircuitBreaker, is_systemic
from cvcsync.errors import CvcError

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 5
PROBE_WAIT = 1.0  # Retry-After while a probe is out: its answer usually comes well within a second


class ContainerCircuit:
    def __init__(self, *, threshold: int = DEFAULT_THRESHOLD, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._breaker = CircuitBreaker(threshold)
        self._opened_at: float | None = None  # None: closed
        self._probe_since: float | None = None  # half open, with the one probe out since then
        self._reason: str | None = None

    def retry_after(self, cooldown: float) -> float | None:
        """Seconds until a call may be tried again, or None when this caller may call now.

        Admission, not a question: once the cool-down has passed, the None goes to one caller only (the probe).
        """
        with self._lock:
            if self._opened_at is None:
                return None
            now = self._clock()
            if self._probe_since is None:
                left = self._opened_at + cooldown - now
                if left > 0:
                    return left
            else:
                left = self._probe_since + cooldown - now
                if left > 0:
                    return min(left, PROBE_WAIT)
                log.warning("circuit probe lost: no answer within the cool-down; letting another through")
            self._probe_since = now
            log.info("circuit half open: one probe call let through")
            return None

    @property
    def closed(self) -> bool:
        """Whether calls flow freely (a read-only view for health checks: it admits no probe)."""
        with self._lock:
            return self._opened_at is None

    @property
    def reason(self) -> str | None:
        return self._reason

    def record(self, error: CvcError | None) -> None:
        """A call's outcome: None for a success."""
        with self._lock:
            if self._opened_at is None:
                self._breaker.record(error)
                if self._breaker.open:
                    self._opened_at, self._reason = self._clock(), self._breaker.reason
                return
            if self._probe_since is None:
                return  # open: a late answer to a call admitted before it opened changes nothing
            if error is not None and is_systemic(error):
                self._opened_at, self._probe_since = self._clock(), None
                self._reason = f"{error.code} (the probe after the cool-down failed): {error.message}"
                log.error(
                    "circuit open again: the probe call failed",
                    extra={"code": "CircuitOpen", "cause": error.code},
                )
                return
            self._breaker = CircuitBreaker(self.threshold)
            self._opened_at = self._probe_since = self._reason = None
            log.info("circuit closed: the probe call was answered")
