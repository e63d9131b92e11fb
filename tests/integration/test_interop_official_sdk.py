"""The official Alibaba Cloud Python SDK against the emulator: it is accepted, and it understands every refusal.

This is the proof that the emulator verifies what the real SDK signs (older SDK quirks included: ``RegionId``, an
empty ``SignatureType``, ``+`` for spaces in the form body) and answers in the shape the SDK parses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aliyunsdkaliyuncvc.request.v20191030 import (
    CreateUserRequest,
    DeleteUserRequest,
    GetAccountInfoRequest,
    GetUserRequest,
    ListUsersRequest,
)
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkcore.utils import parameter_helper

from cvcsync_dev.emulator import ERROR_CAPACITY_EXCEEDED, ERROR_USER_NOT_FOUND
from support.emulator import EmulatorProcess
from support.signing import stale_timestamp

USERS = [
    {
        "userId": "zhang.san",
        "userName": "张三",
        "groupId": "88",
        "groupName": "阿里巴巴",
        "departId": "1111",
        "departName": "行政部 & 后勤",
        "userEmail": "zhang+san@example.com",
        "userTel": "0571 1234 5678",
        "userMobile": "+86 13812341234",
        "userAvatarUrl": "https://example.com/a b.png?x=1&y=2",
    },
    {"userId": "li si", "userName": "李四 (Li Si) + 1", "groupId": "88", "groupName": "阿里巴巴"},
]


def prepared(emulator: EmulatorProcess, request: RpcRequest) -> RpcRequest:
    request.set_endpoint(f"127.0.0.1:{emulator.port}")
    request.set_protocol_type("http")
    return request


def do(client: AcsClient, emulator: EmulatorProcess, request: RpcRequest) -> dict[str, Any]:
    return dict(json.loads(client.do_action_with_exception(prepared(emulator, request))))


def server_error(client: AcsClient, emulator: EmulatorProcess, request: RpcRequest) -> ServerException:
    with pytest.raises(ServerException) as caught:
        client.do_action_with_exception(prepared(emulator, request))
    return caught.value


def create_request(users: list[dict[str, str]]) -> CreateUserRequest.CreateUserRequest:
    request = CreateUserRequest.CreateUserRequest()
    request.set_UserInfo(json.dumps(users, ensure_ascii=False))
    request.set_Count(len(users))
    return request


def get_request(user_id: str) -> GetUserRequest.GetUserRequest:
    request = GetUserRequest.GetUserRequest()
    request.set_UserId(user_id)
    return request


@pytest.fixture
def client(emulator: EmulatorProcess) -> Iterator[AcsClient]:
    made = AcsClient(emulator.access_key_id, emulator.access_key_secret, "cn-hangzhou")
    yield made
    made.session.close()


def test_create_get_list_delete_and_account_info(client: AcsClient, emulator: EmulatorProcess) -> None:
    created = do(client, emulator, create_request(USERS))
    assert (created["Success"], created["ErrorCode"], created["Message"]) == (True, 0, "successful!")

    info = do(client, emulator, get_request("zhang.san"))["UserInfo"]
    assert info["UserName"] == "张三"
    assert info["DepartName"] == "行政部 & 后勤"
    assert info["UserEmail"] == "zhang+san@example.com"
    assert info["UserTel"] == "0571 1234 5678"
    assert info["UserMobile"] == "+86 13812341234"
    assert info["UserAvatarUrl"] == "https://example.com/a b.png?x=1&y=2"
    assert isinstance(info["CreateTime"], int)
    assert do(client, emulator, get_request("li si"))["UserInfo"]["UserName"] == "李四 (Li Si) + 1"

    listing = ListUsersRequest.ListUsersRequest()
    listing.set_PageNumber(1)
    listing.set_PageSize(1)
    data = do(client, emulator, listing)["Data"]
    assert (data["TotalCount"], [u["UserId"] for u in data["UserInfos"]]) == (2, ["li si"])

    account = do(client, emulator, GetAccountInfoRequest.GetAccountInfoRequest())["AccountInfo"]
    assert account == {"AccountConcurrentMax": 100, "AccountApplicationMax": 100_000, "AccountApplicationNumber": 2}

    deletion = DeleteUserRequest.DeleteUserRequest()
    deletion.set_UserInfo(json.dumps([{"userId": "li si"}]))
    deletion.set_Count(1)
    assert do(client, emulator, deletion)["Success"] is True
    assert [u["userId"] for u in emulator.users()] == ["zhang.san"]
    assert emulator.stats()["calls"] == {
        "CreateUser": 1,
        "GetUser": 2,
        "ListUsers": 1,
        "GetAccountInfo": 1,
        "DeleteUser": 1,
    }


def test_business_errors_reach_the_sdk_as_answers(client: AcsClient, emulator: EmulatorProcess) -> None:
    # HTTP 200 with Success false: the SDK returns the body; telling it is an error is the caller's job.
    missing = do(client, emulator, get_request("nobody"))
    assert (missing["Success"], missing["ErrorCode"]) == (False, ERROR_USER_NOT_FOUND)
    emulator.set_capacity(1)
    full = do(client, emulator, create_request(USERS))
    assert (full["Success"], full["ErrorCode"]) == (False, ERROR_CAPACITY_EXCEEDED)


def test_wrong_secret(emulator: EmulatorProcess) -> None:
    # The emulator answers SignatureDoesNotMatch with its string to sign after the ':'; the SDK compares it with
    # its own and, finding them equal, reports the secret as wrong. So this also proves both strings are equal.
    wrong = AcsClient(emulator.access_key_id, "not-the-secret", "cn-hangzhou")
    error = server_error(wrong, emulator, get_request("zhang.san"))
    assert (error.get_http_status(), error.get_error_code()) == (400, "InvalidAccessKeySecret")
    assert error.get_request_id()


def test_signature_mismatch_reaches_the_sdk_intact(emulator: EmulatorProcess) -> None:
    # Sent as JSON rather than a form, the body is not a parameter to the gateway, so the server's string to sign
    # differs from the SDK's: the SDK keeps SignatureDoesNotMatch and the message, and does not crash on it.
    client = AcsClient(emulator.access_key_id, emulator.access_key_secret, "cn-hangzhou")
    request = create_request(USERS)
    request.set_content_type("application/json")
    error = server_error(client, emulator, request)
    assert (error.get_http_status(), error.get_error_code()) == (400, "SignatureDoesNotMatch")
    assert error.get_error_msg().startswith(
        "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&"
    )
    assert emulator.users() == []


def test_unknown_access_key(emulator: EmulatorProcess) -> None:
    stranger = AcsClient("no-such-key", "whatever", "cn-hangzhou")
    error = server_error(stranger, emulator, GetAccountInfoRequest.GetAccountInfoRequest())
    assert (error.get_http_status(), error.get_error_code()) == (404, "InvalidAccessKeyId.NotFound")


def test_replayed_nonce(client: AcsClient, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK makes a fresh nonce per attempt through parameter_helper.get_uuid: pin it to replay one.
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: "0123456789abcdef0123456789abcdef")
    assert do(client, emulator, create_request(USERS[:1]))["Success"] is True
    error = server_error(client, emulator, create_request(USERS[:1]))
    assert (error.get_http_status(), error.get_error_code()) == (400, "SignatureNonceUsed")
    assert emulator.stats()["createBatchSizes"] == [1]


def test_stale_timestamp(client: AcsClient, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: stale_timestamp(-20 * 60))
    error = server_error(client, emulator, GetAccountInfoRequest.GetAccountInfoRequest())
    assert (error.get_http_status(), error.get_error_code()) == (400, "InvalidTimeStamp.Expired")


def test_throttling_reaches_the_sdk(client: AcsClient, emulator: EmulatorProcess) -> None:
    emulator.set_faults(throttle_rate=1.0)
    error = server_error(client, emulator, GetAccountInfoRequest.GetAccountInfoRequest())
    assert (error.get_http_status(), error.get_error_code()) == (400, "Throttling")


def test_sts_credentials(emulator: EmulatorProcess) -> None:
    sts = AcsClient(
        region_id="cn-hangzhou",
        credential=StsTokenCredential(emulator.sts_key_id, emulator.sts_key_secret, emulator.sts_token),
    )
    assert do(sts, emulator, create_request(USERS))["Success"] is True
    assert do(sts, emulator, get_request("zhang.san"))["UserInfo"]["UserName"] == "张三"

    wrong = AcsClient(
        region_id="cn-hangzhou",
        credential=StsTokenCredential(emulator.sts_key_id, emulator.sts_key_secret, "not-the-token"),
    )
    error = server_error(wrong, emulator, get_request("zhang.san"))
    assert (error.get_http_status(), error.get_error_code()) == (400, "InvalidSecurityToken.MismatchWithAccessKey")
