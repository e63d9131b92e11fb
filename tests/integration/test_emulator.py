"""The emulator over real HTTP, poked with raw signed requests: gateway errors, actions, faults, admin, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests

from cvcsync.adapters.signature import string_to_sign
from cvcsync.config import ENV_EMULATOR_ACCESS_KEYS
from cvcsync_dev.emulator import (
    ERROR_BATCH_TOO_LARGE,
    ERROR_CAPACITY_EXCEEDED,
    ERROR_COUNT_MISMATCH,
    ERROR_INVALID_USER,
    ERROR_USER_NOT_FOUND,
    AccessKey,
    EmulatorApp,
    EmulatorServer,
)
from support.emulator import TEST_KEY_ID, TEST_KEY_SECRET, EmulatorProcess, start_emulator
from support.signing import call, send, signed_parts, stale_timestamp

REQUEST_ID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
GATEWAY_KEYS = ["RequestId", "HostId", "Code", "Message", "Recommend"]


def api(emulator: EmulatorProcess, action: str, **options: Any) -> requests.Response:
    return call(
        emulator.url,
        action,
        key_id=emulator.access_key_id,
        secret=emulator.access_key_secret,
        session=emulator.session,
        **options,
    )


def user(user_id: str, **fields: str) -> dict[str, str]:
    return {"userId": user_id, "userName": f"用户 {user_id}", "groupId": "88", "groupName": "示例科技", **fields}


def create(emulator: EmulatorProcess, users: list[Any], count: int | None = None) -> requests.Response:
    body = {"UserInfo": json.dumps(users, ensure_ascii=False), "Count": str(len(users) if count is None else count)}
    return api(emulator, "CreateUser", body=body)


def delete(emulator: EmulatorProcess, user_ids: list[str]) -> requests.Response:
    body = {"UserInfo": json.dumps([{"userId": i} for i in user_ids]), "Count": str(len(user_ids))}
    return api(emulator, "DeleteUser", body=body)


def gateway_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a gateway refusal: status, code and the standard body shape; return the body."""
    body = response.json()
    assert (response.status_code, body.get("Code")) == (status, code), body
    assert list(body) == GATEWAY_KEYS
    assert REQUEST_ID.fullmatch(body["RequestId"])
    assert body["HostId"] == "aliyuncvc.cn-hangzhou.aliyuncs.com"
    assert body["Recommend"].startswith("https://") and code in body["Recommend"]
    assert response.headers["Content-Type"].startswith("application/json")
    return dict(body)


def business_error(response: requests.Response, error_code: int) -> str:
    body = response.json()
    assert response.status_code == 200, body
    assert (body["Success"], body["ErrorCode"]) == (False, error_code), body
    assert REQUEST_ID.fullmatch(body["RequestId"])
    return str(body["Message"])


def succeeded(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == 200, body
    assert (body["Success"], body["ErrorCode"], body["Message"]) == (True, 0, "successful!"), body
    assert REQUEST_ID.fullmatch(body["RequestId"])
    return dict(body)


# --- actions ------------------------------------------------------------------------------------------------


def test_create_then_get_answers_pascal_case(emulator: EmulatorProcess) -> None:
    full = user(
        "u1",
        departId="1111",
        departName="行政部",
        userEmail="someone@example.com",
        userTel="12345678",
        userMobile="13812341234",
        userAvatarUrl="https://example.com/a.png",
    )
    before = int(time.time() * 1000)
    succeeded(create(emulator, [full, user("u2")]))
    info = succeeded(api(emulator, "GetUser", query={"UserId": "u1"}))["UserInfo"]
    assert {k: v for k, v in info.items() if k != "CreateTime"} == {
        "UserId": "u1",
        "UserName": "用户 u1",
        "GroupId": "88",
        "GroupName": "示例科技",
        "DepartId": "1111",
        "DepartName": "行政部",
        "UserEmail": "someone@example.com",
        "UserTel": "12345678",
        "UserMobile": "13812341234",
        "UserAvatarUrl": "https://example.com/a.png",
    }
    assert before - 5000 <= info["CreateTime"] <= int(time.time() * 1000) + 5000


def test_create_is_an_upsert_that_keeps_create_time(emulator: EmulatorProcess) -> None:
    succeeded(create(emulator, [user("u1")]))
    first = succeeded(api(emulator, "GetUser", query={"UserId": "u1"}))["UserInfo"]
    succeeded(create(emulator, [user("u1", userName="新名字")]))
    second = succeeded(api(emulator, "GetUser", query={"UserId": "u1"}))["UserInfo"]
    assert (second["UserName"], second["CreateTime"]) == ("新名字", first["CreateTime"])
    assert emulator.stats()["users"] == 1


def test_plus_in_a_form_body_is_a_space_and_encoded_plus_is_plus(emulator: EmulatorProcess) -> None:
    # urlencode writes spaces as '+' and '+' as %2B, as the official SDK does; signed over the decoded values.
    succeeded(create(emulator, [user("plus", userName="a+b c", departName="R&D = 研发")]))
    info = succeeded(api(emulator, "GetUser", query={"UserId": "plus"}))["UserInfo"]
    assert (info["UserName"], info["DepartName"]) == ("a+b c", "R&D = 研发")


def test_body_encoded_with_percent_20_is_accepted_too(emulator: EmulatorProcess) -> None:
    users = json.dumps([user("pct", userName="x y")], ensure_ascii=False)
    params, form = signed_parts(
        "CreateUser", key_id=TEST_KEY_ID, secret=TEST_KEY_SECRET, body={"UserInfo": users, "Count": "1"}
    )
    raw_body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in form.items())
    target = f"{emulator.url}/?{urlencode(params)}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    succeeded(emulator.session.post(target, data=raw_body.encode(), headers=headers, timeout=10))
    assert emulator.users()[0]["userName"] == "x y"


def test_get_is_accepted_and_signed_with_its_own_method(emulator: EmulatorProcess) -> None:
    succeeded(api(emulator, "GetAccountInfo", method="GET"))
    params, _ = signed_parts("GetAccountInfo", key_id=TEST_KEY_ID, secret=TEST_KEY_SECRET, method="POST")
    gateway_error(send(emulator.url, params, method="GET", session=emulator.session), 400, "SignatureDoesNotMatch")


def test_empty_parameters_are_signed(emulator: EmulatorProcess) -> None:
    # The older SDK sends SignatureType= and RegionId: both are signed like the rest.
    succeeded(api(emulator, "GetAccountInfo", extra={"SignatureType": "", "RegionId": "cn-hangzhou"}))
    params, _ = signed_parts("GetAccountInfo", key_id=TEST_KEY_ID, secret=TEST_KEY_SECRET)
    params["SignatureType"] = ""  # arrives, but was not signed
    gateway_error(send(emulator.url, params, session=emulator.session), 400, "SignatureDoesNotMatch")


def test_delete_removes_users_and_absent_ones_are_harmless(emulator: EmulatorProcess) -> None:
    succeeded(create(emulator, [user("a"), user("b")]))
    succeeded(delete(emulator, ["a", "never-existed"]))
    assert [u["userId"] for u in emulator.users()] == ["b"]
    business_error(api(emulator, "GetUser", query={"UserId": "a"}), ERROR_USER_NOT_FOUND)
    assert emulator.stats()["deleteBatchSizes"] == [2]


def test_get_user_of_an_unknown_user_is_a_business_error(emulator: EmulatorProcess) -> None:
    message = business_error(api(emulator, "GetUser", query={"UserId": "ghost"}), ERROR_USER_NOT_FOUND)
    assert "not found" in message and "ghost" in message


def test_list_users_pages_in_user_id_order(emulator: EmulatorProcess) -> None:
    ids = [f"u{n:03d}" for n in range(45)]
    succeeded(create(emulator, [user(i) for i in reversed(ids)]))
    seen: list[str] = []
    for page in (1, 2, 3):
        data = succeeded(api(emulator, "ListUsers", query={"PageNumber": str(page), "PageSize": "20"}))["Data"]
        assert (data["TotalCount"], data["PageSize"], data["PageNumber"]) == (45, 20, page)
        seen += [info["UserId"] for info in data["UserInfos"]]
    assert seen == ids
    beyond = succeeded(api(emulator, "ListUsers", query={"PageNumber": "4", "PageSize": "20"}))["Data"]
    assert (beyond["TotalCount"], beyond["UserInfos"]) == (45, [])
    default = succeeded(api(emulator, "ListUsers"))["Data"]
    assert (default["PageNumber"], default["PageSize"], len(default["UserInfos"])) == (1, 20, 20)
    assert set(default["UserInfos"][0]) == {"UserId", "UserName", "GroupId", "GroupName", "CreateTime"}
    largest = succeeded(api(emulator, "ListUsers", query={"PageSize": "100"}))["Data"]
    assert len(largest["UserInfos"]) == 45


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"PageSize": "101"}, "PageSize"),
        ({"PageSize": "0"}, "PageSize"),
        ({"PageNumber": "0"}, "PageNumber"),
        ({"PageNumber": "one"}, "PageNumber"),
        ({"PageSize": "2.5"}, "PageSize"),
        ({"PageNumber": "99999999999999999999"}, "PageNumber"),
        ({"PageNumber": "2147483648"}, "PageNumber"),
    ],
)
def test_list_users_refuses_bad_paging(emulator: EmulatorProcess, query: dict[str, str], parameter: str) -> None:
    body = gateway_error(api(emulator, "ListUsers", query=query), 400, "InvalidParameter")
    assert parameter in body["Message"]


def test_get_account_info(emulator: EmulatorProcess) -> None:
    succeeded(create(emulator, [user("a"), user("b"), user("c")]))
    info = succeeded(api(emulator, "GetAccountInfo"))["AccountInfo"]
    assert info == {"AccountConcurrentMax": 100, "AccountApplicationMax": 100_000, "AccountApplicationNumber": 3}


# --- business errors of the batches ---------------------------------------------------------------------------


def test_count_must_match_the_list(emulator: EmulatorProcess) -> None:
    message = business_error(create(emulator, [user("a"), user("b")], count=3), ERROR_COUNT_MISMATCH)
    assert "3" in message and "2" in message
    business_error(
        api(emulator, "DeleteUser", body={"UserInfo": json.dumps([{"userId": "a"}]), "Count": "2"}),
        ERROR_COUNT_MISMATCH,
    )
    assert emulator.users() == []


def test_batch_limit(emulator: EmulatorProcess) -> None:
    message = business_error(create(emulator, [user(f"u{n}") for n in range(101)]), ERROR_BATCH_TOO_LARGE)
    assert "100" in message
    succeeded(create(emulator, [user(f"u{n}") for n in range(100)]))
    business_error(delete(emulator, [f"u{n}" for n in range(101)]), ERROR_BATCH_TOO_LARGE)
    assert emulator.stats()["createBatchSizes"] == [100]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"userName": ""}, "userName"),
        ({"groupName": None}, "groupName"),
        ({"groupId": 88}, "groupId"),
        ({"userEmail": 5}, "userEmail"),
    ],
)
def test_one_invalid_user_rejects_the_whole_batch(emulator: EmulatorProcess, bad: dict[str, Any], field: str) -> None:
    batch: list[dict[str, Any]] = [user("ok-0"), user("ok-1"), {**user("bad-2"), **bad}, user("ok-3")]
    message = business_error(create(emulator, batch), ERROR_INVALID_USER)
    assert "index 2" in message and "bad-2" in message and field in message
    assert emulator.users() == []


def test_a_user_that_is_not_an_object_or_lacks_its_id(emulator: EmulatorProcess) -> None:
    assert "index 1" in business_error(create(emulator, [user("a"), "just text"]), ERROR_INVALID_USER)
    no_id = {k: v for k, v in user("x").items() if k != "userId"}
    message = business_error(create(emulator, [no_id]), ERROR_INVALID_USER)
    assert "index 0" in message and "userId" in message
    business_error(api(emulator, "DeleteUser", body={"UserInfo": "[{}]", "Count": "1"}), ERROR_INVALID_USER)
    business_error(create(emulator, []), ERROR_INVALID_USER)


def test_capacity_is_enforced_atomically(emulator: EmulatorProcess) -> None:
    emulator.set_capacity(3)
    succeeded(create(emulator, [user("a"), user("b")]))
    message = business_error(create(emulator, [user("c"), user("d")]), ERROR_CAPACITY_EXCEEDED)
    assert "3" in message
    assert [u["userId"] for u in emulator.users()] == ["a", "b"]
    succeeded(create(emulator, [user("a", userName="renamed"), user("c")]))  # one update, one new: fits
    info = succeeded(api(emulator, "GetAccountInfo"))["AccountInfo"]
    assert (info["AccountApplicationMax"], info["AccountApplicationNumber"]) == (3, 3)


@pytest.mark.parametrize(
    ("action", "options", "code", "parameter"),
    [
        ("CreateUser", {"body": {"Count": "1"}}, "MissingParameter", "UserInfo"),
        ("CreateUser", {"body": {"UserInfo": "[]"}}, "MissingParameter", "Count"),
        ("CreateUser", {"body": {"UserInfo": "not json", "Count": "1"}}, "InvalidParameter", "UserInfo"),
        ("CreateUser", {"body": {"UserInfo": '{"userId": "a"}', "Count": "1"}}, "InvalidParameter", "UserInfo"),
        ("CreateUser", {"body": {"UserInfo": "[]", "Count": "one"}}, "InvalidParameter", "Count"),
        ("DeleteUser", {"body": {"Count": "1"}}, "MissingParameter", "UserInfo"),
        ("GetUser", {}, "MissingParameter", "UserId"),
    ],
)
def test_action_parameters(
    emulator: EmulatorProcess, action: str, options: dict[str, Any], code: str, parameter: str
) -> None:
    body = gateway_error(api(emulator, action, **options), 400, code)
    assert f'"{parameter}"' in body["Message"]


# --- gateway errors -------------------------------------------------------------------------------------------


def test_signature_mismatch_names_the_server_string_to_sign(emulator: EmulatorProcess) -> None:
    params, form = signed_parts(
        "CreateUser",
        key_id=TEST_KEY_ID,
        secret="not-the-secret",
        body={"UserInfo": json.dumps([user("a b+c")]), "Count": "1"},
    )
    body = gateway_error(send(emulator.url, params, form, session=emulator.session), 400, "SignatureDoesNotMatch")
    expected = string_to_sign("POST", [*params.items(), *form.items()])
    prefix = "Specified signature is not matched with our calculation. server string to sign is:"
    assert body["Message"] == prefix + expected
    assert body["Message"].split(":")[1] == expected  # what the official SDK does with it
    assert emulator.users() == []


@pytest.mark.parametrize("name", ["Action", "Version", "AccessKeyId", "Timestamp"])
def test_missing_common_parameter(emulator: EmulatorProcess, name: str) -> None:
    body = gateway_error(api(emulator, "GetAccountInfo", omit=[name]), 400, "MissingParameter")
    assert f'"{name}"' in body["Message"]


@pytest.mark.parametrize("name", ["Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce"])
def test_missing_signature_parameter(emulator: EmulatorProcess, name: str) -> None:
    params, _ = signed_parts("GetAccountInfo", key_id=TEST_KEY_ID, secret=TEST_KEY_SECRET)
    del params[name]
    gateway_error(send(emulator.url, params, session=emulator.session), 400, "IncompleteSignature")


@pytest.mark.parametrize(("name", "value"), [("SignatureMethod", "HMAC-SHA256"), ("SignatureVersion", "2.0")])
def test_unsupported_signature_scheme(emulator: EmulatorProcess, name: str, value: str) -> None:
    gateway_error(api(emulator, "GetAccountInfo", extra={name: value}), 400, "IncompleteSignature")


def test_unknown_action_or_version(emulator: EmulatorProcess) -> None:
    gateway_error(api(emulator, "DescribeRegions"), 404, "InvalidApi.NotFound")
    gateway_error(api(emulator, "GetAccountInfo", version="2020-01-01"), 404, "InvalidApi.NotFound")


def test_format_json_in_any_case_or_absent(emulator: EmulatorProcess) -> None:
    succeeded(api(emulator, "GetAccountInfo", extra={"Format": "json"}))
    succeeded(api(emulator, "GetAccountInfo", omit=["Format"]))
    gateway_error(api(emulator, "GetAccountInfo", extra={"Format": "XML"}), 400, "InvalidParameter")


def test_unknown_access_key(emulator: EmulatorProcess) -> None:
    response = call(emulator.url, "GetAccountInfo", key_id="nobody", secret="x", session=emulator.session)
    gateway_error(response, 404, "InvalidAccessKeyId.NotFound")


def test_disabled_and_denied_keys(emulator: EmulatorProcess) -> None:
    emulator.set_key(TEST_KEY_ID, disabled=True)
    gateway_error(api(emulator, "GetAccountInfo"), 400, "InvalidAccessKeyId.Inactive")
    emulator.set_key(TEST_KEY_ID, disabled=False, denied=True)
    gateway_error(api(emulator, "GetAccountInfo"), 403, "Forbidden.RAM")
    # Permission is checked after authentication: a bad signature is still a bad signature.
    forged = call(emulator.url, "GetAccountInfo", key_id=TEST_KEY_ID, secret="wrong", session=emulator.session)
    gateway_error(forged, 400, "SignatureDoesNotMatch")
    emulator.reset()
    succeeded(api(emulator, "GetAccountInfo"))


@pytest.mark.parametrize(
    "timestamp",
    ["2024-01-01 00:00:00", "2024-01-01T00:00:00+08:00", "2024-1-1T0:0:0Z", "1714564800", "2024-01-01T00:00:00.000Z"],
)
def test_timestamp_format(emulator: EmulatorProcess, timestamp: str) -> None:
    gateway_error(api(emulator, "GetAccountInfo", timestamp=timestamp), 400, "InvalidTimeStamp.Format")


@pytest.mark.parametrize("offset", [-16 * 60, 16 * 60])
def test_timestamp_out_of_the_window_either_way(emulator: EmulatorProcess, offset: int) -> None:
    gateway_error(api(emulator, "GetAccountInfo", timestamp=stale_timestamp(offset)), 400, "InvalidTimeStamp.Expired")


@pytest.mark.parametrize("offset", [-14 * 60, 14 * 60])
def test_timestamp_within_the_window(emulator: EmulatorProcess, offset: int) -> None:
    succeeded(api(emulator, "GetAccountInfo", timestamp=stale_timestamp(offset)))


def test_replayed_nonce_is_refused(emulator: EmulatorProcess) -> None:
    params, form = signed_parts(
        "CreateUser",
        key_id=TEST_KEY_ID,
        secret=TEST_KEY_SECRET,
        body={"UserInfo": json.dumps([user("once")]), "Count": "1"},
    )
    succeeded(send(emulator.url, params, form, session=emulator.session))
    gateway_error(send(emulator.url, params, form, session=emulator.session), 400, "SignatureNonceUsed")
    assert emulator.stats()["createBatchSizes"] == [1]


def test_a_forged_request_does_not_burn_the_nonce(emulator: EmulatorProcess) -> None:
    forged = call(
        emulator.url, "GetAccountInfo", key_id=TEST_KEY_ID, secret="wrong", nonce="n-1", session=emulator.session
    )
    gateway_error(forged, 400, "SignatureDoesNotMatch")
    succeeded(api(emulator, "GetAccountInfo", nonce="n-1"))


def test_sts_key_requires_its_token_which_is_signed(emulator: EmulatorProcess) -> None:
    def sts(**options: Any) -> requests.Response:
        return call(
            emulator.url,
            "GetAccountInfo",
            key_id=emulator.sts_key_id,
            secret=emulator.sts_key_secret,
            session=emulator.session,
            **options,
        )

    succeeded(sts(token=emulator.sts_token))
    gateway_error(sts(), 400, "MissingSecurityToken")
    gateway_error(sts(token="another-token"), 400, "InvalidSecurityToken.MismatchWithAccessKey")
    unexpected = api(emulator, "GetAccountInfo", token=emulator.sts_token)  # a token with a long-term key
    gateway_error(unexpected, 400, "InvalidSecurityToken.MismatchWithAccessKey")
    params, _ = signed_parts("GetAccountInfo", key_id=emulator.sts_key_id, secret=emulator.sts_key_secret)
    params["SecurityToken"] = emulator.sts_token  # sent, but not signed
    gateway_error(send(emulator.url, params, session=emulator.session), 400, "SignatureDoesNotMatch")


def test_other_paths_and_methods(emulator: EmulatorProcess) -> None:
    params, _ = signed_parts("GetAccountInfo", key_id=TEST_KEY_ID, secret=TEST_KEY_SECRET)
    other = emulator.session.post(f"{emulator.url}/v1/users", params=params, timeout=10)
    gateway_error(other, 404, "InvalidApi.NotFound")
    gateway_error(send(emulator.url, params, method="PUT", session=emulator.session), 405, "UnsupportedHTTPMethod")


# --- faults -----------------------------------------------------------------------------------------------------


def test_throttling_with_and_without_retry_after(emulator: EmulatorProcess) -> None:
    emulator.set_faults(throttle_rate=1.0, retry_after_ms=150, seed=4)
    answers = [api(emulator, "GetAccountInfo") for _ in range(12)]
    for answer in answers:
        gateway_error(answer, 400, "Throttling")
    assert {a.headers.get("x-acs-retry-after") for a in answers} == {None, "150"}
    assert emulator.stats()["faults"] == {"throttled": 12, "errors": 0, "dropped": 0}


def test_server_errors(emulator: EmulatorProcess) -> None:
    emulator.set_faults(error_rate=1.0, seed=2)
    codes = set()
    for _ in range(12):
        answer = api(emulator, "GetAccountInfo")
        codes.add((answer.status_code, answer.json()["Code"]))
        assert list(answer.json()) == GATEWAY_KEYS
    assert codes == {(500, "InternalError"), (503, "ServiceUnavailable")}
    assert emulator.stats()["faults"]["errors"] == 12


def test_a_dropped_connection_is_a_connection_error_not_a_500(emulator: EmulatorProcess) -> None:
    emulator.set_faults(drop_rate=1.0)
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        create(emulator, [user("lost-answer")])
    emulator.set_faults()
    assert [u["userId"] for u in emulator.users()] == ["lost-answer"]  # the work was done, the answer lost
    assert emulator.stats()["faults"]["dropped"] == 1


def test_faults_are_decided_only_after_a_valid_signature(emulator: EmulatorProcess) -> None:
    emulator.set_faults(throttle_rate=1.0)
    forged = call(emulator.url, "GetAccountInfo", key_id=TEST_KEY_ID, secret="wrong", session=emulator.session)
    gateway_error(forged, 400, "SignatureDoesNotMatch")
    assert emulator.stats()["faults"]["throttled"] == 0


def test_latency_is_added(emulator: EmulatorProcess) -> None:
    emulator.set_faults(latency_ms=300)
    started = time.monotonic()
    succeeded(api(emulator, "GetAccountInfo"))
    assert time.monotonic() - started >= 0.3


def test_same_seed_same_faults_over_http(emulator: EmulatorProcess) -> None:
    def run() -> list[int]:
        emulator.set_faults(throttle_rate=0.3, error_rate=0.3, seed=99)
        return [api(emulator, "GetAccountInfo").status_code for _ in range(15)]

    first = run()
    assert run() == first
    assert {200, 400} <= set(first)


# --- admin API ----------------------------------------------------------------------------------------------------


def test_admin_faults_stats_and_reset(emulator: EmulatorProcess) -> None:
    settings = emulator.set_faults(latency_ms=1, seed=5)
    assert settings == {
        "latencyMs": 1,
        "jitterMs": 0.0,
        "throttleRate": 0.0,
        "errorRate": 0.0,
        "dropRate": 0.0,
        "retryAfterMs": 100,
        "seed": 5,
    }
    assert emulator.admin("GET", "faults") == settings
    succeeded(create(emulator, [user("a"), user("b")]))
    succeeded(api(emulator, "GetUser", query={"UserId": "a"}))
    stats = emulator.stats()
    assert stats == {
        "calls": {"CreateUser": 1, "GetUser": 1},
        "createBatchSizes": [2],
        "deleteBatchSizes": [],
        "users": 2,
        "faults": {"throttled": 0, "errors": 0, "dropped": 0},
    }
    assert emulator.users()[0] == {**user("a"), "createTime": emulator.users()[0]["createTime"]}
    emulator.reset()
    assert emulator.stats()["users"] == 0 and emulator.stats()["calls"] == {}
    assert emulator.admin("GET", "faults")["latencyMs"] == 0


def test_admin_refuses_bad_input(emulator: EmulatorProcess) -> None:
    url = f"{emulator.url}/_emulator"
    assert emulator.session.put(f"{url}/faults", json={"throttleRate": 2}, timeout=10).status_code == 400
    assert emulator.session.put(f"{url}/faults", data=b"[1]", timeout=10).status_code == 400
    assert emulator.session.put(f"{url}/keys/nobody", json={"disabled": True}, timeout=10).status_code == 404
    assert emulator.session.put(f"{url}/capacity", json={"capacity": -1}, timeout=10).status_code == 400
    assert emulator.session.get(f"{url}/nothing", timeout=10).status_code == 404
    assert emulator.session.delete(f"{url}/users", timeout=10).status_code == 405


def test_admin_is_off_by_default_and_keys_come_from_the_environment() -> None:
    env = {**os.environ, ENV_EMULATOR_ACCESS_KEYS: "envkey:envsecret,off:offsecret"}
    process = start_emulator("--disabled-key", "off", admin=False, keys=(), env=env)
    try:
        for method, resource, status, code in [
            ("GET", "stats", 404, "InvalidApi.NotFound"),
            ("POST", "reset", 404, "InvalidApi.NotFound"),
            ("GET", "users", 404, "InvalidApi.NotFound"),
            ("PUT", "faults", 405, "UnsupportedHTTPMethod"),  # the gateway takes GET and POST only
        ]:
            response = process.session.request(method, f"{process.url}/_emulator/{resource}", json={}, timeout=10)
            gateway_error(response, status, code)
        ok = call(process.url, "GetAccountInfo", key_id="envkey", secret="envsecret", session=process.session)
        succeeded(ok)
        off = call(process.url, "GetAccountInfo", key_id="off", secret="offsecret", session=process.session)
        gateway_error(off, 400, "InvalidAccessKeyId.Inactive")
        # SIGINT stops it cleanly too.
        process.process.send_signal(signal.SIGINT)
        assert process.process.wait(10) == 0
    finally:
        process.stop()


def test_refuses_to_start_without_keys() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cvcsync_dev.emulator", "--port", "0"],
        env={name: value for name, value in os.environ.items() if name != ENV_EMULATOR_ACCESS_KEYS},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "CVC_EMULATOR_ACCESS_KEYS" in result.stderr and result.stdout == ""


# --- persistence, concurrency, in-process server ------------------------------------------------------------------


def test_sqlite_users_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "cvc.db"
    first = start_emulator("--db", str(db))
    try:
        succeeded(create(first, [user("kept", userMobile="13812341234"), user("other")]))
        created = succeeded(api(first, "GetUser", query={"UserId": "kept"}))["UserInfo"]
    finally:
        assert first.stop() == 0
    second = start_emulator("--db", str(db))
    try:
        again = succeeded(api(second, "GetUser", query={"UserId": "kept"}))["UserInfo"]
        assert again == created
        assert succeeded(api(second, "ListUsers"))["Data"]["TotalCount"] == 2
    finally:
        second.stop()


def test_concurrent_creates_from_many_threads(emulator: EmulatorProcess) -> None:
    failures: list[str] = []

    def worker(thread: int) -> None:
        session = requests.Session()
        session.trust_env = False
        for batch in range(5):
            users = [user(f"t{thread}-b{batch}-{n}") for n in range(50)]
            body = {"UserInfo": json.dumps(users, ensure_ascii=False), "Count": "50"}
            answer = call(
                emulator.url,
                "CreateUser",
                key_id=TEST_KEY_ID,
                secret=TEST_KEY_SECRET,
                session=session,
                body=body,
            )
            if answer.status_code != 200 or not answer.json()["Success"]:
                failures.append(answer.text)
        session.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    stats = emulator.stats()
    assert (stats["users"], stats["createBatchSizes"], stats["calls"]) == (2000, [50] * 40, {"CreateUser": 40})
    assert succeeded(api(emulator, "GetAccountInfo"))["AccountInfo"]["AccountApplicationNumber"] == 2000


def test_in_process_server() -> None:
    app = EmulatorApp([AccessKey("k", "s")], capacity=7, concurrent_max=3)
    with EmulatorServer(app, threads=2) as server:
        answer = call(server.url, "GetAccountInfo", key_id="k", secret="s")
        assert succeeded(answer)["AccountInfo"] == {
            "AccountConcurrentMax": 3,
            "AccountApplicationMax": 7,
            "AccountApplicationNumber": 0,
        }
    with pytest.raises(requests.exceptions.ConnectionError):
        call(server.url, "GetAccountInfo", key_id="k", secret="s", timeout=2)
