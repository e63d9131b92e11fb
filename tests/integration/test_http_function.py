"""functions/http_api/index.py:handler, as each platform calls it, with the samples of events/http/, against the
emulator: one handler tells FC 2.0's WSGI call from the event calls, and every shape reaches CVC the same way."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from cvcsync.platform import services
from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync_dev.local import load_handler
from support.events import load_event
from support.http_api import AUTH_ENV, signed_headers
from support.moto import drain


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


def test_a_sync_that_fans_out_is_finished_by_continuations_to_the_same_handler(
    emulator: Any, moto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /sync through the deployed handler fans out (202); each chunk event, delivered to that same handler as
    the platform's asynchronous invocation would (here through an SQS queue, to hold them), finishes the run."""
    services.clear_cache()
    moto.s3_client().create_bucket(Bucket="hr-uploads")
    rows = "".join(f"e{i:03d},员工{i},88,示例科技\n" for i in range(30))
    export = ("userId,userName,groupId,groupName\n" + rows).encode()
    moto.s3_client().put_object(Bucket="hr-uploads", Key="uploads/full/hr.csv", Body=export)
    queue_url = moto.sqs_client().create_queue(QueueName="cvc-sync-continuations")["QueueUrl"]
    for name, value in {
        **AUTH_ENV,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_SQS_ENDPOINT": moto.url,
        "CVCSYNC_HTTP_SYNC_BUCKET": "hr-uploads",
        "CVCSYNC_FANOUT": "sqs",
        "CVCSYNC_FANOUT_QUEUE_URL": queue_url,
        "CVCSYNC_FANOUT_THRESHOLD": "10",
        "CVCSYNC_FANOUT_CHUNK": "12",
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    handler = load_handler("http_api")
    request = load_event("http/lambda-function-url.json")
    body = orjson.dumps({"key": "uploads/full/hr.csv"})
    request.update(rawPath="/sync", body=body.decode(), isBase64Encoded=False)
    request["requestContext"]["http"]["path"] = "/sync"
    sign_into(request, "POST", "/sync", "", body)
    answer = handler(request, LocalLambdaContext("http-api"))
    assert answer["statusCode"] == 202, answer["body"]
    started = orjson.loads(answer["body"])
    assert started["report"]["status"] == "fanned-out" and emulator.users() == []
    events = drain(moto.sqs_client(), queue_url)
    assert sorted(event["cvcsync"]["chunk"] for event in events) == [0, 1, 2]
    for event in events:
        handler(event, LocalLambdaContext("http-api"))
    poll = {**load_event("http/apigw-v2-http-api.json"), "rawPath": started["poll"], "rawQueryString": ""}
    poll.pop("pathParameters")
    poll["requestContext"] = {**poll["requestContext"], "stage": "$default"}
    sign_into(poll, "GET", started["poll"], "", b"")
    report = orjson.loads(handler(poll, LocalLambdaContext("http-api"))["body"])["report"]
    assert report["status"] == "applied" and report["outcomes"]["created"] == 30
    assert len(emulator.users()) == 30
    services.clear_cache()
