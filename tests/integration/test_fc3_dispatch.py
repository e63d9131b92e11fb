"""Continuations on Function Compute 3.0 over real HTTP: FcDispatcher against a stand-in of FC 3.0's invoke API that
checks every request with the official SDK's ACS3 signer (tests/support/fc3_standin.py)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import requests

from cvcsync.adapters import acs3_signature
from cvcsync.config import ENV_FC_ENDPOINT, SyncSettings
from cvcsync.platform import services
from cvcsync.platform.dispatch import DispatchError, FcDispatcher
from cvcsync.platform.runtime import from_context
from cvcsync.platform.triggers.common import continuation_of
from support.fc3_standin import Fc3StandIn, StandInKey, fc3_context, served

FUNCTION = "cvc-sync-object-upload"
STS = StandInKey("STS.NUk3fake0id", "fake-sts-secret", "fake-sts-token-CAIS")
RESUME = {"cvcsync": {"action": "resume", "runId": "0b6a-4f_x", "bucket": "hr-exports", "step": "resume-1"}}


@pytest.fixture
def standin() -> Fc3StandIn:
    return Fc3StandIn([STS], [FUNCTION])


@pytest.fixture
def endpoint(standin: Fc3StandIn) -> Iterator[str]:
    with served(standin) as url:
        yield url


def sts_credentials(key: StandInKey = STS) -> dict[str, str]:
    return {"access_key_id": key.id, "access_key_secret": key.secret, "security_token": key.token or ""}


def dispatcher(endpoint: str, **context: Any) -> FcDispatcher:
    invocation = from_context(fc3_context(FUNCTION, **context))
    return FcDispatcher(invocation, env={ENV_FC_ENDPOINT: endpoint})


def test_a_continuation_reaches_fc_signed_async_with_the_roles_sts_token(standin: Fc3StandIn, endpoint: str) -> None:
    dispatcher(endpoint, credentials=sts_credentials(), qualifier="prod").dispatch([RESUME])
    assert standin.refusals == []
    [call] = standin.invocations  # recorded only once the official signer agreed with the signature
    assert call.function == FUNCTION
    assert call.invocation_type == "Async"
    assert call.qualifier == "prod"
    assert (call.access_key_id, call.security_token) == (STS.id, STS.token)
    assert "x-fc-invocation-type" in call.signed_headers and "x-acs-security-token" in call.signed_headers
    assert continuation_of(orjson.loads(call.body)) == RESUME["cvcsync"]


def test_on_python312_the_credentials_come_from_the_environment(standin: Fc3StandIn, endpoint: str) -> None:
    """python3.12's context has no credentials: FC puts the role's STS key in ALIBABA_CLOUD_*."""
    invocation = from_context(fc3_context(FUNCTION))
    env = {
        ENV_FC_ENDPOINT: endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": STS.id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS.secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": STS.token or "",
    }
    FcDispatcher(invocation, env=env).dispatch([RESUME])
    [call] = standin.invocations
    assert call.security_token == STS.token and call.qualifier == "LATEST"


def test_a_fan_out_sends_one_invocation_per_chunk_each_signed_anew(standin: Fc3StandIn, endpoint: str) -> None:
    chunks = [{"cvcsync": {"action": "chunk", "runId": "r1", "chunk": n, "chunks": 4}} for n in range(4)]
    dispatcher(endpoint, credentials=sts_credentials()).dispatch(chunks)
    assert [orjson.loads(c.body)["cvcsync"]["chunk"] for c in standin.invocations] == [0, 1, 2, 3]
    assert standin.refusals == []  # four nonces, none reused


def test_a_wrong_secret_is_refused_and_surfaces_as_a_dispatch_error(standin: Fc3StandIn, endpoint: str) -> None:
    wrong = {**sts_credentials(), "access_key_secret": "not-the-secret"}
    with pytest.raises(DispatchError) as info:
        dispatcher(endpoint, credentials=wrong).dispatch([RESUME])
    error = info.value
    assert (error.http_status, error.error_code) == (403, "SignatureNotMatch")
    assert error.request_id and error.request_id in str(error)
    assert not error.retryable  # another attempt with the same key fails the same way
    assert standin.invocations == []
    assert [r.reason for r in standin.refusals] == ["the signature the official signer computes differs"]
    assert STS.token not in str(error)


def test_fc_overloaded_is_a_retryable_dispatch_error_with_its_request_id(standin: Fc3StandIn, endpoint: str) -> None:
    standin.fail_next.append((503, "ResourceThrottled"))
    with pytest.raises(DispatchError) as info:
        dispatcher(endpoint, credentials=sts_credentials()).dispatch([RESUME])
    assert info.value.retryable and info.value.error_code == "ResourceThrottled"
    assert info.value.request_id == standin.refusals[0].request_id


def test_an_unknown_function_names_the_account_and_region_to_check(endpoint: str) -> None:
    other = FcDispatcher(
        from_context(fc3_context("not-deployed", credentials=sts_credentials())), env={ENV_FC_ENDPOINT: endpoint}
    )
    with pytest.raises(DispatchError, match=r"FunctionNotFound.*account and region") as info:
        other.dispatch([RESUME])
    assert info.value.http_status == 404


def test_no_answer_at_all_is_a_retryable_dispatch_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DispatchError, match="got no answer") as info:
        dispatcher(f"http://127.0.0.1:{port}", credentials=sts_credentials()).dispatch([RESUME])
    assert info.value.retryable and isinstance(info.value.__cause__, requests.ConnectionError)


def test_the_platform_dispatcher_on_fc_is_the_fc3_one(
    standin: Fc3StandIn, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What build_context hands a run on FC today (CVCSYNC_FANOUT unset): the endpoint from the environment."""
    monkeypatch.setenv(ENV_FC_ENDPOINT, endpoint)
    invocation = from_context(fc3_context(FUNCTION, credentials=sts_credentials()))
    built = services.dispatcher(SyncSettings(), invocation, {}, inline=lambda event: None)
    assert isinstance(built, FcDispatcher)
    built.dispatch([RESUME])
    assert len(standin.invocations) == 1


# The stand-in itself: it must refuse what FC would, or the tests above prove nothing.


def raw_request(endpoint: str, *, body: bytes = b"{}", key: StandInKey = STS, **change: Any) -> requests.Response:
    """A request signed by our signer, then altered as ``change`` says (after signing, so the signature is stale)."""
    signed = acs3_signature.sign(
        "POST",
        f"/2023-03-30/functions/{FUNCTION}/invocations",
        {},
        {
            "host": endpoint.removeprefix("http://"),
            "x-acs-action": "InvokeFunction",
            "x-acs-version": "2023-03-30",
            **change.pop("extra_headers", {}),
        },
        body,
        access_key_id=key.id,
        access_key_secret=key.secret,
        security_token=key.token,
        now=change.pop("now", datetime.now(timezone.utc)),
        nonce=change.pop("nonce", uuid.uuid4().hex),
    )
    signed.update(change.pop("headers", {}))
    return requests.post(
        endpoint + f"/2023-03-30/functions/{FUNCTION}/invocations",
        data=change.pop("send_body", body),
        headers=signed,
        timeout=5,
    )


def test_the_standin_refuses_a_body_changed_after_signing(standin: Fc3StandIn, endpoint: str) -> None:
    answer = raw_request(endpoint, body=b'{"a":1}', send_body=b'{"a":2}')
    assert (answer.status_code, answer.json()["Code"]) == (403, "SignatureNotMatch")
    assert "SHA-256 of the body" in standin.refusals[-1].reason


def test_the_standin_refuses_a_replayed_nonce_and_a_stale_date(standin: Fc3StandIn, endpoint: str) -> None:
    assert raw_request(endpoint, nonce="once").status_code == 200  # a synchronous call, accepted
    assert raw_request(endpoint, nonce="once").json()["Code"] == "SignatureNonceUsed"
    stale = datetime.now(timezone.utc) - timedelta(minutes=16)
    assert raw_request(endpoint, nonce="late", now=stale).json()["Code"] == "RequestTimeTooSkewed"


def test_the_standin_refuses_an_unsigned_acs_header_a_missing_token_and_an_unknown_key(
    standin: Fc3StandIn, endpoint: str
) -> None:
    unsigned = raw_request(endpoint, nonce="u", headers={"x-acs-extra": "added later"})
    assert unsigned.json()["Code"] == "SignatureNotMatch" and "x-acs-extra" in standin.refusals[-1].reason
    tokenless = StandInKey(STS.id, STS.secret, None)
    assert raw_request(endpoint, nonce="t", key=tokenless).json()["Code"] == "InvalidSecurityToken"
    stranger = StandInKey("STS.unknown", "s", "t")
    assert raw_request(endpoint, nonce="k", key=stranger).json()["Code"] == "InvalidAccessKeyID"
    assert standin.invocations == []
