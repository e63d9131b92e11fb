from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvcsync.inputs.records import FIELDS, RecordError, User, fast_user_json, parse_user, user_from_cvc

VALID = {
    "userId": "123",
    "userName": "张三",
    "groupId": "88",
    "groupName": "阿里巴巴",
    "departId": "1111",
    "departName": "行政部",
    "userEmail": "zhangsan@example.com",
    "userTel": "0571-12345678",
    "userMobile": "13812341234",
    "userAvatarUrl": "https://example.com/a.png",
}


def _problems(raw: dict[str, object], **kw: object) -> dict[str, str]:
    with pytest.raises(RecordError) as info:
        parse_user(raw, **kw)  # type: ignore[arg-type]
    return {p.field: p.reason for p in info.value.problems}


def test_the_documents_example_user_round_trips() -> None:
    user = parse_user(VALID)
    assert user.to_cvc() == VALID
    assert user.notices == ()


def test_values_are_trimmed_and_empty_optionals_left_out() -> None:
    user = parse_user({"userId": " 7 ", "userName": " 李四\u3000", "groupId": "1", "groupName": "g", "userTel": " "})
    assert user.to_cvc() == {"userId": "7", "userName": "李四", "groupId": "1", "groupName": "g"}


def test_every_missing_required_field_is_named_at_once() -> None:
    problems = _problems({"userName": ""})
    assert set(problems) == {"userId", "userName", "groupId", "groupName"}
    assert problems["userName"] == "is required and empty"
    assert problems["userId"] == "is required"


def test_error_message_names_position_user_and_field() -> None:
    with pytest.raises(RecordError) as info:
        parse_user({**VALID, "userEmail": "not-an-email"}, position="line 12")
    message = str(info.value)
    assert message.startswith("line 12: user '123': userEmail: is not an e-mail address")
    assert "not-an-email" not in message  # personal data is masked even in errors


def test_lengths_are_checked() -> None:
    assert "at most 64" in _problems({**VALID, "userId": "x" * 65})["userId"]


def test_control_characters_are_refused() -> None:
    assert "control characters" in _problems({**VALID, "userName": "a\x00b"})["userName"]


def test_phone_and_url_formats() -> None:
    problems = _problems({**VALID, "userMobile": "call me", "userAvatarUrl": "ftp://x"})
    assert set(problems) == {"userMobile", "userAvatarUrl"}
    assert parse_user({**VALID, "userMobile": "+86-138-1234-1234"}).user_mobile == "+86-138-1234-1234"


def test_non_text_values_are_refused_but_integers_accepted() -> None:
    assert parse_user({**VALID, "userId": 123}).user_id == "123"
    assert "must be text" in _problems({**VALID, "groupId": {"id": 1}})["groupId"]
    assert "must be text" in _problems({**VALID, "groupId": True})["groupId"]


def test_defaults_fill_the_enterprise_when_the_export_has_none() -> None:
    user = parse_user({"userId": "1", "userName": "王五"}, defaults={"groupId": "88", "groupName": "阿里巴巴"})
    assert (user.group_id, user.group_name) == ("88", "阿里巴巴")


def test_unknown_fields_are_reported_not_dropped_silently() -> None:
    user = parse_user({**VALID, "nickname": "x", "status": "在职"}, ignore=frozenset({"status"}))
    assert user.notices == ("unknown field 'nickname' ignored",)


def test_pascal_case_from_getuser_is_accepted() -> None:
    pascal = {k[0].upper() + k[1:]: v for k, v in VALID.items()} | {"CreateTime": 1571119775000}
    assert parse_user(pascal).to_cvc() == VALID
    assert user_from_cvc(pascal)["createTime"] == 1571119775000
    assert user_from_cvc(pascal)["userName"] == "张三"


def test_a_record_must_be_an_object() -> None:
    assert "(record)" in _problems(["not", "a", "dict"])  # type: ignore[arg-type]


def test_masked_hides_mobile_and_email() -> None:
    masked = parse_user(VALID).masked()
    assert masked["userMobile"] == "138****1234"
    assert masked["userEmail"] == "z***@example.com"


def test_content_hash_is_stable_and_sensitive() -> None:
    a, b = parse_user(VALID), parse_user(dict(reversed(list(VALID.items()))))
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != parse_user({**VALID, "departName": "财务部"}).content_hash()


@given(st.dictionaries(st.sampled_from([*FIELDS, "extra", "UserId"]), st.one_of(st.text(), st.integers(), st.none())))
def test_parse_user_either_returns_a_valid_user_or_names_fields(raw: dict[str, object]) -> None:
    try:
        user = parse_user(raw)
    except RecordError as exc:
        assert exc.problems
        assert all(p.field in (*FIELDS, "(record)") for p in exc.problems)
    else:
        assert isinstance(user, User)
        assert all(user.to_cvc()[f] for f in ("userId", "userName", "groupId", "groupName"))


field_values = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=8),
    st.sampled_from(["  a ", "a@b.co", "13800000001", "+86-138", "https://x.y/a.png", "bad mail", "x" * 70, "\x00"]),
)


@given(st.dictionaries(st.sampled_from([*FIELDS, "extra"]), field_values), st.sampled_from([{}, {"groupId": "88"}]))
def test_the_fast_path_agrees_with_parse_user(raw: dict[str, object], defaults: dict[str, str]) -> None:
    fast = fast_user_json(raw, defaults)
    try:
        user = parse_user(raw, defaults=defaults)
    except RecordError:
        assert fast is None
        return
    if fast is not None:  # None is allowed: the slow path then explains (or notes unknown keys)
        assert fast == (user.user_id, user.to_json())


def test_the_fast_path_takes_ordinary_records_and_leaves_oddities_to_parse_user() -> None:
    assert fast_user_json(VALID) == ("123", parse_user(VALID).to_json())
    assert fast_user_json({"userId": " 1 ", "userName": "a"}, GROUP_DEFAULTS) == (
        "1",
        parse_user({"userId": "1", "userName": "a"}, defaults=GROUP_DEFAULTS).to_json(),
    )
    assert fast_user_json({**VALID, "nickname": "x"}) is None  # unknown key: parse_user notes it
    assert fast_user_json({**VALID, "userEmail": "bad"}) is None  # parse_user says why
    assert fast_user_json({**VALID, "userId": 123}) is None


GROUP_DEFAULTS = {"groupId": "88", "groupName": "阿里巴巴"}
