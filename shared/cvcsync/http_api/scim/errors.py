"""SCIM errors (RFC 7644 section 3.12): a status, maybe a ``scimType``, and a detail that names the fix.

Every failure at ``/scim/v2`` answers the Error schema, never the HTTP API's ``{"error": ...}``: IdPs show the
``detail`` in their provisioning logs, so it says what is wrong and what to change. Values that are personal data
(e-mail, phone) are never echoed: the mapping masks them (``records.clean_field``), the rest is named by attribute.

The engine's failures are translated here, once: a CVC refusal for good is 502 (the change is a dead letter and
the scheduled redrive applies it), anything that may pass (throttling, 5xx, timeouts, an open circuit, a run that
could not finish) is 503 with ``Retry-After`` — Entra ID and Okta retry 5xx and 429 on their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cvcsync.errors import CvcSyncError

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"

# RFC 7644 table 9 (plus invalidSyntax and the others named there): the scimType values this API answers.
INVALID_FILTER = "invalidFilter"
TOO_MANY = "tooMany"
UNIQUENESS = "uniqueness"
MUTABILITY = "mutability"
INVALID_SYNTAX = "invalidSyntax"
INVALID_PATH = "invalidPath"
NO_TARGET = "noTarget"
INVALID_VALUE = "invalidValue"

RETRY_AFTER_SECONDS = 10


class ScimError(CvcSyncError):
    """An answer other than success, in the SCIM Error schema. ``code`` (for logs) is the scimType, else a name."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        scim_type: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, code=code or scim_type or f"Scim{status}")
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = list(headers)
        self.extra = dict(extra or {})
        self.retryable = status in (429, 503)

    def body(self) -> dict[str, Any]:
        """The Error resource. ``status`` is a string, as RFC 7644's examples and Entra ID's send it."""
        out: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type is not None:
            out["scimType"] = self.scim_type
        if self.extra:
            out["urn:cvcsync:scim:error"] = self.extra  # cvc-sync's own members, kept apart from the schema's
        return out


def bad_request(detail: str, scim_type: str = INVALID_VALUE) -> ScimError:
    return ScimError(400, detail, scim_type=scim_type)


def not_found(detail: str) -> ScimError:
    return ScimError(404, detail, code="NotFound")


def unavailable(detail: str, *, retry_after: float | None = None, extra: Mapping[str, Any] | None = None) -> ScimError:
    """503: the IdP retries (its own schedule, or ``Retry-After``)."""
    wait = str(max(1, round(retry_after if retry_after else RETRY_AFTER_SECONDS)))
    return ScimError(503, detail, code="Unavailable", headers=[("Retry-After", wait)], extra=extra)


def from_api_error(status: int, code: str, message: str, headers: Sequence[tuple[str, str]]) -> ScimError:
    """The HTTP API's answer (``http_api.errors.ApiError``, raised by the shared run helpers) in SCIM's shape.

    A 429 of the container's circuit becomes 503 with the same ``Retry-After``: RFC 7644 lists no 429, and Entra
    ID and Okta both retry a 503. A 502 (CVC refused for good) stays 502.
    """
    if status == 429:
        status = 503
    return ScimError(status, message, code=code, headers=headers)
