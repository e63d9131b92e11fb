"""The emulator's own flow control: at most N calls in progress, at most R calls a second, then ``Throttling.User``.

CVC publishes no limit, but its gateway throttles an account that asks too much: HTTP 400 with ``Throttling``,
``Throttling.User`` or ``Throttling.Api`` (``shared/reference/cvc-api.md``), a newer gateway adding
``x-acs-retry-after`` in milliseconds. A client that adapts its concurrency needs something real to adapt to, so
the emulator can enforce both kinds of limit: a concurrency limit (calls being served at once, latency included)
and a rate limit (a token bucket of one second's calls). Beyond either it answers ``Throttling.User`` ("user flow
control", the per-account limit). A rate refusal says when the next call would pass (``x-acs-retry-after``, the
time to the next token); a concurrency refusal cannot know when a slot frees, so it sends no header.

Both limits are off unless set (``--max-concurrency``, ``--max-qps`` or the admin API's ``limits``). Counting is
per emulator, for every authenticated call, as one account's limit would be.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cvcsync_dev.emulator import codes

# camelCase (admin API) name of each setting.
JSON_NAMES = {"max_concurrency": "maxConcurrency", "max_qps": "maxQps"}


@dataclass(frozen=True)
class LimitSettings:
    """``max_concurrency``: calls served at once; ``max_qps``: calls admitted per second. None: no limit."""

    max_concurrency: int | None = None
    max_qps: float | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"maxConcurrency must be at least 1 (or null for no limit), got {self.max_concurrency}")
        if self.max_qps is not None and self.max_qps <= 0:
            raise ValueError(f"maxQps must be positive (or null for no limit), got {self.max_qps}")

    def to_json(self) -> dict[str, Any]:
        return {"maxConcurrency": self.max_concurrency, "maxQps": self.max_qps}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LimitSettings:
        """From the admin API's camelCase object; an absent or null setting is no limit."""
        unknown = set(data) - set(JSON_NAMES.values())
        if unknown:
            raise ValueError(f"unknown limit settings: {', '.join(sorted(unknown))}")
        concurrency = data.get("maxConcurrency")
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise ValueError(f"maxConcurrency must be a whole number or null, got {concurrency!r}")
        qps = data.get("maxQps")
        if qps is not None and (isinstance(qps, bool) or not isinstance(qps, (int, float))):
            raise ValueError(f"maxQps must be a number or null, got {qps!r}")
        return cls(concurrency, None if qps is None else float(qps))


class FlowControl:
    """Admits calls within the limits, refuses the others, and counts both (for the admin API's ``limits``).

    ``clock`` is monotonic seconds, injectable so a test can move time through the rate limit's bucket.
    """

    def __init__(self, settings: LimitSettings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._settings = settings or LimitSettings()
        self._generation = 0  # configurations so far: a call admitted under an earlier one is not counted any more
        self._reset_counters()
        self._refill()

    def _reset_counters(self) -> None:
        self._in_flight = 0
        self._admitted = 0
        self._refused = 0
        self._peak = 0

    def _refill(self) -> None:
        """A full bucket: one second's calls (at least one) may come at once."""
        qps = self._settings.max_qps
        self._burst = max(1.0, qps) if qps else 0.0
        self._tokens = self._burst
        self._updated = self._clock()

    @property
    def settings(self) -> LimitSettings:
        return self._settings

    def configure(self, settings: LimitSettings) -> None:
        """New limits and fresh counters. Calls under way are forgotten (a test's reset must not leave the next test
        a slow call of the last one, still holding a place)."""
        with self._lock:
            self._generation += 1
            self._settings = settings
            self._reset_counters()
            self._refill()

    def _take_token(self) -> float:
        """0 when a token was taken, else the seconds until the next one (nothing taken). Under the lock."""
        qps = self._settings.max_qps
        if not qps:
            return 0.0
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * qps)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / qps

    def enter(self) -> int:
        """Take a place for one call (``leave`` with the returned token gives it back once answered); raise the
        gateway's ``Throttling.User`` beyond a limit."""
        with self._lock:
            limit = self._settings.max_concurrency
            if limit is not None and self._in_flight >= limit:
                self._refused += 1
                raise codes.user_flow_control(None)
            wait = self._take_token()
            if wait > 0:
                self._refused += 1
                raise codes.user_flow_control(max(1, math.ceil(round(wait * 1000, 3))))
            self._in_flight += 1
            self._admitted += 1
            self._peak = max(self._peak, self._in_flight)
            return self._generation

    def leave(self, token: int) -> None:
        with self._lock:
            if token == self._generation:
                self._in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """The limits, and the calls admitted, refused, in progress now and at most at once since configured."""
        with self._lock:
            return {
                **self._settings.to_json(),
                "admitted": self._admitted,
                "refused": self._refused,
                "inFlight": self._in_flight,
                "peakInFlight": self._peak,
            }
