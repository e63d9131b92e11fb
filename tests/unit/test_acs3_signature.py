"""ACS3-HMAC-SHA256: the worked example of Alibaba Cloud's "V3 request structure and signature" page (also on FC
3.0's "签名机制" page), step by step; and the official SDK's signer over random requests."""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from alibabacloud_openapi_util.client import Client as OfficialSigner
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.adapters import acs3_signature as acs3

# The published example: ECS RunInstances, fixed key, date and nonce, parameters in the query, no body.
QUERY = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-content-sha256": EMPTY_HASH,
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-version": "2014-05-26",
}
CANONICAL_HEADERS = (
    "host:ecs.cn-shanghai.aliyuncs.com\n"
    "x-acs-action:RunInstances\n"
    f"x-acs-content-sha256:{EMPTY_HASH}\n"
    "x-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
    "x-acs-version:2014-05-26\n"
)
SIGNED = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
STRING_TO_SIGN = "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
AUTHORIZATION = f"ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={SIGNED},Signature={SIGNATURE}"


def test_golden_canonical_query() -> None:
    assert acs3.canonical_query(QUERY) == (
        "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
    )


def test_golden_hashed_payload_of_no_body() -> None:
    assert acs3.hashed_payload(b"") == EMPTY_HASH


def test_golden_canonical_and_signed_headers() -> None:
    assert acs3.canonical_headers(HEADERS) == CANONICAL_HEADERS
    assert acs3.signed_headers(HEADERS) == SIGNED


def test_golden_string_to_sign() -> None:
    request = acs3.canonical_request(
        "POST", acs3.canonical_uri("/"), acs3.canonical_query(QUERY), CANONICAL_HEADERS, SIGNED, EMPTY_HASH
    )
    assert acs3.string_to_sign(request) == STRING_TO_SIGN


def test_golden_signature_and_authorization() -> None:
    assert acs3.signature("YourAccessKeySecret", STRING_TO_SIGN) == SIGNATURE
    assert acs3.authorization("YourAccessKeyId", SIGNED, SIGNATURE) == AUTHORIZATION


def test_sign_composes_the_steps_into_the_published_header() -> None:
    headers = acs3.sign(
        "post",
        "/",
        QUERY,
        {"host": HEADERS["host"], "x-acs-action": "RunInstances", "x-acs-version": "2014-05-26"},
        b"",
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
        security_token=None,
        now=datetime(2023, 10, 26, 18, 22, 32, tzinfo=timezone(timedelta(hours=8))),  # the same instant
        nonce="3156853299f313e23d1673dc12e1703d",
    )
    assert headers == {**HEADERS, "Authorization": AUTHORIZATION}


def test_an_sts_token_is_sent_and_signed() -> None:
    headers = acs3.sign(
        "POST",
        "/",
        {},
        {"host": "h"},
        b"x",
        access_key_id="STS.a",
        access_key_secret="s",
        security_token="tok",
        now=datetime(2030, 1, 1, tzinfo=timezone.utc),
        nonce="n",
    )
    assert headers["x-acs-security-token"] == "tok"
    assert "x-acs-security-token" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("", "/"), ("/", "/"), ("/a b/c*d~e", "/a%20b/c%2Ad~e"), ("/函数/x", "/%E5%87%BD%E6%95%B0/x"), ("/a$b", "/a%24b")],
)
def test_canonical_uri_encodes_each_segment(path: str, canonical: str) -> None:
    assert acs3.canonical_uri(path) == canonical


def test_only_the_specs_headers_and_those_asked_for_are_signed() -> None:
    headers = {"Host": "h", "Content-Type": "t", "X-Acs-Date": "d", "User-Agent": "u", "x-fc-invocation-type": "Async"}
    assert acs3.headers_to_sign(headers) == {"host": "h", "content-type": "t", "x-acs-date": "d"}
    assert "x-fc-invocation-type" in acs3.headers_to_sign(headers, also=["X-Fc-Invocation-Type"])
    with pytest.raises(ValueError, match="host"):
        acs3.headers_to_sign({"Host": "a", "host": "b"})


def test_canonical_headers_lowercase_names_and_trim_values() -> None:
    assert acs3.canonical_headers({"X-Acs-B": "  two ", "Host": "\tone"}) == "host:one\nx-acs-b:two\n"


def test_the_date_is_utc_to_the_second() -> None:
    moment = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))
    assert acs3.format_date(moment) == "2024-03-01T04:59:59Z"


# The official SDK's signer over random requests. Its query encoder leaves names as they are, so names are drawn
# from the unreserved characters (ours encodes them, as the spec says); header values are what HTTP can carry.
NAME = st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=12)
VALUE = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
HEADER_VALUE = st.text(string.printable.strip() + " ", max_size=20).map(str.strip)
SEGMENT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    segments=st.lists(SEGMENT, max_size=4),
    query=st.dictionaries(NAME, VALUE, max_size=4),
    extra=st.dictionaries(NAME.map(lambda n: "x-acs-" + n.lower()), HEADER_VALUE, max_size=3),
    body=st.binary(max_size=64),
    secret=st.text(string.ascii_letters + string.digits, min_size=1, max_size=30),
    token=st.none() | st.text(string.ascii_letters + string.digits + "+/=", min_size=1, max_size=40),
)
def test_sign_agrees_with_the_official_sdk(
    segments: list[str], query: dict[str, str], extra: dict[str, str], body: bytes, secret: str, token: str | None
) -> None:
    path = "/" + "/".join(segments)
    base = {"host": "fc.example", "x-acs-action": "A", "x-acs-version": "V", "content-type": "application/json"}
    headers = acs3.sign(
        "POST",
        path,
        query,
        {**extra, **base},
        body,
        access_key_id="id",
        access_key_secret=secret,
        security_token=token,
        now=datetime(2030, 1, 1, tzinfo=timezone.utc),
        nonce="n",
    )
    signed = {name: value for name, value in headers.items() if name != "Authorization"}
    request = SimpleNamespace(method="POST", pathname=acs3.canonical_uri(path), query=query, headers=signed)
    official = OfficialSigner.get_authorization(request, "ACS3-HMAC-SHA256", acs3.hashed_payload(body), "id", secret)
    assert headers["Authorization"] == official
