from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvcsync.adapters import signature

GOLDEN_PARAMS = {
    "Format": "XML",
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Version": "2014-05-26",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
}
GOLDEN_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
    "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
    "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
)


def test_golden_string_to_sign() -> None:
    assert signature.string_to_sign("GET", GOLDEN_PARAMS) == GOLDEN_STRING_TO_SIGN


def test_golden_signature() -> None:
    assert signature.signature("testsecret", GOLDEN_STRING_TO_SIGN) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_sign_splits_nothing_between_query_and_body() -> None:
    query = {k: v for k, v in GOLDEN_PARAMS.items() if k != "Action"}
    assert signature.sign("GET", query, {"Action": "DescribeRegions"}, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [(" ", "%20"), ("*", "%2A"), ("~", "~"), ("+", "%2B"), ("/", "%2F"), ("张", "%E5%BC%A0"), ("a-_.", "a-_.")],
)
def test_percent_encode_follows_the_spec(raw: str, encoded: str) -> None:
    assert signature.percent_encode(raw) == encoded


def test_signature_parameter_is_never_signed() -> None:
    with_sig = {**GOLDEN_PARAMS, "Signature": "anything"}
    assert signature.canonical_query(with_sig) == signature.canonical_query(GOLDEN_PARAMS)


def test_empty_values_are_signed() -> None:
    assert signature.canonical_query({"SignatureType": "", "A": "1"}) == "A=1&SignatureType="


def test_names_sort_by_code_point_not_locale() -> None:
    assert signature.canonical_query({"b": "1", "B": "2", "a": "3"}) == "B=2&a=3&b=1"


def test_common_params_carry_clock_nonce_and_token() -> None:
    now = datetime(2024, 5, 1, 2, 0, 5, tzinfo=timezone.utc)
    params = signature.common_params(
        action="GetUser", version="2019-10-30", access_key_id="id", now=now, nonce="n-1", security_token="tok"
    )
    assert params["Timestamp"] == "2024-05-01T02:00:05Z"
    assert params["SignatureNonce"] == "n-1"
    assert params["SecurityToken"] == "tok"
    assert "SecurityToken" not in signature.common_params(
        action="GetUser", version="2019-10-30", access_key_id="id", now=now, nonce="n-1"
    )


def test_parse_timestamp_is_strict() -> None:
    assert signature.parse_timestamp("2016-02-23T12:46:24Z").year == 2016
    for bad in ("2016-02-23 12:46:24", "2016-02-23T12:46:24+08:00", "2016-02-23T12:46:24.123Z", ""):
        with pytest.raises(ValueError):
            signature.parse_timestamp(bad)


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_canonical_query_is_order_independent(params: dict[str, str]) -> None:
    reversed_items = list(reversed(list(params.items())))
    assert signature.canonical_query(reversed_items) == signature.canonical_query(params)


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_percent_encode_equals_the_specs_python_recipe(value: str) -> None:
    assert signature.percent_encode(value) == quote(value, safe="-_.~")


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_percent_encoding_leaves_only_unreserved_characters(value: str) -> None:
    encoded = signature.percent_encode(value)
    assert all(c.isascii() and (c.isalnum() or c in "-_.~%") for c in encoded)


form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(st.lists(st.tuples(form_text, form_text), max_size=6))
def test_parse_form_reads_what_a_client_encodes(pairs: list[tuple[str, str]]) -> None:
    encoded = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs).encode()
    expected = parse_qsl(encoded.decode(), keep_blank_values=True, errors="strict")
    assert signature.parse_form(encoded) == expected


@given(st.text(alphabet="ab%2Fz+=&\\x5C", max_size=30))
def test_parse_form_matches_parse_qsl_on_odd_input(raw: str) -> None:
    def outcome(parse: Any) -> Any:
        try:
            return parse()
        except UnicodeDecodeError:
            return "not UTF-8"

    ours = outcome(lambda: signature.parse_form(raw.encode()))
    assert ours == outcome(lambda: parse_qsl(raw, keep_blank_values=True, errors="strict"))


_TEXT = st.text(st.characters(exclude_categories=("Cs",)))


@given(st.lists(st.tuples(st.sampled_from(["A", "b", "Signature", "x y", "é", "UserInfo"]), _TEXT), max_size=6))
def test_string_to_sign_is_the_encoded_canonical_query_whatever_the_values(pairs: list[tuple[str, str]]) -> None:
    """string_to_sign builds from each value encoded twice; it must equal the spec's two steps, duplicates too."""
    expected = "POST&%2F&" + signature.percent_encode(signature.canonical_query(pairs))
    assert signature.string_to_sign("POST", pairs) == expected
    if len({name for name, _ in pairs}) == len(pairs):  # the client's way, from a mapping of encoded values
        encoded = {name: signature.percent_encode(value) for name, value in pairs}
        assert signature.string_to_sign_encoded("POST", encoded) == expected
