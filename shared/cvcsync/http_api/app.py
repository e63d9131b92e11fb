"""The HTTP API as one WSGI application: every platform's adapter and ``cvcsync serve`` call this, and only this.

A request goes through the same steps whatever carried it: route (404, 405 with ``Allow``), body (at most the
limit: 413), authentication (401), content type (415), the operation (``handlers.py``), and one JSON answer.
Every failure is an ``ApiError`` rendered as ``{"error": {"code", "message", "field"?, "requestId"}}``; anything
unexpected is logged with its traceback and answered 500 with a generic message and the request id, never a trace.
Paths under ``/scim/v2`` are SCIM's (``http_api.scim``, docs/scim.md): handed over whole, imported on first use.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson

from cvcsync.adapters.signature import parse_form
from cvcsync.errors import ConfigurationError
from cvcsync.http_api.auth import Authenticator, Caller
from cvcsync.http_api.circuit import ContainerCircuit
from cvcsync.http_api.errors import ApiError
from cvcsync.http_api.settings import HttpSettings
from cvcsync.logs import request_id_var
from cvcsync.platform.runtime import Invocation, from_context

log = logging.getLogger(__name__)

# where the adapters put the platform's context (FC 2.0 puts it in fc.context)
ENVIRON_CONTEXT = "cvcsync.context"
FC_CONTEXT = "fc.context"
JSON = "application/json"
SCIM_PREFIX = "/scim/v2"  # every path under it is SCIM's (cvcsync.http_api.scim), in SCIM's own shapes
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)
_STATUS_TEXT = {
    200: "OK",
    207: "Multi-Status",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]


@dataclass
class Request:
    method: str
    path: str  # decoded, without stage or base path: what routes match and what a caller signs
    query_string: str  # raw, as sent (UTF-8 characters as themselves)
    query: dict[str, str]  # decoded; the last value of a repeated name wins
    headers: dict[str, str]  # names lower case
    body: bytes
    invocation: Invocation
    settings: HttpSettings = field(default_factory=HttpSettings, repr=False)
    params: dict[str, str] = field(default_factory=dict)
    caller: Caller | None = None

    def json(self) -> Any:
        if not self.body.strip():
            raise ApiError(400, "InvalidJson", "a JSON body is required", field="(body)")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "InvalidJson", f"the body is not valid JSON: {exc}", field="(body)") from None


@dataclass
class Response:
    status: int
    body: Any  # JSON-serialisable, or bytes sent as they are
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class State:
    """What outlives a request in a warm container: replay memory, the circuit, cached health checks."""

    authenticator: Authenticator
    circuit: ContainerCircuit
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    run: Callable[[Request, Any], Response]
    takes_json: bool = False


@dataclass(frozen=True)
class Route:
    template: str
    operations: Mapping[str, Operation]
    public: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        return _pattern(self.template)

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.operations))


@cache
def _pattern(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(regex)


@cache
def openapi_document() -> bytes:
    """The OpenAPI document shipped beside this module (package data)."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def _text(wsgi_string: str, field: str) -> str:
    """PEP 3333 hands URL parts as latin-1 strings of the raw bytes: back to the UTF-8 text they are."""
    try:
        return wsgi_string.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise ApiError(400, "InvalidRequest", "the URL is not valid UTF-8", field=field) from None


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_") and isinstance(value, str)
    }
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = str(environ[name])
    return headers


def _query(query_string: str) -> dict[str, str]:
    try:
        return dict(parse_form(query_string.encode("utf-8")))
    except UnicodeDecodeError:
        raise ApiError(400, "InvalidRequest", "the query string is not valid UTF-8", field="(query)") from None


def _read_body(environ: Mapping[str, Any], limit: int) -> bytes:
    """At most ``limit`` bytes; 413 without reading when the declared length is over it, else after limit+1."""
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    stream = environ.get("wsgi.input")
    if declared:
        if not declared.isdigit():
            raise ApiError(400, "InvalidRequest", "Content-Length is not a number", field="Content-Length")
        length = int(declared)
        if length > limit:
            raise _too_large(limit)
        body = stream.read(length) if stream is not None and length else b""
    elif stream is not None and environ.get("wsgi.input_terminated"):
        body = stream.read(limit + 1)
    else:
        body = b""
    if len(body) > limit:
        raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "BodyTooLarge", f"the body is larger than {limit} bytes", field="(body)")


class HttpApi:
    """The WSGI application. One per warm container: it keeps the replay memory and the circuit between requests.

    ``env`` is read on every request (settings are cheap to parse), so a test can change it between calls.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        routes: Iterable[Route] | None = None,
    ) -> None:
        from cvcsync.http_api.handlers import ROUTES

        self.env = os.environ if env is None else env
        self._monotonic = monotonic
        self.state = State(Authenticator(clock=clock), ContainerCircuit(clock=monotonic))
        self.routes = tuple(ROUTES if routes is None else routes)
        self._scim: Any = None  # cvcsync.http_api.scim.app.ScimApp, made by the first request under SCIM_PREFIX

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        if path == SCIM_PREFIX or path.startswith(SCIM_PREFIX + "/"):
            answer: Iterable[bytes] = self._scim_app()(environ, start_response)
            return answer
        started = self._monotonic()
        invocation = from_context(environ.get(ENVIRON_CONTEXT) or environ.get(FC_CONTEXT), started=started)
        token = request_id_var.set(invocation.request_id)
        try:
            request: Request | None = None
            route: Route | None = None
            try:
                route, request = self._prepare(environ, invocation)
                response = self._run(route, request)
            except ApiError as error:
                response = Response(error.status, error.body(invocation.request_id), error.headers)
            except ConfigurationError as exc:
                log.error("http api misconfigured", extra={"code": exc.code, "detail": exc.message})
                failure = ApiError(500, "ConfigurationError", "the function is misconfigured; its log says how")
                response = Response(500, failure.body(invocation.request_id))
            except Exception:
                log.exception("http request failed unexpectedly", extra={"code": "InternalError"})
                failure = ApiError(500, "InternalError", "internal error; quote the request id when reporting it")
                response = Response(500, failure.body(invocation.request_id))
            payload = response.body if isinstance(response.body, bytes) else orjson.dumps(response.body)
            headers = [
                ("Content-Type", JSON),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
                ("X-Request-Id", invocation.request_id),
                *response.headers,
            ]
            self._log(environ, route, request, response, started)
            start_response(f"{response.status} {_STATUS_TEXT.get(response.status, 'Unknown')}", headers)
            return [payload]
        finally:
            request_id_var.reset(token)

    def _scim_app(self) -> Any:
        """SCIM 2.0 for identity providers (docs/scim.md), imported on its first request: other routes never pay."""
        if self._scim is None:
            from cvcsync.http_api.scim.app import ScimApp

            self._scim = ScimApp(self.env, self.state, monotonic=self._monotonic)
        return self._scim

    def _prepare(self, environ: Mapping[str, Any], invocation: Invocation) -> tuple[Route, Request]:
        method = str(environ.get("REQUEST_METHOD") or "GET").upper()
        path = _text(str(environ.get("PATH_INFO") or "/"), "(path)") or "/"
        route, params = self._match(path)
        operation = route.operations.get(method)
        if operation is None:
            raise ApiError(
                405,
                "MethodNotAllowed",
                f"{method} is not allowed on {route.template}; allowed: {route.allow}",
                field="(method)",
                headers=[("Allow", route.allow)],
            )
        settings = HttpSettings.from_env(self.env, fc_context=invocation.fc_context)  # kms: read with the role
        body = _read_body(environ, settings.max_body)
        query_string = _text(str(environ.get("QUERY_STRING") or ""), "(query)")
        request = Request(
            method=method,
            path=path,
            query_string=query_string,
            query=_query(query_string),
            headers=_headers(environ),
            body=body,
            invocation=invocation,
            settings=settings,
            params=params,
        )
        if not route.public:
            request.caller = self.state.authenticator.authenticate(
                settings,
                method=method,
                path=path,
                query_string=query_string,
                headers=request.headers,
                body=body,
            )
        if operation.takes_json and body.strip():
            content_type = request.headers.get("content-type", "").split(";", 1)[0].strip()
            if not _JSON_TYPE.fullmatch(content_type):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"send the body as application/json, not {content_type or 'without a Content-Type'}",
                    field="Content-Type",
                )
        return route, request

    def _match(self, path: str) -> tuple[Route, dict[str, str]]:
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found:
                return route, found.groupdict()
        raise ApiError(404, "NotFound", f"no route {path}; GET /openapi.json lists them", field="(path)")

    def _run(self, route: Route, request: Request) -> Response:
        from cvcsync.http_api.handlers import Dependencies

        operation = route.operations[request.method]
        return operation.run(request, Dependencies(self.env, self.state, request.invocation, request.settings))

    def _log(
        self,
        environ: Mapping[str, Any],
        route: Route | None,
        request: Request | None,
        response: Response,
        started: float,
    ) -> None:
        error = response.body.get("error") if isinstance(response.body, dict) else None
        fields: dict[str, Any] = {
            "method": environ.get("REQUEST_METHOD"),
            "route": route.template if route else None,
            "status": response.status,
            "latencyMs": round((self._monotonic() - started) * 1000, 1),
        }
        if request is not None and request.caller is not None:
            fields["caller"] = request.caller.id
        if isinstance(error, dict):
            fields["errorCode"] = error.get("code")
        level = logging.WARNING if response.status >= 500 else logging.INFO
        log.log(level, "http %s", response.status, extra=fields)
