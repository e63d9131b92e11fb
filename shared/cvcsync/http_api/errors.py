"""Errors as the HTTP API answers them: a status, a stable code, a message, maybe the field at fault.

Foreign errors are translated here, once: a ``CvcError`` becomes 502 (CVC or its gateway refused) or 503 (worth
retrying: throttling, 5xx, timeouts, the deadline), carrying CVC's own code and request id; an
``ObjectStoreError`` likewise. A run the engine could not finish for a reason that passes (state contention, a
dead-letter sink that failed) is 503 ``RunNotFinished`` with ``Retry-After``: never a 500, which says "bug".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from cvcsync.adapters.objects import ObjectStoreError
from cvcsync.errors import CvcError, CvcSyncError, InvalidInputError
from cvcsync.outputs.deadletters import DeadLetterError

RETRY_AFTER_SECONDS = 10  # a run that did not finish: the state or the dead-letter sink is usually back by then
# Engine errors that say "not now" without a ``retryable`` flag of their own: a commit that lost to concurrent
# runs too often, a state generation that vanished while read, letters with nowhere to go (a setting to fix).
_NOT_NOW = frozenset({"StateContention", "StateMissing", "NoDeadLetterSink"})


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
    return from_cvc_summary(cvc_summary(error), retry_after=error.retry_after)


def from_cvc_summary(
    cvc: Mapping[str, Any], *, retry_after: float | None = None, details: Mapping[str, Any] | None = None
) -> ApiError:
    """A CVC failure as the engine records it (``CvcError.to_dict``, or why a change was not sent): 502 when CVC
    refused for good, 503 when another attempt may pass."""
    action, code = cvc.get("action") or "the call", cvc.get("code")
    extra = {"cvc": dict(cvc), **(details or {})}
    if cvc.get("retryable"):
        return ApiError(
            503,
            "CvcUnavailable",
            f"CVC did not answer {action} in time or asked to retry later ({code})",
            headers=_retry_after(retry_after),
            details=extra,
        )
    return ApiError(502, "CvcRefused", f"CVC refused {action}: {code}: {cvc.get('message')}", details=extra)


def from_store_error(error: ObjectStoreError) -> ApiError:
    store = {"code": error.code, "message": error.message, "requestId": error.request_id}
    if error.retryable:
        return ApiError(
            503,
            "StoreUnavailable",
            "the object store failed; retry later",
            headers=_retry_after(RETRY_AFTER_SECONDS),
            details={"store": store},
        )
    return ApiError(502, "StoreRefused", f"the object store refused: {error.code}", details={"store": store})


def from_run_error(error: CvcSyncError) -> ApiError | None:
    """The answer for an error a run raised, or None when it is a bug or a misconfiguration (the app's 500)."""
    if isinstance(error, CvcError):
        return from_cvc_error(error)
    if isinstance(error, ObjectStoreError):
        return from_store_error(error)
    if error.retryable or isinstance(error, DeadLetterError) or error.code in _NOT_NOW:
        return ApiError(
            503,
            "RunNotFinished",
            f"the run could not finish now ({error.code}): retry later",
            headers=_retry_after(RETRY_AFTER_SECONDS),
            details={"cause": {"code": error.code, "message": error.message, "retryable": True}},
        )
    return None


@contextmanager
def run_errors(input_field: str | None = None) -> Iterator[None]:
    """Around a run: its errors as answers. ``input_field``: the request member an ``InvalidInputError`` is about
    (a sync's ``key``); without one, such an error is a bug."""
    try:
        yield
    except ApiError:
        raise
    except InvalidInputError as error:
        if input_field is None:
            raise
        raise ApiError(400, error.code, error.message, field=input_field) from error
    except CvcSyncError as error:
        answer = from_run_error(error)
        if answer is None:
            raise
        raise answer from error
