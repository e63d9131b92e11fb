"""How many CVC calls a run keeps in flight: found by asking, not by guessing.

CVC publishes no rate limit. A fixed concurrency is either timid (4 calls at 50 ms each is 8,000 users/s whatever
the service could take) or rude (throttled on every other call). The controller starts where the settings say
(``CVCSYNC_CONCURRENCY``) and moves on what the service answers, attempt by attempt. It is the client's ``Pacer``:
an attempt, a retry too, starts only while fewer than ``limit`` are under way, so a cut takes effect at once.

- **Additive increase**, about one more call in flight per round of answers (``1/limit`` per answer), while the
  answers come back within ``LATENCY_TOLERANCE`` times the fastest recent one. Slower than that, more calls would
  only queue (on this machine's CPU or the service's): the limit holds.
- **Multiplicative decrease** (``BACKOFF``) on throttling (``Throttling*``, ``ServiceUnavailable``, HTTP 429 or
  503) and on other 5xx, once per round: an attempt started before the last cut says nothing about the new limit
  and does not cut again; one started after it does.
- **A remembered ceiling.** The level that was throttled is remembered; the way back up to it is quick, and the
  last step to it and past it is ``PROBE_SLOWDOWN`` times slower. Throttling then costs about one call per probe
  instead of one per round, and the limit spends most of the run at the highest level the service accepts. A
  probe that passes the ceiling forgets it (the service's limit moved).
- **Retry-after is for everyone.** ``x-acs-retry-after`` on any answer pauses every worker's next attempt until it
  has passed, not only the one that saw it (each retry of the others would only be throttled in turn).
- **Bounded** by ``[1, maximum]`` (``CVCSYNC_MAX_CONCURRENCY``). A maximum equal to the start pins the limit: it
  neither rises nor falls (the retry-after pause still holds every worker).

Transport failures (timeouts, dropped connections) and the caller's own deadline move nothing: they say nothing
certain about the service's load. A business refusal (``Success: false``) is an answer like any other.

Pure logic under one lock; the clock and the sleep are injectable, so tests drive it without waiting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cvcsync.adapters.retry import is_server_error, is_throttling
from cvcsync.budget import TimeBudget
from cvcsync.errors import CvcBusinessError, CvcError

log = logging.getLogger(__name__)

BACKOFF = 0.7  # the limit after throttling or a 5xx, as a share of the limit before
PROBE_SLOWDOWN = 16.0  # near the remembered ceiling, increase this many times more slowly
LATENCY_TOLERANCE = 2.0  # an answer slower than this many times the fastest recent one does not raise the limit
LATENCY_WINDOW = 64  # answers per window of the fastest-answer baseline (the baseline spans two windows)


@dataclass(frozen=True)
class ConcurrencyReport:
    """How the limit moved over one run: where it started, its range, where it ended, what moved it."""

    start: int
    maximum: int
    low: int
    high: int
    final: int
    mean: float  # the limit averaged over the run's answered attempts
    settled: float  # the same over the second half of them: where the run settled
    attempts: int  # attempts answered (or failed) while paced
    throttled: int  # of those, answered with throttling (``Throttling*``, ServiceUnavailable, 429, 503)
    server_errors: int  # answered with another 5xx
    backoffs: int  # times the limit was cut
    pauses: int  # ``x-acs-retry-after`` answers that paused every worker

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.attempts if self.attempts else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "max": self.maximum,
            "low": self.low,
            "high": self.high,
            "final": self.final,
            "mean": round(self.mean, 2),
            "settled": round(self.settled, 2),
            "attempts": self.attempts,
            "throttled": self.throttled,
            "serverErrors": self.server_errors,
            "backoffs": self.backoffs,
            "pauses": self.pauses,
        }


_COUNTS = ("throttled", "serverErrors", "backoffs", "pauses")


def combine(before: Mapping[str, Any] | None, report: ConcurrencyReport) -> dict[str, Any]:
    """One run's figures over all its invocations (a checkpointed run continues in another): ``before`` is what
    the earlier ones reported (``to_dict``), ``report`` the latest. The start is the first one's, the range spans
    them all, the counts add up, the mean is over every attempt; the final and settled limits are the latest's."""
    if not before:
        return report.to_dict()
    earlier = int(before.get("attempts", 0))
    attempts = earlier + report.attempts
    mean = (float(before.get("mean", 0.0)) * earlier + report.mean * report.attempts) / attempts if attempts else 0.0
    return {
        **report.to_dict(),
        "start": before.get("start", report.start),
        "low": min(int(before.get("low", report.low)), report.low),
        "high": max(int(before.get("high", report.high)), report.high),
        "mean": round(mean, 2),
        "attempts": attempts,
        **{k: int(before.get(k, 0)) + v for k, v in report.to_dict().items() if k in _COUNTS},
    }


class ConcurrencyController:
    """The current limit on calls in flight (``limit``), moved by each attempt's outcome (``after_attempt``)."""

    def __init__(
        self,
        start: int,
        maximum: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if maximum < 1:
            raise ValueError(f"the maximum concurrency must be at least 1, got {maximum}")
        self.maximum = maximum
        self.start = min(max(1, start), maximum)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window = float(self.start)
        self._ceiling: float | None = None  # the level last throttled
        self._active = 0  # attempts under way
        self._started = threading.local()  # per thread: the number of cuts when its attempt under way started
        self._slot_freed = threading.Condition(self._lock)
        self._paused_until = -math.inf
        self._fastest = [math.inf, math.inf]  # fastest answer of the previous and of the current window
        self._in_window = 0
        self._seen = array("I")  # the limit at each attempt's end (4 bytes a call: 40 kB for a million users)
        self._low = self._high = self.start
        self._throttled = self._server_errors = self._backoffs = self._pauses = 0

    @property
    def limit(self) -> int:
        """Calls that may be in flight now."""
        return int(self._window)

    # -- the client's Pacer ------------------------------------------------------------------------------------

    def before_attempt(self, budget: TimeBudget) -> bool:
        """Wait out a pause the service asked for, then for a place under the limit; False (no place taken) when
        the pause would outlast ``budget`` or the budget ends while waiting."""
        while True:
            with self._lock:
                wait = self._paused_until - self._clock()
                if wait <= 0:
                    if self._active < self.limit:
                        self._active += 1
                        self._started.cuts = self._backoffs
                        return True
                    remaining = budget.remaining()
                    if remaining is not None and remaining <= 0:
                        return False
                    # An attempt under way ends within its timeout and frees its place; look again at least
                    # every second whatever happens.
                    self._slot_freed.wait(1.0 if remaining is None else min(remaining, 1.0))
                    continue
            if not budget.allows(wait):
                return False
            self._sleep(wait)

    def after_attempt(self, latency: float | None, error: CvcError | None) -> None:
        """One attempt ended (``latency`` None with no ``error``: without an answer or a CVC error): its place
        frees, and its outcome moves the limit."""
        with self._lock:
            self._active -= 1
            self._slot_freed.notify()
            if error is None and latency is None:
                return
            if error is None or isinstance(error, CvcBusinessError):
                self._answered(latency or 0.0)
            elif is_throttling(error.code, error.http_status):
                self._throttled += 1
                if error.retry_after:
                    self._pauses += 1
                    self._paused_until = max(self._paused_until, self._clock() + error.retry_after)
                self._cut()
            elif is_server_error(error.code, error.http_status):
                self._server_errors += 1
                self._cut()
            limit = self.limit
            self._seen.append(limit)
            self._low, self._high = min(self._low, limit), max(self._high, limit)

    # -- the rules (under the lock) ----------------------------------------------------------------------------

    def _answered(self, latency: float) -> None:
        current = self._fastest[1] = min(self._fastest[1], latency)
        self._in_window += 1
        if self._in_window >= LATENCY_WINDOW:
            self._fastest, self._in_window = [current, math.inf], 0
        if latency > LATENCY_TOLERANCE * min(self._fastest):
            return  # more calls in flight would only wait longer
        step = 1.0 / self._window
        ceiling = self._ceiling
        if ceiling is not None and self._window + 1.0 >= ceiling:
            step /= PROBE_SLOWDOWN
        self._window = min(float(self.maximum), self._window + step)
        if ceiling is not None and self._window >= ceiling + 1.0:
            self._ceiling = None  # a level above the one throttled passes now: the service's limit moved

    def _cut(self) -> None:
        if self.maximum == self.start:
            return  # pinned
        if getattr(self._started, "cuts", self._backoffs) < self._backoffs:
            return  # started under a limit already cut
        self._backoffs += 1
        self._ceiling = float(self.limit)
        self._window = max(1.0, self._window * BACKOFF)

    # -- the run's figures -------------------------------------------------------------------------------------

    def report(self) -> ConcurrencyReport:
        with self._lock:
            seen = self._seen
            half = seen[len(seen) // 2 :]
            return ConcurrencyReport(
                start=self.start,
                maximum=self.maximum,
                low=self._low,
                high=self._high,
                final=self.limit,
                mean=sum(seen) / len(seen) if seen else float(self.start),
                settled=sum(half) / len(half) if half else float(self.start),
                attempts=len(seen),
                throttled=self._throttled,
                server_errors=self._server_errors,
                backoffs=self._backoffs,
                pauses=self._pauses,
            )

    def finish(self) -> ConcurrencyReport:
        """The run's report, also logged (``concurrency`` in one INFO line) when the run called CVC at all."""
        moved = self.report()
        if moved.attempts:
            log.info("concurrency over the run", extra={"concurrency": moved.to_dict()})
        return moved
