"""Every platform's HTTP event (samples in events/http/) into the one WSGI app and back, without a network.

The app here echoes what it received, behind the real authentication: a request only gets through if the adapter
handed over exactly the path, query and body the caller signed (the route path, without stage or base path).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
import pytest

from cvcsync.http_api.adapters import (
    APIGW_V1,
    APIGW_V2,
    FC3,
    UnsupportedHttpEvent,
    event_kind,
    handle_event,
    is_wsgi_call,
)
from cvcsync.http_api.app import HttpApi, Operation, Request, Response, Route
from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers.http import handle
from support.events import load_event, sample_paths
from support.http_api import AUTH_ENV, TOKEN, signed_headers


def _echo(request: Request, deps: Any) -> Response:
    return Response(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body": request.body.decode(),
            "caller": request.caller.id if request.caller else None,
            "platform": request.invocation.platform,
            "requestId": request.invocation.request_id,
        },
        [("X-Echo", "1")],
    )


ECHO = Operation(_echo, takes_json=True)
ROUTES = [
    Route(template, {m: ECHO for m in ("GET", "PUT", "POST", "DELETE")})
    for template in ("/users", "/users:delete", "/users/{id}")
]


@pytest.fixture
def api() -> HttpApi:
    return HttpApi(AUTH_ENV, routes=ROUTES)


def _sign_event_headers(event: dict[str, Any], method: str, path: str, query: str, body: bytes) -> None:
    headers = signed_headers(method, path, query, body)
    if "multiValueHeaders" in event:
        event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
    event["headers"].update(headers)


def _echoed(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["statusCode"] == 200, answer["body"]
    assert answer["isBase64Encoded"] is False and answer["headers"]["Content-Type"] == "application/json"
    return dict(orjson.loads(answer["body"]))


def test_fc3_http_event(api: HttpApi) -> None:
    event = load_event("http/fc3-put-user.json")
    body = event["body"].encode()
    _sign_event_headers(event, "PUT", "/users/u-1003", "source=hr-portal", body)
    assert event_kind(event) == FC3
    context = local_fc_context("http-api")
    answer = handle(orjson.dumps(event), context, api=api)  # FC 3.0 hands the event over as bytes
    echoed = _echoed(answer)
    assert echoed["path"] == "/users/u-1003" and echoed["query"] == {"source": "hr-portal"}
    assert orjson.loads(echoed["body"])["userName"] == "王五"
    assert echoed["caller"] == "tests" and echoed["platform"] == "fc" and echoed["requestId"] == context.request_id
    assert set(answer) == {"statusCode", "headers", "isBase64Encoded", "body"} and answer["headers"]["X-Echo"] == "1"


def test_api_gateway_rest_proxy_event_uses_the_proxy_path(api: HttpApi) -> None:
    event = load_event("http/apigw-v1-rest-proxy.json")
    _sign_event_headers(event, "PUT", "/users/u-1004", "", event["body"].encode())
    assert event_kind(event) == APIGW_V1
    answer = handle(event, LocalLambdaContext("http-api"), api=api)
    echoed = _echoed(answer)
    assert echoed["path"] == "/users/u-1004" and echoed["platform"] == "lambda"
    assert answer["multiValueHeaders"]["X-Echo"] == ["1"]


def test_api_gateway_rest_query_parameters_are_signed_as_sent(api: HttpApi) -> None:
    event = load_event("http/apigw-v1-rest-proxy.json")
    event["multiValueQueryStringParameters"] = {"tag": ["b", "a c"], "x": ["张"]}
    _sign_event_headers(event, "PUT", "/users/u-1004", "x=%E5%BC%A0&tag=a+c&tag=b", event["body"].encode())
    echoed = _echoed(handle_event(api, event, None))
    assert echoed["query"] == {"tag": "a c", "x": "张"}  # the last value of a repeated name wins


def test_http_api_v2_event_strips_the_stage(api: HttpApi) -> None:
    event = load_event("http/apigw-v2-http-api.json")
    _sign_event_headers(event, "GET", "/users/u-1001", event["rawQueryString"], b"")
    assert event_kind(event) == APIGW_V2
    echoed = _echoed(handle(event, LocalLambdaContext("http-api"), api=api))
    assert echoed["path"] == "/users/u-1001" and echoed["query"] == {"view": "full", "source": "hr-portal"}


def test_lambda_function_url_event_with_a_base64_body(api: HttpApi) -> None:
    event = load_event("http/lambda-function-url.json")
    body = base64.b64decode(event["body"])
    _sign_event_headers(event, "POST", "/users:delete", "", body)
    echoed = _echoed(handle(event, LocalLambdaContext("http-api"), api=api))
    assert echoed["path"] == "/users:delete" and orjson.loads(echoed["body"]) == {"userIds": ["u-1001", "u-1002"]}


def fc2_environ(sample: dict[str, Any], context: Any) -> dict[str, Any]:
    """The FC 2.0 sample made a real environ: a stream for wsgi.input, a context object for fc.context."""
    body = sample["wsgi.input"].encode()
    environ = {k: v for k, v in sample.items() if not k.startswith(("wsgi.", "fc."))}
    environ.update(
        {
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "https",
            "fc.context": context,
            "fc.request_uri": sample["fc.request_uri"],
        }
    )
    return environ


def test_fc2_wsgi_call(api: HttpApi) -> None:
    sample = load_event("http/fc2-wsgi-environ.json")
    context = local_fc_context("http-api")
    environ = fc2_environ(sample, context)
    for name, value in signed_headers("POST", "/users", "source=hr-portal", sample["wsgi.input"].encode()).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    assert is_wsgi_call(environ, start_response)
    body = b"".join(handle(environ, start_response, api=api))
    assert statuses == ["200 OK"]
    echoed = orjson.loads(body)
    assert echoed["path"] == "/users" and echoed["platform"] == "fc" and echoed["requestId"] == context.request_id
    assert len(orjson.loads(echoed["body"])["users"]) == 2


def test_a_route_path_with_non_ascii_and_spaces(api: HttpApi) -> None:
    event = load_event("http/apigw-v2-http-api.json")
    event["rawPath"] = "/prod/users/%E5%BC%A0%20%E4%B8%89"
    _sign_event_headers(event, "GET", "/users/张 三", event["rawQueryString"], b"")
    assert _echoed(handle_event(api, event, None))["path"] == "/users/张 三"


def test_a_bearer_token_through_an_event(api: HttpApi) -> None:
    event = load_event("http/fc3-put-user.json")
    event["headers"]["Authorization"] = f"Bearer {TOKEN}"
    assert _echoed(handle_event(api, event, None))["caller"] == "token#1"


def test_errors_keep_the_platform_shape(api: HttpApi) -> None:
    event = load_event("http/apigw-v2-http-api.json")  # unsigned
    answer = handle_event(api, event, None)
    assert answer["statusCode"] == 401 and orjson.loads(answer["body"])["error"]["code"] == "MissingAuthentication"
    assert answer["headers"]["WWW-Authenticate"].startswith("CVCSYNC-HMAC-SHA256")


@pytest.mark.parametrize("event", [{"hello": "world"}, [1, 2], "text", {"rawPath": "/x"}])
def test_an_unknown_event_is_refused_naming_its_keys(api: HttpApi, event: Any) -> None:
    with pytest.raises(UnsupportedHttpEvent) as caught:
        handle_event(api, event, None)
    assert "world" not in caught.value.message


def test_a_bad_base64_body_is_refused_in_the_platforms_shape(api: HttpApi) -> None:
    event = load_event("http/lambda-function-url.json")
    event["body"] = "%%% not base64"
    answer = handle_event(api, event, LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 400 and answer["headers"]["Content-Type"] == "application/json"
    error = orjson.loads(answer["body"])["error"]
    assert (error["code"], error["field"]) == ("InvalidBody", "(body)")
    assert error["requestId"] == answer["headers"]["X-Request-Id"]


def test_every_http_sample_is_used_here() -> None:
    assert sample_paths("http") == [
        "http/apigw-v1-rest-proxy.json",
        "http/apigw-v2-http-api.json",
        "http/fc2-wsgi-environ.json",
        "http/fc3-put-user.json",
        "http/lambda-function-url.json",
    ]
