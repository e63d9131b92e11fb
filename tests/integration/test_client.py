"""The client against the emulator (and a scripted server) over real HTTP on loopback."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import orjson
import pytest

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.config import CvcSettings
from cvcsync.errors import CvcBusinessError, CvcGatewayError, CvcTransportError
from support.scripted import Answer, ScriptedServer


def make_client(url: str, key_id: str, secret: str, token: str | None = None, **kw: Any) -> CvcClient:
    settings = CvcSettings(endpoint=url, batch_size=kw.pop("batch_size", 100), read_timeout=kw.pop("read_timeout", 5))
    policy = kw.pop("retry_policy", RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01, rng=random.Random(7)))
    return CvcClient(Credentials(key_id, secret, token), settings=settings, retry_policy=policy, **kw)


@pytest.fixture
def client(emulator: Any) -> CvcClient:
    return make_client(emulator.url, emulator.access_key_id, emulator.access_key_secret)


def users(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {
            "userId": f"u-{i:05d}",
            "userName": f"用户 {i}+",
            "groupId": "88",
            "groupName": "示例科技",
            "departName": "研发部",
        }
        for i in range(start, start + n)
    ]


def test_create_users_splits_into_batches(emulator: Any) -> None:
    client = make_client(emulator.url, emulator.access_key_id, emulator.access_key_secret, batch_size=7)
    results = client.create_users(users(30))
    assert [len(r.user_ids) for r in results] == [7, 7, 7, 7, 2]
    assert all(r.ok and r.request_id and r.attempts == 1 for r in results)
    assert emulator.stats()["createBatchSizes"] == [7, 7, 7, 7, 2]
    assert len(emulator.users()) == 30


def test_round_trip_get_list_delete_account(client: CvcClient, emulator: Any) -> None:
    client.create_users(users(250))
    info = client.get_user("u-00007")
    assert info["UserName"] == "用户 7+"  # the space and the plus survive form encoding both ways
    assert info["GroupId"] == "88" and isinstance(info["CreateTime"], int)
    listed = list(client.list_users(page_size=100))
    assert len(listed) == 250 and len({u["UserId"] for u in listed}) == 250
    assert emulator.stats()["calls"]["ListUsers"] == 3
    assert client.get_account_info()["AccountApplicationNumber"] == 250
    deleted = client.delete_users([f"u-{i:05d}" for i in range(120)])
    assert [len(r.user_ids) for r in deleted] == [100, 20] and all(r.ok for r in deleted)
    assert len(emulator.users()) == 130


def test_upsert_updates_an_existing_user(client: CvcClient) -> None:
    client.create_users(users(1))
    first = client.get_user("u-00000")
    client.create_users([{**users(1)[0], "departName": "财务部"}])
    second = client.get_user("u-00000")
    assert second["DepartName"] == "财务部"
    assert second["CreateTime"] == first["CreateTime"]


def test_retries_through_injected_faults_and_loses_nothing(emulator: Any) -> None:
    emulator.set_faults(throttle_rate=0.25, error_rate=0.15, drop_rate=0.1, seed=11)
    slept: list[float] = []
    client = make_client(
        emulator.url,
        emulator.access_key_id,
        emulator.access_key_secret,
        batch_size=20,
        retry_policy=RetryPolicy(max_attempts=12, base_delay=0.001, max_delay=0.005, rng=random.Random(1)),
        sleep=slept.append,
    )
    results = client.create_users(users(400))
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
    assert len(emulator.users()) == 400
    faults = emulator.stats()["faults"]
    assert faults["throttled"] > 0 and faults["errors"] > 0 and faults["dropped"] > 0
    assert sum(r.attempts for r in results) == len(results) + len(slept)
    assert max(r.attempts for r in results) > 1


def test_permanent_errors_are_not_retried_and_do_not_leak_the_string_to_sign(emulator: Any) -> None:
    client = make_client(emulator.url, emulator.access_key_id, "wrong-secret")
    with pytest.raises(CvcGatewayError) as info:
        client.get_account_info()
    error = info.value
    assert (error.code, error.http_status, error.attempts, error.retryable) == ("SignatureDoesNotMatch", 400, 1, False)
    assert error.request_id
    assert "string to sign is withheld" in error.message and "AccessKeyId" not in error.message


def test_unknown_key(emulator: Any) -> None:
    client = make_client(emulator.url, "no-such-key", "x")
    with pytest.raises(CvcGatewayError) as info:
        client.get_account_info()
    assert (info.value.code, info.value.http_status) == ("InvalidAccessKeyId.NotFound", 404)


def test_business_error_is_an_error_not_a_success(client: CvcClient) -> None:
    with pytest.raises(CvcBusinessError) as info:
        client.get_user("nobody")
    error = info.value
    assert error.action == "GetUser" and error.http_status == 200 and error.attempts == 1
    assert error.code not in ("", "0") and error.request_id


def test_a_failed_batch_is_reported_and_the_rest_go_on(client: CvcClient, emulator: Any) -> None:
    batch = users(5)
    batch[2] = {**batch[2], "userName": ""}  # the emulator rejects the whole batch, as CVC would
    client.settings = CvcSettings(endpoint=emulator.url, batch_size=5)
    results = client.create_users(batch + users(5, start=5))
    assert [r.ok for r in results] == [False, True]
    assert isinstance(results[0].error, CvcBusinessError)
    assert results[0].user_ids == [u["userId"] for u in batch]
    assert len(emulator.users()) == 5


def test_deadline_bounds_retries(emulator: Any) -> None:
    emulator.set_faults(throttle_rate=1.0, seed=3)
    client = make_client(
        emulator.url,
        emulator.access_key_id,
        emulator.access_key_secret,
        retry_policy=RetryPolicy(max_attempts=1000, base_delay=0.02, max_delay=0.05, rng=random.Random(2)),
    )
    started = time.monotonic()
    with pytest.raises(CvcGatewayError) as info:
        client.get_account_info(deadline=started + 0.6)
    elapsed = time.monotonic() - started
    assert info.value.code.startswith("Throttling")
    assert 1 < info.value.attempts < 1000
    assert elapsed < 0.6 + 0.5  # stopped by the deadline, not by the attempt budget


def test_deadline_caps_the_read_timeout(emulator: Any) -> None:
    emulator.set_faults(latency_ms=3000, seed=1)
    client = make_client(emulator.url, emulator.access_key_id, emulator.access_key_secret, read_timeout=30)
    started = time.monotonic()
    with pytest.raises(CvcTransportError) as info:
        client.get_account_info(deadline=started + 0.5)
    assert time.monotonic() - started < 2.5
    assert info.value.code in ("Timeout", "DeadlineExceeded")


def test_sts_credentials_sign_the_security_token(emulator: Any) -> None:
    client = make_client(emulator.url, emulator.sts_key_id, emulator.sts_key_secret, token=emulator.sts_token)
    assert client.get_account_info()["AccountApplicationMax"] > 0
    wrong = make_client(emulator.url, emulator.sts_key_id, emulator.sts_key_secret, token="not-the-token")
    with pytest.raises(CvcGatewayError) as info:
        wrong.get_account_info()
    assert info.value.retryable is False


def test_every_attempt_is_signed_anew() -> None:
    busy = Answer(503, b'{"RequestId":"r1","Code":"ServiceUnavailable","Message":"busy"}')
    ok = Answer(200, b'{"RequestId":"r2","Success":true,"ErrorCode":0,"AccountInfo":{"AccountApplicationMax":5}}')
    with ScriptedServer([busy, busy, ok]).running() as server:
        client = make_client(server.url, "id", "secret", sleep=lambda _s: None)
        assert client.get_account_info() == {"AccountApplicationMax": 5}
        nonces = [r.query["SignatureNonce"] for r in server.requests]
        signatures = [r.query["Signature"] for r in server.requests]
    assert len(nonces) == 3 and len(set(nonces)) == 3 and len(set(signatures)) == 3


def test_retry_after_header_is_honoured() -> None:
    throttled = Answer(
        400,
        b'{"RequestId":"r1","Code":"Throttling.User","Message":"slow down"}',
        {"Content-Type": "application/json", "x-acs-retry-after": "250"},
    )
    ok = Answer(200, b'{"RequestId":"r2","Success":true,"ErrorCode":0,"AccountInfo":{}}')
    slept: list[float] = []
    with ScriptedServer([throttled, ok]).running() as server:
        make_client(server.url, "id", "secret", sleep=slept.append).get_account_info()
    assert slept == [0.25]


def test_a_non_json_answer_says_what_came_back() -> None:
    page = Answer(502, b"<html><body>Bad Gateway from a proxy</body></html>", {"Content-Type": "text/html"})
    with ScriptedServer([page]).running() as server:
        client = make_client(server.url, "id", "secret", sleep=lambda _s: None)
        with pytest.raises(CvcTransportError) as info:
            client.get_account_info()
        assert len(server.requests) == 6  # a 5xx is retried up to the attempt budget
    assert info.value.code == "InvalidResponse" and info.value.http_status == 502
    assert "Bad Gateway from a proxy" in info.value.message and "text/html" in info.value.message


def test_form_body_carries_userinfo_and_count() -> None:
    ok = Answer(200, b'{"RequestId":"r","Success":true,"ErrorCode":0,"Message":"successful!"}')
    with ScriptedServer([ok]).running() as server:
        make_client(server.url, "id", "secret").create_users(users(3))
        sent = server.requests[0]
    assert sent.query["Action"] == "CreateUser" and sent.query["Version"] == "2019-10-30"
    assert "UserInfo" not in sent.query
    assert sent.form["Count"] == "3"
    assert [u["userId"] for u in orjson.loads(sent.form["UserInfo"])] == ["u-00000", "u-00001", "u-00002"]


def test_calls_are_logged_without_secrets(client: CvcClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cvcsync.adapters.cvc")
    client.create_users(users(3))
    record = next(r for r in caplog.records if r.getMessage() == "cvc call ok")
    assert (record.action, record.batchSize, record.attempts) == ("CreateUser", 3, 1)  # type: ignore[attr-defined]
    assert record.cvcRequestId  # type: ignore[attr-defined]
    assert client.credentials.access_key_secret not in caplog.text


def test_environment_proxies_are_still_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = Answer(200, b'{"RequestId":"r","Success":true,"ErrorCode":0,"AccountInfo":{"AccountApplicationMax":9}}')
    with ScriptedServer([ok]).running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = make_client("http://cvc.invalid", "id", "secret")  # reachable only through the proxy
        assert client.get_account_info() == {"AccountApplicationMax": 9}
        assert server_saw_action(proxy, "GetAccountInfo")


def server_saw_action(server: ScriptedServer, action: str) -> bool:
    return any(r.query.get("Action") == action for r in server.requests)
