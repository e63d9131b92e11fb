from __future__ import annotations

import unicodedata

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


# --- the value rules every path shares (records.clean_field) -----------------------------------------------------


def test_full_width_codes_become_ascii() -> None:
    wide = {"userId": "ＢＳ００１", "userEmail": "zhaomin＠corp.example.cn", "userMobile": "１３８００１３８０００"}
    user = parse_user({**VALID, **wide})
    assert (user.user_id, user.user_email, user.user_mobile) == ("BS001", "zhaomin@corp.example.cn", "13800138000")
    assert parse_user({**VALID, "departId": "Ｄ１０", "userTel": "０５７１－８８８８"}).to_cvc()["departId"] == "D10"
    assert parse_user({**VALID, "userTel": "０５７１－８８８８"}).user_tel == "0571-8888"


def test_names_are_not_nfkc_normalised() -> None:
    assert parse_user({**VALID, "userName": "ＡＢＣ"}).user_name == "ＡＢＣ"  # a name is written as the person wants


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("userId", '="00123"', "00123"),
        ("userId", "'00123", "00123"),
        ("departId", "'0042", "0042"),
        ("userMobile", '="13800138051"', "13800138051"),
        ("userMobile", "'13800138052", "13800138052"),
        ("userTel", "'0571-88880001", "0571-88880001"),
        ("userMobile", '＝"13800138053"', "13800138053"),  # full-width, then Excel's mark
    ],
)
def test_excels_text_marks_are_undone_in_ids_and_phones(field: str, raw: str, expected: str) -> None:
    assert parse_user({**VALID, field: raw}).to_cvc()[field] == expected


def test_excels_text_marks_stay_in_names_and_emails() -> None:
    user = parse_user({**VALID, "userName": "'张三", "userEmail": "'o'brien'@example.com"})
    assert (user.user_name, user.user_email) == ("'张三", "'o'brien'@example.com")


@pytest.mark.parametrize("raw", ["1.21235E+09", "1.2345678901234568e+17", "1e+17", "1.5E10", "１.２１２３５Ｅ＋０９"])
@pytest.mark.parametrize("field", ["userId", "departId", "groupId"])
def test_scientific_notation_in_an_id_is_refused_naming_the_fix(field: str, raw: str) -> None:
    reason = _problems({**VALID, field: raw})[field]
    assert reason.startswith("Excel turned this column into a number (")
    assert reason.endswith("), which loses digits: format the column as Text, enter the ids again and export again")
    assert unicodedata.normalize("NFKC", raw) in reason  # an id is shown: enough to find the row


@pytest.mark.parametrize("field", ["userMobile", "userTel"])
def test_scientific_notation_in_a_phone_is_refused_and_masked_as_a_mask(field: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_user({**VALID, field: "1.38001E+10"}, position="line 9")
    [problem] = info.value.problems
    assert problem.reason == (
        "Excel turned this column into a number (masked: 1.38…E+10), which loses digits: "
        "format the column as Text, enter the ids again and export again"
    )
    assert "138****" not in str(info.value)  # never a mask that looks like a valid number


def test_scientific_notation_keeps_its_user_id_for_the_report() -> None:
    with pytest.raises(RecordError) as info:
        parse_user({**VALID, "userId": "1.21235E+09"}, position="line 3")
    assert info.value.user_id == "1.21235E+09"  # the plan keeps it: a refused row protects its user from deletion
    assert str(info.value).startswith("line 3: user '1.21235E+09': userId: Excel turned this column into a number")


@pytest.mark.parametrize("raw", ["1E001", "2E10", "E1001", "1.21235", "12e", "1.2.3E+4"])
def test_ids_that_only_resemble_scientific_notation_are_kept(raw: str) -> None:
    assert parse_user({**VALID, "userId": raw}).user_id == raw


@pytest.mark.parametrize(
    ("field", "number", "expected"),
    [
        ("userId", 1001, "1001"),
        ("userId", 1001.0, "1001"),
        ("userMobile", 13800138001, "13800138001"),
        ("userMobile", 13800138001.0, "13800138001"),
        ("userTel", 88880001.0, "88880001"),
        ("departId", 42.0, "42"),
        ("userMobile", 8613800138043, "8613800138043"),  # files go through header_mapping, which drops the 86
    ],
)
def test_numbers_in_ids_and_phones_become_exact_digits(field: str, number: float, expected: str) -> None:
    assert parse_user({**VALID, field: number}).to_cvc()[field] == expected


def test_numbers_that_lost_digits_or_have_a_fraction_are_refused() -> None:
    assert _problems({**VALID, "userId": 1.2345678901234568e17})["userId"] == (
        "is a number too large to be exact ('1.2345678901234568e+17'): send it as text"
    )
    assert _problems({**VALID, "userMobile": 13800.5})["userMobile"] == (
        "is a number with a fraction (masked: ***): send it as text"
    )
    assert _problems({**VALID, "userName": 3.0})["userName"] == "must be text, got float"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("黄\u3000强", "黄强"),
        ("黄 强", "黄强"),
        ("Li  Wei", "Li Wei"),
        ("Li\xa0Wei", "Li Wei"),
        ("Jane\u3000Doe", "Jane Doe"),
        ("山田 太郎", "山田太郎"),
        ("김 민수", "김 민수"),  # Hangul keeps its spaces
        ("王 Wei", "王 Wei"),
        ("研发 \u3000 中心", "研发中心"),
    ],
)
def test_name_spaces_are_tidied(raw: str, expected: str) -> None:
    assert parse_user({**VALID, "userName": raw}).user_name == expected
    assert parse_user({**VALID, "departName": raw}).depart_name == expected


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r", "\u2028", "\x0b", "\t"])
def test_a_line_break_inside_a_name_becomes_a_space_with_a_notice(brk: str) -> None:
    user = parse_user({**VALID, "userName": f"Anna{brk}Schmidt", "departName": f"研发{brk}中心"})
    assert (user.user_name, user.depart_name) == ("Anna Schmidt", "研发中心")
    what = "a tab" if brk == "\t" else "a line break"
    assert user.notices == (
        f"userName: {what} inside the value was replaced by a space",
        f"departName: {what} inside the value was replaced by a space",
    )


def test_a_line_break_at_the_edge_is_trimmed_without_a_notice() -> None:
    assert parse_user({**VALID, "userName": "张三\r\n"}).notices == ()


def test_other_control_characters_in_a_name_are_still_refused() -> None:
    assert _problems({**VALID, "userName": "a\x00b"})["userName"].startswith("contains control characters (NUL")
    assert "control characters" in _problems({**VALID, "departName": "a\x1bb"})["departName"]


@pytest.mark.parametrize("field", ["userId", "userEmail", "userMobile", "userAvatarUrl"])
def test_a_line_break_inside_a_code_is_refused(field: str) -> None:
    assert "control characters (line breaks, tabs or NUL)" in _problems({**VALID, field: "ab\ncd"})[field]


def test_masks_say_they_are_masks_and_ids_are_previewed() -> None:
    problems = _problems({**VALID, "userEmail": "alice.example.com", "userMobile": "138-0011-0abc", "userId": "E\n1"})
    assert problems["userEmail"] == "is not an e-mail address (masked: ***)"
    assert problems["userMobile"] == "is not a phone number (masked: 138****0110): digits, +, -, spaces"
    assert problems["userId"] == "contains control characters (line breaks, tabs or NUL): 'E\\n1'"


def test_one_problem_per_field() -> None:
    assert list(_problems({**VALID, "userMobile": "1.38001E+10"})) == ["userMobile"]  # not also "not a phone"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("userId", "ＢＳ００１"),
        ("userId", "'0012"),
        ("userId", '="0012"'),
        ("userId", "1.21235E+09"),
        ("departId", "'D1"),
        ("userMobile", "'13800138052"),
        ("userMobile", "1.38001E+10"),
        ("userEmail", "a＠b.cn"),
        ("userName", "黄\u3000强"),
        ("userName", "黄 强"),
        ("userName", "Li  Wei"),
        ("userName", "Anna\u2028Schmidt"),
        ("userName", "Anna\x85Schmidt"),
        ("departName", "研发\n中心"),
        ("groupName", "示例\xa0科技"),
        ("userId", 1001.0),
    ],
)
def test_the_fast_path_leaves_every_clean_up_to_parse_user(field: str, value: object) -> None:
    raw = {**VALID, field: value}
    assert fast_user_json(raw) is None
    try:
        parse_user(raw)
    except RecordError:
        return
    assert parse_user(raw).to_cvc()[field] != value


cleanup_values = st.sampled_from(
    [
        "ＢＳ００１", "'0012", '="0012"', "1.21235E+09", "1E001", "1.38001E+10", "'13800138052", "a＠b.cn",
        "黄\u3000强", "黄 强", "Li  Wei", "a\u2028b", "a\nb", "a\tb", "\xa0x", 13800138001.0, 1.5, 1e17,
        "김 민수", "王 Wei",
    ]
)  # fmt: skip


@given(
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), st.one_of(field_values, cleanup_values)),
    st.sampled_from([{}, {"groupId": "88"}, GROUP_DEFAULTS]),
)
def test_the_fast_path_agrees_with_parse_user_on_values_to_clean_up(
    raw: dict[str, object], defaults: dict[str, str]
) -> None:
    fast = fast_user_json(raw, defaults)
    try:
        user = parse_user(raw, defaults=defaults)
    except RecordError:
        assert fast is None
        return
    if fast is not None:
        assert fast == (user.user_id, user.to_json())


@given(st.dictionaries(st.sampled_from(FIELDS), st.one_of(field_values, cleanup_values)))
def test_the_clean_up_is_stable(raw: dict[str, object]) -> None:
    """What parse_user made of a record, parsed again, is the same user: the clean-up is idempotent."""
    try:
        user = parse_user(raw, defaults=GROUP_DEFAULTS)
    except RecordError:
        return
    assert parse_user(user.to_cvc()) == user
