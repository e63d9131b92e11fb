"""Errors as the HTTP API answers them: a status, a stable code, a message, maybe the field at fault.

Foreign errors are translated here, once: a ``CvcError`` becomes 502 (CVC or its gateway refused) or 503 (worth
retrying: throttling, 5xx, timeouts, the deadline), carrying CVC's own code and request id; an
``ObjectStoreError`` likewise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CvcError
from ..objects import ObjectStoreError


class ApiError(Exception):
    """An answer other than success. ``details`` are extra members of the error object (``problems``, ``cvc``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = list(headers)
        self.details = dict(details or {})

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.details)
        error["requestId"] = request_id
        return {"error": error}


def _retry_after(seconds: float | None) -> list[tuple[str, str]]:
    return [("Retry-After", str(max(1, round(seconds))))] if seconds else []


def cvc_summary(error: CvcError) -> dict[str, Any]:
    """What a caller needs to chase a CVC failure: CVC's code, message and request id, the action and attempts."""
    return {
        "action": error.action,
        "code": error.code,
        "message": error.message,
        "requestId": error.request_id,
        "httpStatus": error.http_status,
        "attempts": error.attempts,
        "retryable": error.retryable,
    }


def from_cvc_error(error: CvcError) -> ApiError:
    if error.retryable:
        return ApiError(
            503,
            "CvcUnavailable",
            f"CVC did not answer {error.action} in time or asked to retry later ({error.code})",
            headers=_retry_after(error.retry_after),
            details={"cvc": cvc_summary(error)},
        )
    return ApiError(
        502,
        "CvcRefused",
        f"CVC refused {error.action}: {error.code}: {error.message}",
        details={"cvc": cvc_summary(error)},
    )


def from_store_error(error: ObjectStoreError) -> ApiError:
    store = {"code": error.code, "message": error.message, "requestId": error.request_id}
    if error.retryable:
        return ApiError(503, "StoreUnavailable", "the object store failed; retry later", details={"store": store})
    return ApiError(502, "StoreRefused", f"the object store refused: {error.code}", details={"store": store})
