"""Dispatchers: what a continuation or a chunk looks like on the wire to FC and to Lambda."""

from __future__ import annotations

from typing import Any

import fc2
import orjson
import pytest

from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.platform.dispatch import DispatchError, FcDispatcher, InlineDispatcher, LambdaDispatcher
from cvcsync.platform.runtime import from_context, local_fc_context
from cvcsync.platform.triggers.common import continuation_of
from support.scripted import Answer, ScriptedServer

EVENT = {"cvcsync": {"action": "resume", "runId": "r-1", "bucket": "b"}}


def fc_invocation() -> Any:
    creds = {"access_key_id": "STS.id", "access_key_secret": "secret", "security_token": "token"}
    return from_context(local_fc_context("oss-sync", credentials=creds))


def test_fc_dispatch_is_an_async_invoke_of_the_same_function() -> None:
    with ScriptedServer([Answer(202, b"")]).running() as server:
        client = fc2.Client(endpoint=server.url, accessKeyID="STS.id", accessKeySecret="secret", securityToken="t")
        FcDispatcher(fc_invocation(), client=client).dispatch([EVENT])
        [sent] = server.requests
    assert sent.path == "/2016-08-15/services/cvc-sync/functions/oss-sync/invocations"
    assert sent.headers["x-fc-invocation-type"] == "Async"
    assert orjson.loads(sent.body) == EVENT


def test_fc_dispatch_failure_is_a_retryable_dispatch_error() -> None:
    with ScriptedServer([Answer(500, b'{"ErrorCode":"ServiceUnavailable","ErrorMessage":"busy"}')]).running() as server:
        client = fc2.Client(endpoint=server.url, accessKeyID="STS.id", accessKeySecret="secret", securityToken="t")
        with pytest.raises(DispatchError) as info:
            FcDispatcher(fc_invocation(), client=client).dispatch([EVENT])
    assert info.value.retryable


def test_fc_dispatch_needs_the_contexts_names() -> None:
    with pytest.raises(ConfigurationError):
        FcDispatcher(from_context(None))


def test_the_fc_client_is_built_only_when_a_run_really_continues() -> None:
    dispatcher = FcDispatcher(from_context(local_fc_context("oss-sync", credentials={})))  # no STS credentials
    with pytest.raises(ConfigurationError, match="STS credentials"):
        dispatcher.dispatch([EVENT])


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
