"""functions/http_api/index.py:handler, as each platform calls it, with the samples of events/http/, against the
emulator: one handler tells FC 2.0's WSGI call from the event calls, and every shape reaches CVC the same way."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from cvcsync import services
from cvcsync.local import load_handler
from cvcsync.runtime import LocalLambdaContext, local_fc_context
from support.events import load_event
from support.http_api import AUTH_ENV, signed_headers


@pytest.fixture
def handler(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any, Any], Any]]:
    """The deployed handler, reading its settings from os.environ as it would on FC or Lambda."""
    services.clear_cache()
    for name, value in {
        **AUTH_ENV,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    yield load_handler("http_api")
    services.clear_cache()


def sign_into(event: dict[str, Any], method: str, path: str, query: str, body: bytes) -> dict[str, Any]:
    headers = signed_headers(method, path, query, body)
    event["headers"].update(headers)
    if "multiValueHeaders" in event:
        event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
    return event


def fc2_call(handler: Callable[[Any, Any], Any]) -> tuple[str, Any]:
    sample = load_event("http/fc2-wsgi-environ.json")
    body = sample["wsgi.input"].encode()
    environ: dict[str, Any] = {k: v for k, v in sample.items() if not k.startswith(("wsgi.", "fc."))}
    environ.update(
        {
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "fc.context": local_fc_context("http-api"),
            "fc.request_uri": sample["fc.request_uri"],
        }
    )
    for name, value in signed_headers("POST", "/users", "source=hr-portal", body).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        return lambda data: None

    answer = orjson.loads(b"".join(handler(environ, start_response)))
    return status[0], answer


def test_every_platform_shape_through_the_one_handler(handler: Callable[[Any, Any], Any], emulator: Any) -> None:
    status, created = fc2_call(handler)
    assert status == "200 OK" and created["summary"]["upserted"] == 2

    fc3 = load_event("http/fc3-put-user.json")
    sign_into(fc3, "PUT", "/users/u-1003", "source=hr-portal", fc3["body"].encode())
    answer = handler(orjson.dumps(fc3), local_fc_context("http-api"))
    assert answer["statusCode"] == 200 and orjson.loads(answer["body"])["user"]["departName"] == "市场部"

    rest = load_event("http/apigw-v1-rest-proxy.json")
    sign_into(rest, "PUT", "/users/u-1004", "", rest["body"].encode())
    answer = handler(rest, LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 200 and set(answer) >= {"multiValueHeaders", "isBase64Encoded"}

    http_api = load_event("http/apigw-v2-http-api.json")
    sign_into(http_api, "GET", "/users/u-1001", http_api["rawQueryString"], b"")
    answer = handler(http_api, LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 200 and orjson.loads(answer["body"])["user"]["userMobile"] == "13800001001"
    assert sorted(u["userId"] for u in emulator.users()) == ["u-1001", "u-1002", "u-1003", "u-1004"]

    url = load_event("http/lambda-function-url.json")
    sign_into(url, "POST", "/users:delete", "", base64.b64decode(url["body"]))
    answer = handler(url, LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 200 and orjson.loads(answer["body"])["summary"]["deleted"] == 2
    assert sorted(u["userId"] for u in emulator.users()) == ["u-1003", "u-1004"]


def test_an_unsigned_event_gets_401_in_its_own_shape(handler: Callable[[Any, Any], Any]) -> None:
    answer = handler(load_event("http/apigw-v1-rest-proxy.json"), LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 401 and "Traceback" not in answer["body"]
