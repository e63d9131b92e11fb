"""One small error hierarchy, split by what the caller should do about it.

Every error has a stable ``code`` (for logs, reports and dead letters) and a ``retryable`` flag. Foreign
exceptions (requests, botocore, json) are translated at exactly one boundary each, with ``raise ... from exc``.
"""

from __future__ import annotations


class CvcSyncError(Exception):
    """Base of every error cvc-sync raises on purpose."""

    code = "CvcSyncError"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ConfigurationError(CvcSyncError):
    """Settings or credentials are missing or wrong: fix the deployment, retrying will not help."""

    code = "ConfigurationError"


class InvalidInputError(CvcSyncError):
    """The input (a file, a record, an event) is malformed: it can never succeed as it is."""

    code = "InvalidInput"


class CvcError(CvcSyncError):
    """An answer from CVC (or the way to it) that is not a success.

    Carries what a person needs to chase it with Alibaba Cloud support: action, code, message, request id and HTTP
    status. ``retryable`` tells the retry policy whether another attempt may succeed.
    """

    code = "CvcError"

    def __init__(
        self,
        message: str,
        *,
        action: str,
        code: str,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.action = action
        self.http_status = http_status
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = 0

    def __str__(self) -> str:
        where = f"HTTP {self.http_status}" if self.http_status is not None else "no answer"
        rid = f", request id {self.request_id}" if self.request_id else ""
        return f"{self.action} failed: {self.code}: {self.message} ({where}{rid})"

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "action": self.action,
            "httpStatus": self.http_status,
            "requestId": self.request_id,
            "attempts": self.attempts,
        }


class CvcGatewayError(CvcError):
    """The API gateway refused the call (signature, throttling, parameters): ``Code``/``Message`` answers."""


class CvcBusinessError(CvcError):
    """HTTP 200 with ``Success: false``: CVC understood and declined. ``code`` is its ``ErrorCode``."""


class CvcTransportError(CvcError):
    """No usable answer: connection refused or dropped, timeout, or a body that is not CVC's JSON."""


class DeadlineExceeded(CvcError):
    """The caller's deadline (the function's remaining time) left no room for another attempt."""
