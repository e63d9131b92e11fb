"""``/scim/v2``: SCIM 2.0 (RFC 7643, 7644) for identity providers, inside the HTTP function's one WSGI app.

``HttpApi`` hands every request under ``/scim/v2`` here (``http_api.app``: the only SCIM import, made on the first
SCIM request, so no other route pays for it). The steps mirror the HTTP API's, in SCIM's terms: route (404 with
what exists, 405 with ``Allow``), body size (413), a bearer token from ``CVCSYNC_SECRET_SCIM_TOKENS`` (401; none
configured: 503, failing closed), content type (415), the operation; one ``application/scim+json`` answer; every
failure in the SCIM Error schema, never a trace (500 with the request id; the log line has the traceback).

The discovery endpoints answer without a token: they are constants and say nothing about the users. A request with
no platform deadline (``cvcsync serve``) gets ``LOCAL_DEADLINE`` seconds, so every CVC call and lock it takes is
bounded, as on FC and Lambda.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from cvcsync.config import ENV_HTTP_MAX_BODY, _int
from cvcsync.errors import ConfigurationError
from cvcsync.http_api.app import ENVIRON_CONTEXT, FC_CONTEXT, SCIM_PREFIX, State, _headers, _query, _read_body, _text
from cvcsync.http_api.errors import ApiError
from cvcsync.http_api.handlers import Dependencies
from cvcsync.http_api.scim import handlers
from cvcsync.http_api.scim.deletions import DeletionLimit
from cvcsync.http_api.scim.errors import INVALID_SYNTAX, SCIM_JSON, ScimError, from_api_error, unavailable
from cvcsync.http_api.scim.settings import ScimSettings
from cvcsync.http_api.scim.store import ResourceStore
from cvcsync.http_api.scim.writes import WriteContext
from cvcsync.http_api.settings import DEFAULT_MAX_BODY
from cvcsync.logs import request_id_var
from cvcsync.platform import services
from cvcsync.platform.runtime import Invocation, from_context

log = logging.getLogger(__name__)

PREFIX = SCIM_PREFIX
LOCAL_DEADLINE = 60.0
_DISCOVERY = ("ServiceProviderConfig", "ResourceTypes", "Schemas")
_REFUSED = ("Groups", "Bulk", ".search", "Me")
_ENDPOINTS = {name.lower(): name for name in (*_DISCOVERY, *_REFUSED, "Users")}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _allowed(route: list[str]) -> tuple[str, ...]:
    head = route[0]
    if head in _DISCOVERY:
        return ("GET",)
    if head == "Users":
        if len(route) == 1:
            return ("GET", "POST")
        return ("POST",) if route[1] == ".search" else ("DELETE", "GET", "PATCH", "PUT")
    return ("DELETE", "GET", "PATCH", "POST", "PUT")  # the refusals answer every method alike


def _template(route: list[str]) -> str:
    """The route as logged: ids replaced, so log lines group and carry no identifier."""
    if route[0] == "Users" and len(route) > 1 and route[1] != ".search":
        return f"{PREFIX}/Users/{{id}}"
    return f"{PREFIX}/{'/'.join(route[:2])}"


def _base_url(environ: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip() or str(environ.get("wsgi.url_scheme") or "")
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
    script = str(environ.get("SCRIPT_NAME") or "").rstrip("/")
    return f"{scheme}://{host}{script}{PREFIX}" if scheme and host else f"{script}{PREFIX}"


class ScimApp:
    """The SCIM part of the HTTP function; ``state`` is ``HttpApi``'s (the container's circuit breaker)."""

    def __init__(
        self,
        env: Mapping[str, str],
        state: State,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = env
        self.state = state
        self._monotonic = monotonic

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = self._monotonic()
        invocation = from_context(environ.get(ENVIRON_CONTEXT) or environ.get(FC_CONTEXT), started=started)
        if invocation.deadline is None:
            invocation.deadline = started + LOCAL_DEADLINE
        token = request_id_var.set(invocation.request_id)
        rq: handlers.ScimRequest | None = None
        try:
            try:
                rq = self._request(environ)
                response = self._handle(rq, invocation)
            except ApiError as error:  # the shared request helpers' (a body too large, a URL not UTF-8)
                failure = from_api_error(error.status, error.code, error.message, error.headers)
                response = handlers.ScimResponse(failure.status, failure.body(), failure.headers)
            except ScimError as error:
                response = handlers.ScimResponse(error.status, error.body(), error.headers)
            except ConfigurationError as exc:
                log.error("scim misconfigured", extra={"code": exc.code, "detail": exc.message})
                why = f"the function is misconfigured; its log says how (request {invocation.request_id})"
                failure = ScimError(500, why)
                response = handlers.ScimResponse(500, failure.body())
            except Exception:
                log.exception("scim request failed unexpectedly", extra={"code": "InternalError"})
                failure = ScimError(500, f"internal error; quote request {invocation.request_id} when reporting it")
                response = handlers.ScimResponse(500, failure.body())
            payload = orjson.dumps(response.body) if response.body is not None else b""
            headers = [("Content-Length", str(len(payload))), ("Cache-Control", "no-store")]
            if response.body is not None:
                headers.insert(0, ("Content-Type", SCIM_JSON))
            headers += [("X-Request-Id", invocation.request_id), *response.headers]
            self._log(environ, rq, response, started)
            start_response(f"{response.status} {_STATUS_TEXT.get(response.status, 'Unknown')}", headers)
            return [payload]
        finally:
            request_id_var.reset(token)

    def _request(self, environ: Mapping[str, Any]) -> handlers.ScimRequest:
        path = _text(str(environ.get("PATH_INFO") or "/"), "(path)")
        route = [part for part in path[len(PREFIX) :].split("/") if part]
        if route:  # endpoint names in any case (/users as /Users): the RFC's are capitalised, some clients' are not
            route[0] = _ENDPOINTS.get(route[0].lower(), route[0])
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        headers = _headers(environ)
        query = _query(_text(str(environ.get("QUERY_STRING") or ""), "(query)"))
        rq = handlers.ScimRequest(method, route, query, headers, b"", _base_url(environ, headers))
        if not route or (route[0] not in _DISCOVERY + _REFUSED and route[0] != "Users"):
            handlers.refused(rq if route else handlers.ScimRequest(method, ["(root)"], {}, {}, b"", rq.base))
        allowed = _allowed(route)
        if method not in allowed:
            raise ScimError(
                405,
                f"{method} is not allowed on {_template(route)}; allowed: {', '.join(allowed)}",
                code="MethodNotAllowed",
                headers=[("Allow", ", ".join(allowed))],
            )
        rq.body = _read_body(environ, _int(self.env, ENV_HTTP_MAX_BODY, DEFAULT_MAX_BODY))
        return rq

    def _authenticate(self, rq: handlers.ScimRequest, settings: ScimSettings) -> None:
        if not settings.tokens:
            raise unavailable("no SCIM token is configured: set CVCSYNC_SECRET_SCIM_TOKENS (docs/scim.md)")
        authorization = rq.headers.get("authorization", "")
        if authorization[:7].lower() != "bearer ":
            raise ScimError(
                401,
                "send Authorization: Bearer <the secret token configured in the IdP>",
                code="MissingToken",
                headers=[("WWW-Authenticate", 'Bearer realm="cvcsync-scim"')],
            )
        candidate = authorization[7:].strip().encode("utf-8", "replace")
        found: int | None = None
        for index, known in enumerate(settings.tokens, start=1):
            if hmac.compare_digest(known.encode("utf-8"), candidate) and found is None:
                found = index
        if found is None:
            raise ScimError(
                401,
                "the bearer token is not valid",
                code="InvalidToken",
                headers=[("WWW-Authenticate", 'Bearer realm="cvcsync-scim", error="invalid_token"')],
            )
        rq.caller = f"scim-token#{found}"

    def _handle(self, rq: handlers.ScimRequest, invocation: Invocation) -> handlers.ScimResponse:
        head = rq.route[0]
        if head in _DISCOVERY:
            return handlers.discovery(rq)
        settings = ScimSettings.from_env(self.env, fc_context=invocation.fc_context)
        self._authenticate(rq, settings)
        if head != "Users":
            return handlers.refused(rq)
        if rq.method in ("POST", "PUT", "PATCH"):
            rq.json = self._json(rq)
        bucket = settings.bucket
        if bucket is None:
            raise unavailable("SCIM keeps its users in the state bucket: set CVCSYNC_STATE_BUCKET (docs/scim.md)")
        deps = Dependencies(self.env, self.state, invocation, settings.http_settings())
        store = services.object_store(invocation, self.env)
        prefix = deps.sync_settings.output_prefix
        ctx = WriteContext(
            deps=deps,
            settings=settings,
            store=ResourceStore(store, bucket, prefix),
            deletions=DeletionLimit(store, bucket, prefix, settings.max_deletes_per_hour),
            route=f"{rq.method} {_template(rq.route)}",
            caller=rq.caller,
            deadline=invocation.deadline if invocation.deadline is not None else self._monotonic() + LOCAL_DEADLINE,
        )
        return handlers.users(rq, ctx)

    def _json(self, rq: handlers.ScimRequest) -> Any:
        content_type = rq.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type and not (content_type.startswith("application/") and content_type.endswith("json")):
            raise ScimError(415, f"send the body as {SCIM_JSON} (or application/json), not {content_type}")
        if not rq.body.strip():
            raise ScimError(400, "a JSON body is required", scim_type=INVALID_SYNTAX)
        try:
            return orjson.loads(rq.body)
        except orjson.JSONDecodeError as exc:
            raise ScimError(400, f"the body is not valid JSON: {exc}", scim_type=INVALID_SYNTAX) from None

    def _log(
        self,
        environ: Mapping[str, Any],
        rq: handlers.ScimRequest | None,
        response: handlers.ScimResponse,
        started: float,
    ) -> None:
        fields: dict[str, Any] = {
            "method": environ.get("REQUEST_METHOD"),
            "route": _template(rq.route) if rq is not None and rq.route else PREFIX,
            "status": response.status,
            "latencyMs": round((self._monotonic() - started) * 1000, 1),
        }
        if rq is not None:
            fields["caller"] = rq.caller
        if response.body is not None and response.status >= 400:
            fields["errorCode"] = response.body.get("scimType") or response.status
        level = logging.WARNING if response.status >= 500 else logging.INFO
        log.log(level, "scim %s", response.status, extra=fields)
