"""The WSGI routing core without a network: routes, limits, content types, errors, the circuit, logs."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import orjson
import pytest
from openapi_spec_validator import validate

from cvcsync.errors import ConfigurationError, CvcError
from cvcsync.http_api.adapters import run_wsgi, wsgi_environ
from cvcsync.http_api.app import HttpApi, Operation, Request, Response, Route
from cvcsync.http_api.circuit import ContainerCircuit
from cvcsync.http_api.handlers import ROUTES
from cvcsync.logs import JsonFormatter
from support.http_api import AUTH_ENV, SECRET, TOKEN, call, signed_headers

CVC_ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-a-real-secret"}
ENV = {**AUTH_ENV, **CVC_ENV, "CVC_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: no test may call out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> HttpApi:
    return HttpApi(ENV)


def test_unknown_route_is_404_with_the_json_error_shape(api: HttpApi) -> None:
    answer = call(api, "GET", "/nowhere")
    assert answer.status == 404 and answer.headers["Content-Type"] == "application/json"
    error = answer.error
    assert error["code"] == "NotFound" and error["requestId"] == answer.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("PATCH", "/users/u-1", "DELETE, GET, PUT"), ("GET", "/users", "POST"), ("DELETE", "/sync", "POST")],
)
def test_a_wrong_method_is_405_with_allow(api: HttpApi, method: str, path: str, allow: str) -> None:
    answer = call(api, method, path)
    assert answer.status == 405 and answer.headers["Allow"] == allow and answer.error["code"] == "MethodNotAllowed"


def test_a_declared_body_over_the_limit_is_413_without_reading_it() -> None:
    api = HttpApi({**ENV, "CVCSYNC_HTTP_MAX_BODY": "1024"})
    stream = io.BytesIO(b"x" * 5000)
    environ = wsgi_environ(method="POST", path="/users", query_string="", headers=[], body=b"")
    environ.update({"CONTENT_LENGTH": "5000", "wsgi.input": stream})
    answer = run_wsgi(api, environ)
    assert answer.status == 413 and orjson.loads(answer.body)["error"]["code"] == "BodyTooLarge"
    assert stream.tell() == 0


def test_an_undeclared_body_is_read_to_limit_plus_one_only() -> None:
    api = HttpApi({**ENV, "CVCSYNC_HTTP_MAX_BODY": "1024"})
    stream = io.BytesIO(b"x" * 5000)
    environ = wsgi_environ(method="POST", path="/users", query_string="", headers=[], body=b"")
    environ.update({"CONTENT_LENGTH": "", "wsgi.input": stream})
    answer = run_wsgi(api, environ)
    assert answer.status == 413 and stream.tell() == 1025


def test_a_body_at_the_limit_is_read(api: HttpApi) -> None:
    small = HttpApi({**ENV, "CVCSYNC_HTTP_MAX_BODY": "1024"})
    body = b'{"users": [' + b" " * (1024 - 14) + b"1]}"
    assert len(body) == 1024
    answer = call(small, "POST", "/users", body=body)
    assert answer.status == 207 and answer.json()["results"][0]["status"] == "rejected"


def test_authentication_is_checked_before_the_body_is_parsed(api: HttpApi) -> None:
    answer = call(api, "POST", "/users", body=b"{not json", signed=False)
    assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("CVCSYNC-HMAC-SHA256")


def test_a_body_that_is_not_json_is_415(api: HttpApi) -> None:
    answer = call(api, "PUT", "/users/u-1", body=b"userName=x", content_type="application/x-www-form-urlencoded")
    assert answer.status == 415 and answer.error["field"] == "Content-Type"
    missing = call(api, "PUT", "/users/u-1", body=b'{"userName": "x"}', content_type=None)
    assert missing.status == 415
    vendor = call(api, "PUT", "/users/u-1", body=b"[]", content_type="application/vnd.cvcsync+json; charset=utf-8")
    assert vendor.status == 400  # a +json type is JSON: the body is then judged (a list is not a user)


@pytest.mark.parametrize("body", [b"{", b"", b"[1,]", b"\xff", b"NaN"])
def test_invalid_json_is_400(api: HttpApi, body: bytes) -> None:
    answer = call(api, "POST", "/users", body=body)
    assert answer.status == 400 and answer.error["code"] == "InvalidJson" and answer.error["field"] == "(body)"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userName": "x", "groupId": "1", "groupName": "g", "userEmail": "not-mail"}, "userEmail"),
        ({"groupId": "1", "groupName": "g"}, "userName"),
        ({"userId": "other", "userName": "x", "groupId": "1", "groupName": "g"}, "userId"),
        ({"userName": "x" * 200, "groupId": "1", "groupName": "g"}, "userName"),
        (["a list"], "(body)"),
    ],
)
def test_an_invalid_user_is_400_naming_the_field(api: HttpApi, body: Any, field: str) -> None:
    answer = call(api, "PUT", "/users/u-1", body=body)
    assert answer.status == 400 and answer.error["field"] == field


def test_invalid_path_ids_are_400(api: HttpApi) -> None:
    assert call(api, "GET", "/users/" + "x" * 65).error["field"] == "id"
    assert call(api, "DELETE", "/users/ padded ").status == 400
    assert call(api, "GET", "/runs/..").error["code"] == "InvalidRunId"


def test_batches_over_the_limit_are_413_and_empty_ones_400() -> None:
    api = HttpApi({**ENV, "CVCSYNC_HTTP_MAX_BATCH": "3"})
    over = call(api, "POST", "/users:delete", body={"userIds": ["a", "b", "c", "d"]})
    assert over.status == 413 and over.error == {**over.error, "code": "TooManyRecords", "field": "userIds"}
    assert call(api, "POST", "/users", body={"users": []}).status == 400
    assert call(api, "POST", "/users", body={"people": []}).error["field"] == "users"


def test_a_batch_with_only_invalid_records_names_each_without_calling_cvc(api: HttpApi) -> None:
    answer = call(
        api, "POST", "/users", body=[{"userId": "a"}, "text", {"userName": "b", "groupId": 1, "groupName": []}]
    )
    assert answer.status == 207
    results = answer.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2] and {r["status"] for r in results} == {"rejected"}
    assert results[1]["errors"] == [{"field": "(record)", "reason": "must be an object, got str"}]
    assert {"field": "groupName", "reason": "must be text, got list"} in results[2]["errors"]
    assert answer.json()["summary"] == {"received": 3, "rejected": 3, "failed": 0}


def test_sync_request_validation(api: HttpApi) -> None:
    sync_env = HttpApi({**ENV, "CVCSYNC_HTTP_SYNC_BUCKET": "uploads"})
    cases = [
        ({"key": "uploads/full/../../etc"}, 400, "key"),
        ({"key": "uploads/full/a..b.csv"}, 400, "key"),
        ({"key": "/uploads/full/x.csv"}, 400, "key"),
        ({"key": "elsewhere/x.csv"}, 403, "key"),
        ({"key": "cvc-sync/state/manifest.json"}, 403, "key"),
        ({"key": "uploads/full/x.csv", "bucket": "someone-elses"}, 403, "bucket"),
        ({"key": "uploads/full/x.csv", "dryRun": "yes"}, 400, "dryRun"),
        ({"key": 5}, 400, "key"),
    ]
    for body, status, field in cases:
        answer = call(sync_env, "POST", "/sync", body=body)
        assert (answer.status, answer.error["field"]) == (status, field), body
    unconfigured = call(api, "POST", "/sync", body={"key": "uploads/full/x.csv"})
    assert unconfigured.status == 503 and unconfigured.error["code"] == "NotConfigured"


def test_health_needs_no_auth_and_calls_nothing(api: HttpApi) -> None:
    answer = call(api, "GET", "/healthz", signed=False)
    assert answer.status == 200
    assert answer.json() == {
        "status": "ok",
        "cvc": {"credentials": True},
        "objectStore": {"configured": False},
        "auth": {"hmac": True, "bearer": True},
        "circuit": {"open": False},
    }
    assert call(api, "GET", "/healthz", query="deep=maybe", signed=False).error["field"] == "deep"


def test_health_is_503_when_nothing_is_configured() -> None:
    answer = call(HttpApi({}), "GET", "/healthz", signed=False)
    assert answer.status == 503 and answer.json()["status"] == "unconfigured"


def test_the_openapi_document_is_served_valid_and_lists_every_route(api: HttpApi) -> None:
    answer = call(api, "GET", "/openapi.json", signed=False)
    document = answer.json()
    validate(document)
    served = {path: set(ops) - {"parameters"} for path, ops in document["paths"].items()}
    routed = {route.template: {m.lower() for m in route.operations} for route in ROUTES}
    assert served == routed


def test_bearer_token_authenticates(api: HttpApi) -> None:
    answer = call(api, "GET", "/users/x" + "y" * 70, signed=False, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 400  # past authentication, refused on the id
    wrong = call(api, "GET", "/users/x", signed=False, headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert wrong.status == 401 and wrong.error["code"] == "InvalidToken"


def test_an_open_circuit_answers_429_with_retry_after_until_the_cooldown_ends() -> None:
    clock = Clock()
    api = HttpApi({**ENV, "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "30"}, monotonic=clock)
    api.state.circuit.record(CvcError("key disabled", action="GetUser", code="InvalidAccessKeyId.Inactive"))
    for method, path, body in (
        ("GET", "/users/u-1", b""),
        ("DELETE", "/users/u-1", b""),
        ("PUT", "/users/u-1", {"userName": "x", "groupId": "1", "groupName": "g"}),
        ("POST", "/users", [{"userId": "u-1", "userName": "x", "groupId": "1", "groupName": "g"}]),
        ("POST", "/users:delete", ["u-1"]),
    ):
        answer = call(api, method, path, body=body)
        assert answer.status == 429 and answer.headers["Retry-After"] == "30", (method, path)
        assert answer.error["code"] == "CircuitOpen" and "InvalidAccessKeyId.Inactive" in answer.error["message"]
    assert call(api, "GET", "/healthz", signed=False).json()["status"] == "degraded"
    clock.now += 20
    assert call(api, "GET", "/users/u-1").headers["Retry-After"] == "10"
    clock.now += 10
    assert api.state.circuit.retry_after(30) is None  # cooled down: the next call is a probe


def test_the_container_circuit_probe_reopens_at_once_or_closes() -> None:
    clock = Clock()
    circuit = ContainerCircuit(threshold=2, clock=clock)
    retryable = CvcError("down", action="CreateUser", code="ServiceUnavailable", retryable=True)
    circuit.record(retryable)
    assert circuit.retry_after(10) is None
    circuit.record(retryable)
    assert circuit.retry_after(10) == 10
    clock.now += 10
    assert circuit.retry_after(10) is None
    circuit.record(retryable)  # the probe failed: open again at once
    assert circuit.retry_after(10) == 10
    clock.now += 10
    assert circuit.retry_after(10) is None
    circuit.record(None)  # the probe passed: closed, and the full threshold applies again
    circuit.record(retryable)
    assert circuit.retry_after(10) is None


def _boom(request: Request, deps: Any) -> Response:
    raise RuntimeError("database password is hunter2")


def _misconfigured(request: Request, deps: Any) -> Response:
    raise ConfigurationError("CVCSYNC_SOMETHING must be a number, got 'x'")


def test_an_unexpected_error_is_500_without_a_trace_and_logged_with_one(caplog: pytest.LogCaptureFixture) -> None:
    routes = [Route("/boom", {"GET": Operation(_boom)}), Route("/conf", {"GET": Operation(_misconfigured)})]
    api = HttpApi(ENV, routes=routes)
    caplog.set_level(logging.INFO)
    answer = call(api, "GET", "/boom")
    assert answer.status == 500 and answer.error["code"] == "InternalError"
    assert b"hunter2" not in answer.body and b"Traceback" not in answer.body
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None and "hunter2" in JsonFormatter().format(failure)
    conf = call(api, "GET", "/conf")
    assert conf.status == 500 and conf.error["code"] == "ConfigurationError" and b"CVCSYNC_SOMETHING" not in conf.body


def test_secrets_and_signatures_never_reach_the_logs(api: HttpApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"userName": "x"}'
    headers = signed_headers("PUT", "/users/u-1", "", body)
    answer = call(api, "PUT", "/users/u-1", body=body, signed=False, headers=headers)
    assert answer.status == 400
    call(api, "GET", "/users/u-1", signed=False, headers={"Authorization": f"Bearer {TOKEN}x"})
    lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert '"caller":"tests"' in lines.replace(" ", "")
    for secret in (SECRET, TOKEN, headers["X-Cvcsync-Signature"], CVC_ENV["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]):
        assert secret not in lines
    assert json.loads(lines.splitlines()[0])["route"] == "/users/{id}"
