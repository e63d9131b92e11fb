"""Dispatchers: what a continuation or a chunk looks like on the wire to FC and to Lambda."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from alibabacloud_openapi_util.client import Client as OfficialSigner

from cvcsync.adapters.credentials import Credentials
from cvcsync.config import ENV_FC_ENDPOINT
from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.platform.dispatch import (
    DispatchError,
    FcDispatcher,
    InlineDispatcher,
    LambdaDispatcher,
    invoke_failure,
)
from cvcsync.platform.runtime import FC, from_context, local_fc_context
from cvcsync.platform.triggers.common import continuation_of
from support.fc3_standin import fc3_context

EVENT = {"cvcsync": {"action": "resume", "runId": "r-1", "bucket": "b"}}
STS = Credentials("STS.id", "secret", "token", "fc-context")
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
STS_DICT = {"access_key_id": "STS.id", "access_key_secret": "secret", "security_token": "token"}


def fc3_dispatcher(env: dict[str, str] | None = None, **context: Any) -> FcDispatcher:
    invocation = from_context(fc3_context("oss-sync", account_id="1234", region="cn-hangzhou", **context))
    return FcDispatcher(invocation, env=env or {}, now=lambda: NOW, nonce=lambda: "nonce-1")


def test_fc_request_is_a_signed_async_invoke_of_the_function_itself() -> None:
    dispatcher = fc3_dispatcher(qualifier="prod")
    request = dispatcher.request(EVENT, endpoint=dispatcher.endpoint(), credentials=STS)
    assert request.url == (
        "https://1234.cn-hangzhou-internal.fc.aliyuncs.com/2023-03-30/functions/oss-sync/invocations?qualifier=prod"
    )
    headers = request.headers
    assert headers["x-fc-invocation-type"] == "Async"
    assert (headers["x-acs-action"], headers["x-acs-version"]) == ("InvokeFunction", "2023-03-30")
    assert headers["x-acs-security-token"] == "token"
    assert (headers["x-acs-date"], headers["x-acs-signature-nonce"]) == ("2030-01-02T03:04:05Z", "nonce-1")
    assert orjson.loads(request.body) == EVENT
    # The official SDK's signer, over the headers the request says it signed, gives the very same Authorization.
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-fc-invocation-type" in signed
    official = SimpleNamespace(
        method="POST",
        pathname="/2023-03-30/functions/oss-sync/invocations",
        query={"qualifier": "prod"},
        headers={name: headers[name] for name in signed},
    )
    payload_hash = headers["x-acs-content-sha256"]
    expected = OfficialSigner.get_authorization(official, "ACS3-HMAC-SHA256", payload_hash, "STS.id", "secret")
    assert headers["Authorization"] == expected


def test_without_a_qualifier_the_default_is_left_to_fc() -> None:
    dispatcher = fc3_dispatcher(qualifier=None)
    request = dispatcher.request(EVENT, endpoint="http://127.0.0.1:9", credentials=STS)
    assert request.url == "http://127.0.0.1:9/2023-03-30/functions/oss-sync/invocations"
    assert request.headers["host"] == "127.0.0.1:9"


def test_the_endpoint_can_be_overridden_but_only_by_a_url() -> None:
    assert fc3_dispatcher({ENV_FC_ENDPOINT: "http://127.0.0.1:8080/"}).endpoint() == "http://127.0.0.1:8080"
    with pytest.raises(ConfigurationError, match=ENV_FC_ENDPOINT):
        fc3_dispatcher({ENV_FC_ENDPOINT: "1234.cn-hangzhou.fc.aliyuncs.com"}).endpoint()
    no_account = FcDispatcher(from_context(fc3_context("oss-sync", account_id="")), env={})
    with pytest.raises(ConfigurationError, match="account id and region"):
        no_account.endpoint()


def test_credentials_come_from_the_context_else_from_the_environment() -> None:
    assert fc3_dispatcher(credentials=STS_DICT).credentials().security_token == "token"
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.env",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token",
    }
    from_env = fc3_dispatcher(env).credentials()  # python3.12: no context credentials
    assert (from_env.access_key_id, from_env.security_token) == ("STS.env", "env-token")
    assert fc3_dispatcher(env, credentials=STS_DICT).credentials().access_key_id == "STS.id"  # the current triple


def test_fc_dispatch_needs_the_contexts_function_name() -> None:
    with pytest.raises(ConfigurationError):
        FcDispatcher(from_context(None))


def test_credentials_are_looked_for_only_when_a_run_really_continues() -> None:
    dispatcher = FcDispatcher(from_context(local_fc_context("oss-sync", credentials={})), env={})
    with pytest.raises(ConfigurationError, match="STS credentials"):
        dispatcher.dispatch([EVENT])


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable", "hint"),
    [
        (
            403,
            b'{"Code":"SignatureNotMatch","Message":"string to sign: token-abc","RequestId":"r1"}',
            "SignatureNotMatch",
            False,
            "STS credentials",
        ),
        (403, b'{"Code":"AccessDenied","Message":"no","RequestId":"r1"}', "AccessDenied", False, "fc:InvokeFunction"),
        (404, b'{"code":"FunctionNotFound","message":"x","requestId":"r1"}', "FunctionNotFound", False, "region"),
        (429, b'{"errorCode":"ResourceExhausted","errorMessage":"x"}', "ResourceExhausted", True, ""),
        (503, b"<html>busy</html>", "HTTP503", True, ""),
    ],
)
def test_fc_refusals_become_dispatch_errors_that_say_what_to_do(
    status: int, body: bytes, code: str, retryable: bool, hint: str
) -> None:
    error = invoke_failure("oss-sync", status, "hdr-1", body)
    assert isinstance(error, DispatchError)
    assert (error.error_code, error.http_status, error.retryable) == (code, status, retryable)
    assert error.request_id == "hdr-1" and "hdr-1" in str(error)
    assert hint in str(error)
    assert "token-abc" not in str(error)  # FC's own message is never repeated
    assert invoke_failure("f", status, None, body).request_id == (None if b"equestId" not in body else "r1")


def test_the_fc_dispatch_path_imports_no_sdk() -> None:
    """Cold start: neither fc2 nor the FC 3.0 SDK is imported to build (and sign) a continuation."""
    code = (
        "import sys\n"
        "from cvcsync.adapters.credentials import Credentials\n"
        "from cvcsync.platform.dispatch import FcDispatcher\n"
        "from cvcsync.platform.runtime import Invocation\n"
        "i = Invocation('fc', 'r', None, function_name='f', account_id='1', region='cn-hangzhou')\n"
        "d = FcDispatcher(i, env={})\n"
        "d.request({}, endpoint=d.endpoint(), credentials=Credentials('STS.a', 'b', 'c'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fc2', 'aiohttp') or 'alibabacloud' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_fc3_context_is_read_like_an_fc2_one_plus_its_qualifier() -> None:
    fc3 = from_context(fc3_context("oss-sync", account_id="1234", region="cn-shanghai", qualifier="prod", timeout=30))
    assert (fc3.platform, fc3.function_name, fc3.account_id, fc3.region) == (FC, "oss-sync", "1234", "cn-shanghai")
    assert fc3.qualifier == "prod" and fc3.service_name is None and fc3.deadline is not None
    fc2 = from_context(local_fc_context("oss-sync"))
    assert (fc2.service_name, fc2.qualifier) == ("cvc-sync", None)


class RecordingLambda:
    """A stand-in for boto3's Lambda client: records the calls it gets."""

    def __init__(self, status: int = 202) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = status

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"StatusCode": self.status}


def test_lambda_dispatch_invokes_its_own_arn_asynchronously() -> None:
    from cvcsync.platform.runtime import LocalLambdaContext

    client = RecordingLambda()
    LambdaDispatcher(from_context(LocalLambdaContext("upload")), client=client).dispatch([EVENT, EVENT])
    assert [c["InvocationType"] for c in client.calls] == ["Event", "Event"]
    assert client.calls[0]["FunctionName"].endswith(":function:upload")
    assert orjson.loads(client.calls[0]["Payload"]) == EVENT
    with pytest.raises(DispatchError):
        LambdaDispatcher(from_context(LocalLambdaContext("upload")), client=RecordingLambda(500)).dispatch([EVENT])


def test_inline_dispatch_runs_every_event() -> None:
    seen: list[dict[str, Any]] = []
    InlineDispatcher(seen.append).dispatch([EVENT, EVENT, EVENT])
    assert len(seen) == 3


@pytest.mark.parametrize(
    "inner",
    [
        {"action": "resume", "runId": "../../etc/x"},
        {"action": "resume", "runId": "a/b"},
        {"action": "resume", "runId": ""},
        {"action": "chunk", "runId": "r1", "chunk": "0", "chunks": 2},
        {"action": "chunk", "runId": "r1", "chunk": -1, "chunks": 2},
        {"action": "chunk", "runId": "r1", "chunk": True, "chunks": 2},
    ],
)
def test_a_continuation_with_a_hostile_run_id_or_chunk_is_refused(inner: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        continuation_of({"cvcsync": inner})


def test_a_well_formed_continuation_is_recognised() -> None:
    inner = {"action": "chunk", "runId": "0b6a-4f_x", "chunk": 1, "chunks": 3, "bucket": "b"}
    assert continuation_of({"cvcsync": inner}) == inner and continuation_of({"events": []}) is None
