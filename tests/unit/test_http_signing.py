"""CVCSYNC-HMAC-SHA256, step by step: the golden example of docs/http-api.md, canonical forms, and properties."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from cvcsync.http_api.signing import (
    HEADER_SIGNATURE,
    body_sha256,
    canonical_path,
    canonical_query,
    sign,
    signature,
    string_to_sign,
)

# The worked example in docs/http-api.md; the signature was computed with openssl, not with this code:
#   printf '%s' "$STRING_TO_SIGN" | openssl dgst -sha256 -hmac 'example-secret-0123456789abcdef'
GOLDEN_BODY = '{"userName":"张三","groupId":"88","groupName":"示例科技"}'.encode()
GOLDEN_BODY_SHA256 = "09fc1babdceb5445df14d3b5115817778c9175a6ec1e2635e96f78a136300cc9"
GOLDEN_STRING_TO_SIGN = (
    "CVCSYNC-HMAC-SHA256\nPUT\n/users/u-1001\nsource=hr%20portal&view=full\nops-2024\n1714528805\n"
    "6f1d2b8e5c3a4d9e8f0a1b2c3d4e5f60\n" + GOLDEN_BODY_SHA256
)
GOLDEN_SIGNATURE = "58ea35d42a02a366ac302aaa10eb6d3c85af337ddfe33f7637879807dba8bcd1"
GOLDEN_SECRET = "example-secret-0123456789abcdef"


def test_body_hash_of_the_golden_example() -> None:
    assert body_sha256(GOLDEN_BODY) == GOLDEN_BODY_SHA256
    assert body_sha256(b"") == hashlib.sha256(b"").hexdigest()


def test_string_to_sign_of_the_golden_example() -> None:
    text = string_to_sign(
        "put",
        "/users/u-1001",
        "view=full&source=hr+portal",
        key_id="ops-2024",
        timestamp=1714528805,
        nonce="6f1d2b8e5c3a4d9e8f0a1b2c3d4e5f60",
        body_hash=GOLDEN_BODY_SHA256,
    )
    assert text == GOLDEN_STRING_TO_SIGN


def test_signature_of_the_golden_example() -> None:
    assert signature(GOLDEN_SECRET, GOLDEN_STRING_TO_SIGN) == GOLDEN_SIGNATURE


def test_sign_composes_the_steps_into_four_headers() -> None:
    headers = sign(
        "PUT",
        "/users/u-1001",
        "view=full&source=hr%20portal",
        GOLDEN_BODY,
        key_id="ops-2024",
        secret=GOLDEN_SECRET,
        timestamp=1714528805,
        nonce="6f1d2b8e5c3a4d9e8f0a1b2c3d4e5f60",
    )
    assert headers == {
        "X-Cvcsync-Key-Id": "ops-2024",
        "X-Cvcsync-Timestamp": "1714528805",
        "X-Cvcsync-Nonce": "6f1d2b8e5c3a4d9e8f0a1b2c3d4e5f60",
        HEADER_SIGNATURE: GOLDEN_SIGNATURE,
    }


def test_canonical_path_encodes_each_decoded_segment() -> None:
    assert canonical_path("/users/张 三") == "/users/%E5%BC%A0%20%E4%B8%89"
    assert canonical_path("/users:delete") == "/users%3Adelete"
    assert canonical_path("/runs/a-b_c.d~e") == "/runs/a-b_c.d~e"


def test_canonical_query_sorts_decodes_and_reencodes() -> None:
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("deep") == "deep="
    assert canonical_query("q=%E5%BC%A0+x&q2=a%2Fb") == "q=%E5%BC%A0%20x&q2=a%2Fb"
    assert canonical_query("q=张") == "q=%E5%BC%A0"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    pairs=st.lists(st.tuples(_text.filter(bool), _text), max_size=6),
    order=st.randoms(use_true_random=False),
)
def test_canonical_query_ignores_order_and_encoding_choices(pairs: list[tuple[str, str]], order: object) -> None:
    plus_spaces = "&".join(f"{quote(n, safe='')}={quote(v, safe='').replace('%20', '+')}" for n, v in pairs)
    shuffled = list(pairs)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    percent_spaces = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in shuffled)
    assert canonical_query(plus_spaces) == canonical_query(percent_spaces)


@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
    path=st.lists(_text.filter(lambda s: "/" not in s), max_size=4).map(lambda parts: "/" + "/".join(parts)),
    body=st.binary(max_size=64),
    timestamp=st.integers(min_value=0, max_value=10**11),
)
def test_any_change_to_what_is_signed_changes_the_signature(
    method: str, path: str, body: bytes, timestamp: int
) -> None:
    def sig(m: str, p: str, b: bytes, t: int) -> str:
        headers = sign(m, p, "", b, key_id="k", secret="s" * 16, timestamp=t, nonce="n" * 16)
        return headers[HEADER_SIGNATURE]

    original = sig(method, path, body, timestamp)
    assert sig(method, path, body, timestamp) == original  # pure: same inputs, same signature
    assert sig("PATCH", path, body, timestamp) != original
    assert sig(method, path + "x", body, timestamp) != original
    assert sig(method, path, body + b"\0", timestamp) != original
    assert sig(method, path, body, timestamp + 1) != original
    expected = hmac.new(
        b"s" * 16,
        string_to_sign(
            method, path, "", key_id="k", timestamp=timestamp, nonce="n" * 16, body_hash=body_sha256(body)
        ).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert original == expected
