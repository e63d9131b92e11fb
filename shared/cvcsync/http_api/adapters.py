"""Platform HTTP events to a WSGI environ and the WSGI answer back, so every platform runs the one ``HttpApi``.

- FC 2.0 HTTP trigger: already WSGI; FC puts its context in ``environ['fc.context']``.
- FC 3.0 HTTP trigger: a JSON event (``rawPath``, ``queryParameters``, ``requestContext.http``), answered with
  ``{"statusCode", "headers", "isBase64Encoded", "body"}``.
- API Gateway REST API (payload 1.0: ``httpMethod``, ``path``), answered with a proxy response.
- API Gateway HTTP API and Lambda function URLs (payload 2.0: ``rawPath``, ``rawQueryString``), likewise.

The path handed to the app is the route path a caller signs: a ``{proxy+}`` path parameter when there is one,
else the event's path without the stage. Bodies are decoded from base64 when the event says so.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode

import orjson

from cvcsync.errors import InvalidInputError
from cvcsync.http_api.app import ENVIRON_CONTEXT, JSON
from cvcsync.http_api.errors import ApiError
from cvcsync.platform.runtime import from_context

FC3, APIGW_V1, APIGW_V2 = "fc3", "apigw-v1", "apigw-v2"


class UnsupportedHttpEvent(InvalidInputError):
    """Not an HTTP event this function knows: it cannot even be answered in the caller's shape."""

    code = "UnsupportedHttpEvent"


@dataclass
class WsgiAnswer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def event_kind(event: Any) -> str:
    if isinstance(event, Mapping):
        context = event.get("requestContext")
        if "httpMethod" in event and "path" in event:
            return APIGW_V1
        if str(event.get("version")) == "2.0" and "rawPath" in event:
            return APIGW_V2
        if "rawPath" in event and isinstance(context, Mapping) and isinstance(context.get("http"), Mapping):
            return FC3
    keys = sorted(str(k) for k in event) if isinstance(event, Mapping) else type(event).__name__
    raise UnsupportedHttpEvent(f"not an HTTP event this function reads (keys: {keys})")


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    if not isinstance(raw, str):
        raise ApiError(400, "InvalidBody", "the event's body is not a string", field="(body)")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "InvalidBody", "the event's body is not valid base64", field="(body)") from None
    return raw.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes that are not UTF-8, as the app then says


def _header_pairs(single: Any, multi: Any = None) -> list[tuple[str, str]]:
    if isinstance(multi, Mapping) and multi:
        return [(str(n), ", ".join(str(v) for v in values)) for n, values in multi.items() if isinstance(values, list)]
    if not isinstance(single, Mapping):
        return []
    pairs = []
    for name, value in single.items():
        joined = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        pairs.append((str(name), joined))
    return pairs


def _query_from(values: Any) -> str:
    """A decoded parameter mapping (values: a string or a list of strings) as an RFC 3986 query string."""
    if not isinstance(values, Mapping):
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(name), "" if item is None else str(item)))
    return urlencode(pairs, quote_via=quote, safe="-_.~", errors="surrogatepass")


def _wsgi(text: str) -> str:
    """Text as PEP 3333 hands URL parts and headers over: a latin-1 string of the UTF-8 bytes. A lone surrogate
    (an event decoded by a lenient JSON reader can hold one) becomes bytes that are not UTF-8, which the app refuses
    naming the part, instead of an exception here."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def wsgi_environ(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    remote_addr: str = "",
    context: Any = None,
    script_name: str = "",
    url_scheme: str = "https",
) -> dict[str, Any]:
    """A WSGI environ for one request. ``path`` is decoded text; ``query_string`` raw."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": _wsgi(method.upper()),
        "SCRIPT_NAME": _wsgi(script_name),
        "PATH_INFO": _wsgi(path or "/"),
        "QUERY_STRING": _wsgi(query_string),
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "cvcsync",
        "SERVER_PORT": "443" if url_scheme == "https" else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        ENVIRON_CONTEXT: context,
    }
    for name, value in headers:
        key = _wsgi(name.strip().upper().replace("-", "_"))
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key == "CONTENT_TYPE":
                environ[key] = _wsgi(value)
            continue
        environ[f"HTTP_{key}"] = _wsgi(value)
    return environ


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _request_context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(event.get("requestContext"))


def _proxy_path(event: Mapping[str, Any]) -> str | None:
    """The ``{proxy+}`` parameter (decoded), which is the route path whatever the stage or base path mapping."""
    params = event.get("pathParameters")
    if isinstance(params, Mapping) and isinstance(params.get("proxy"), str):
        return "/" + str(params["proxy"]).lstrip("/")
    return None


def fc3_environ(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    http = _mapping(_request_context(event).get("http"))
    return wsgi_environ(
        method=str(http.get("method") or "GET"),
        path=unquote(str(event.get("rawPath") or http.get("path") or "/")),
        query_string=_query_from(event.get("queryParameters")),
        headers=_header_pairs(event.get("headers")),
        body=_body(event),
        remote_addr=str(http.get("sourceIp") or ""),
        context=context,
    )


def apigw_v1_environ(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    request_context = _request_context(event)
    identity = _mapping(request_context.get("identity"))
    query = event.get("multiValueQueryStringParameters") or event.get("queryStringParameters")
    stage = str(request_context.get("stage") or "")
    return wsgi_environ(
        method=str(event.get("httpMethod") or "GET"),
        path=_proxy_path(event) or str(event.get("path") or "/"),
        query_string=_query_from(query),
        headers=_header_pairs(event.get("headers"), event.get("multiValueHeaders")),
        body=_body(event),
        remote_addr=str(identity.get("sourceIp") or ""),
        context=context,
        script_name=f"/{stage}" if stage else "",
    )


def apigw_v2_environ(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    request_context = _request_context(event)
    http = _mapping(request_context.get("http"))
    stage = str(request_context.get("stage") or "$default")
    raw_path = unquote(str(event.get("rawPath") or "/"))
    script_name = ""
    if stage != "$default" and (raw_path == f"/{stage}" or raw_path.startswith(f"/{stage}/")):
        script_name, raw_path = f"/{stage}", raw_path[len(stage) + 1 :] or "/"
    headers = _header_pairs(event.get("headers"))
    cookies = event.get("cookies")
    if isinstance(cookies, list) and cookies:
        headers.append(("Cookie", "; ".join(str(c) for c in cookies)))
    return wsgi_environ(
        method=str(http.get("method") or "GET"),
        path=_proxy_path(event) or raw_path,
        query_string=str(event.get("rawQueryString") or ""),
        headers=headers,
        body=_body(event),
        remote_addr=str(http.get("sourceIp") or ""),
        context=context,
        script_name=script_name,
    )


def run_wsgi(app: Any, environ: dict[str, Any]) -> WsgiAnswer:
    answer = WsgiAnswer(500)

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.status = int(status.split(" ", 1)[0])
        answer.headers = list(headers)
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        answer.body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    return answer


def _text_body(body: bytes) -> tuple[str, bool]:
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def answer_for(kind: str, answer: WsgiAnswer) -> dict[str, Any]:
    """The platform's response object: the same four members for FC 3.0 and both API Gateway payloads."""
    body, encoded = _text_body(answer.body)
    headers: dict[str, str] = {}
    for name, value in answer.headers:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    result: dict[str, Any] = {"statusCode": answer.status, "headers": headers, "isBase64Encoded": encoded}
    if kind == APIGW_V1:
        result["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    result["body"] = body
    return result


ENVIRONS = {FC3: fc3_environ, APIGW_V1: apigw_v1_environ, APIGW_V2: apigw_v2_environ}


def _refused(error: ApiError, context: Any) -> WsgiAnswer:
    """The app's JSON error for a request the adapter could not even hand over (a body that is not base64)."""
    request_id = from_context(context).request_id
    body = orjson.dumps(error.body(request_id))
    headers = [("Content-Type", JSON), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    return WsgiAnswer(error.status, [*headers, ("X-Request-Id", request_id)], body)


def handle_event(app: Any, event: Any, context: Any) -> dict[str, Any]:
    """One HTTP event through the WSGI app; the answer in the event's own shape. An event that is no HTTP event
    raises ``UnsupportedHttpEvent`` (there is no shape to answer in); an HTTP event whose request cannot be read is
    answered 400, like any other bad request."""
    kind = event_kind(event)
    try:
        environ = ENVIRONS[kind](event, context)
    except ApiError as error:
        return answer_for(kind, _refused(error, context))
    return answer_for(kind, run_wsgi(app, environ))


def is_wsgi_call(first: Any, second: Any) -> bool:
    """FC 2.0 calls ``handler(environ, start_response)``; every event platform ``handler(event, context)``."""
    return isinstance(first, dict) and "REQUEST_METHOD" in first and callable(second)
