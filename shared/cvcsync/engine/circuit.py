"""A circuit breaker for one invocation: when CVC is failing systemically, stop calling it.

Auth errors (a wrong or disabled key, a missing permission) open it at once: every further call would fail the
same way. Otherwise ``threshold`` consecutive calls failing after their retries open it. Once open, no call is
made for the rest of the invocation; the caller fails fast so the platform retries later, and one ERROR line with
the stable code ``CircuitOpen`` says why (instead of thousands of failed-call lines).
"""

from __future__ import annotations

import logging
import threading

from cvcsync.errors import CvcError

log = logging.getLogger(__name__)

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "Forbidden.RAM",
        "MissingSecurityToken",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
        "InvalidSecurityToken.MismatchWithAccessKey",
    }
)


def is_systemic(error: CvcError) -> bool:
    """An error about the service or our access to it (it counts toward opening), not about one record's content."""
    return error.retryable or error.code in AUTH_CODES


class CircuitBreaker:
    def __init__(self, threshold: int = 5) -> None:
        self.threshold = threshold
        self.reason: str | None = None
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.reason is not None

    def record(self, error: CvcError | None) -> None:
        with self._lock:
            if error is None:
                self._failures = 0
                return
            if not is_systemic(error):
                return  # one record's problem (a business refusal), not the service's
            self._failures += 1
            if self.reason is None and (error.code in AUTH_CODES or self._failures >= self.threshold):
                self.reason = f"{error.code} after {self._failures} failing call(s): {error.message}"
                log.error(
                    "circuit open: CVC is failing; no more calls this invocation",
                    extra={"code": "CircuitOpen", "cause": error.code, "failures": self._failures},
                )
