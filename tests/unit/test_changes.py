"""The user-change event: one test per accepted body shape and per rejection rule, the schema and the parser in
agreement, and properties: any JSON gives changes or MalformedMessage, and personal data never shows in a reason."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.change_message import MAX_BODY_BYTES, MAX_CHANGES
from cvcsync.inputs.changes import (
    ChangeProblem,
    MalformedMessage,
    UserChange,
    looks_like_change_body,
    parse_changes,
)
from cvcsync.inputs.events.queue import parse_queue_event
from cvcsync.inputs.records import User
from support.events import load_event, sample_paths

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "user-change-event.schema.json"
SCHEMA = orjson.loads(SCHEMA_PATH.read_bytes())
VALIDATOR = Draft202012Validator(SCHEMA)
DEFAULTS = {"groupId": "88", "groupName": "Acme"}

ANN = {"userId": "u-1", "userName": "Ann", "groupId": "88", "groupName": "Acme"}
BOB = {"userId": "u-2", "userName": "Bob", "groupId": "88", "groupName": "Acme"}
ANN_USER = User("u-1", "Ann", "88", "Acme")
BOB_USER = User("u-2", "Bob", "88", "Acme")
T0 = datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc)


def text(value: Any) -> str:
    return orjson.dumps(value).decode()


def refused(body: Any, **kwargs: Any) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as caught:
        parse_changes(body, **kwargs)
    return caught.value


# --- accepted shapes -----------------------------------------------------------------------------------------------


def test_single_upsert_change() -> None:
    body = {"specversion": "1", "type": "upsert", "eventId": "e-1", "occurredAt": "2024-05-01T02:00:00Z",
            "source": "hr-system", "user": ANN}  # fmt: skip
    assert parse_changes(text(body)) == [UserChange("upsert", "u-1", ANN_USER, "e-1", T0, "hr-system", "change 1")]


def test_single_delete_change() -> None:
    got = parse_changes(text({"type": "delete", "userId": "u-9", "eventId": "e-2"}))
    assert got == [UserChange("delete", "u-9", None, "e-2", None, None, "change 1")]


def test_action_is_an_alias_of_type() -> None:
    assert parse_changes(text({"action": "delete", "userId": "u-9"}))[0].op == "delete"
    assert parse_changes(text({"action": "upsert", "user": ANN}))[0].user == ANN_USER


def test_upsert_user_id_may_stand_beside_a_partial_user() -> None:
    got = parse_changes(text({"type": "upsert", "userId": "u-1", "user": {"userName": "Ann"}}), defaults=DEFAULTS)
    assert got[0].user == ANN_USER
    assert got[0].user_id == "u-1"


def test_upsert_user_id_may_repeat_the_users_own() -> None:
    assert parse_changes(text({"type": "upsert", "userId": "u-1", "user": ANN}))[0].user == ANN_USER


def test_delete_may_name_the_user_inside_user() -> None:
    got = parse_changes(text({"type": "delete", "user": {"userId": "u-9", "userName": "ignored"}}))
    assert (got[0].user_id, got[0].user) == ("u-9", None)


def test_batch_of_changes_in_order() -> None:
    body = {"specversion": "1", "changes": [{"type": "upsert", "user": ANN}, {"type": "delete", "userId": "u-2"}]}
    got = parse_changes(text(body), message_id="m-7")
    assert [(c.op, c.user_id, c.position) for c in got] == [
        ("upsert", "u-1", "message m-7 change 1"),
        ("delete", "u-2", "message m-7 change 2"),
    ]


def test_bare_user_object_is_an_upsert() -> None:
    assert parse_changes(text(ANN)) == [UserChange("upsert", "u-1", ANN_USER, None, None, None, "change 1")]


def test_bare_user_in_getuser_pascal_case() -> None:
    body = {"UserId": "u-1", "UserName": "Ann", "GroupId": "88", "GroupName": "Acme", "CreateTime": "2024-05-01"}
    assert parse_changes(text(body))[0].user == ANN_USER


def test_the_documents_userinfo_list_is_upserts() -> None:
    got = parse_changes(load_event("users/document-example.json", raw=True))
    assert [(c.op, c.user_id) for c in got] == [("upsert", "123"), ("upsert", "456")]
    assert got[0].user is not None and got[0].user.user_mobile == "13812341234"


def test_list_of_change_objects() -> None:
    got = parse_changes(text([{"type": "delete", "userId": "u-2"}, {"type": "upsert", "user": ANN}]))
    assert [(c.op, c.user_id) for c in got] == [("delete", "u-2"), ("upsert", "u-1")]


def test_list_may_mix_changes_and_users() -> None:
    got = parse_changes(text([ANN, {"type": "delete", "userId": "u-2"}, BOB]))
    assert [(c.op, c.user_id) for c in got] == [("upsert", "u-1"), ("delete", "u-2"), ("upsert", "u-2")]


def test_batch_items_may_be_bare_users() -> None:
    assert [c.user for c in parse_changes(text({"changes": [ANN, BOB]}))] == [ANN_USER, BOB_USER]


@pytest.mark.parametrize("form", ["bytes", "str", "decoded"])
def test_bytes_text_and_decoded_bodies_read_alike(form: str) -> None:
    body: Any = {"changes": [{"type": "upsert", "user": ANN}, {"type": "delete", "userId": "u-2"}]}
    value = {"bytes": orjson.dumps(body), "str": text(body), "decoded": body}[form]
    assert [(c.op, c.user_id) for c in parse_changes(value)] == [("upsert", "u-1"), ("delete", "u-2")]


def test_a_byte_order_mark_is_ignored() -> None:
    assert parse_changes(b"\xef\xbb\xbf" + orjson.dumps(ANN))[0].user == ANN_USER


def test_null_fields_are_as_if_absent() -> None:
    body = {"specversion": None, "type": "delete", "userId": "u-9", "user": None, "eventId": None,
            "occurredAt": None, "source": None}  # fmt: skip
    assert parse_changes(text(body)) == [UserChange("delete", "u-9", None, None, None, None, "change 1")]


def test_defaults_fill_group_fields() -> None:
    got = parse_changes(text({"type": "upsert", "user": {"userId": "u-1", "userName": "Ann"}}), defaults=DEFAULTS)
    assert got[0].user == ANN_USER


def test_text_fields_are_trimmed() -> None:
    got = parse_changes(text({"type": "delete", "userId": " u-9 ", "eventId": " e-1 ", "source": " hr "}))
    assert (got[0].user_id, got[0].event_id, got[0].source) == ("u-9", "e-1", "hr")


def test_numeric_user_ids_are_read_as_text() -> None:
    assert parse_changes(text({"type": "delete", "userId": 1001}))[0].user_id == "1001"


def test_unknown_user_fields_become_notices() -> None:
    got = parse_changes(text({"type": "upsert", "user": {**ANN, "nickname": "A"}}))
    assert got[0].user is not None and got[0].user.notices == ("unknown field 'nickname' ignored",)


# --- occurredAt ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T02:00:00Z", T0),
        ("2024-05-01T10:00:00+08:00", T0),
        ("2024-04-30T21:00:00-0500", T0),
        ("2024-05-01 02:00Z", T0),
        ("2024-05-01t02:00:00z", T0),
        ("2024-05-01T02:00:00.123456789Z", T0 + timedelta(microseconds=123456)),
        (1714528800000, T0),
        (1714528800123, T0 + timedelta(milliseconds=123)),
        (1714528800000.0, T0),
    ],
)
def test_occurred_at_is_utc(value: Any, expected: datetime) -> None:
    got = parse_changes(text({"type": "delete", "userId": "u", "occurredAt": value}))[0].occurred_at
    assert got == expected
    assert got is not None and got.utcoffset() == timedelta(0)


def test_missing_occurred_at_takes_the_transports_time() -> None:
    published = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    got = parse_changes(text([{"type": "delete", "userId": "u"}, ANN]), received_at=published)
    assert [c.occurred_at for c in got] == [T0, T0]
    assert got[0].occurred_at is not None and got[0].occurred_at.tzinfo == timezone.utc


def test_the_bodys_occurred_at_wins_over_the_transports() -> None:
    later = T0 + timedelta(hours=1)
    body = {"type": "delete", "userId": "u", "occurredAt": "2024-05-01T02:00:00Z"}
    assert parse_changes(text(body), received_at=later)[0].occurred_at == T0


def test_received_at_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_changes(text(ANN), received_at=datetime(2024, 5, 1))


# --- rejections: the body as a whole --------------------------------------------------------------------------------


def test_malformed_message_is_permanent_invalid_input() -> None:
    exc = refused("not json")
    assert isinstance(exc, InvalidInputError)
    assert (exc.code, exc.retryable) == ("MalformedMessage", False)


def test_not_json() -> None:
    assert str(refused("{'type': 'upsert'}")).startswith("body: is not JSON (")


def test_empty_body() -> None:
    assert str(refused(b"  \n")) == "body: is empty"


def test_nul_byte() -> None:
    assert str(refused(b'{"type":"delete","userId":"u\x00"}')) == "body: contains a NUL byte"
    assert str(refused('{"type":"delete","userId":"u"}\x00')) == "body: contains a NUL byte"


def test_not_utf8() -> None:
    assert str(refused(b'{"type":"delete","userId":"\xff"}')) == "body: is not UTF-8 text (bad byte at offset 27)"


def test_lone_surrogate() -> None:
    assert "lone surrogate" in str(refused('{"type":"delete","userId":"\ud800"}'))


def test_huge_body_names_its_size() -> None:
    body = text({"type": "delete", "userId": "u", "source": "x" * MAX_BODY_BYTES})
    assert str(refused(body)) == f"body: is {len(body)} bytes; at most 262144 allowed"


def test_size_counts_utf8_bytes_not_characters() -> None:
    body = text({"type": "delete", "userId": "u", "source": "张" * (MAX_BODY_BYTES // 3)})
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    assert "bytes; at most 262144 allowed" in str(refused(body))


@pytest.mark.parametrize("depth", [9, 2000])
def test_deep_nesting_as_text(depth: int) -> None:
    assert str(refused("[" * depth + "]" * depth)) == "body: is nested deeper than 8 levels"


def test_deep_nesting_when_decoded() -> None:
    value: Any = "leaf"
    for _ in range(20):
        value = {"x": value}
    assert str(refused({**ANN, "extra": value})) == "body: is nested deeper than 8 levels"


def test_a_cyclic_decoded_body_is_refused_not_looped() -> None:
    body: dict[str, Any] = {"type": "upsert"}
    body["user"] = body
    assert str(refused(body)) == "body: is nested deeper than 8 levels"


@pytest.mark.parametrize(("body", "kind"), [("42", "number"), ('"upsert"', "string"), ("null", "null"),
                                            ("true", "boolean")])  # fmt: skip
def test_json_scalar(body: str, kind: str) -> None:
    assert str(refused(body)) == f"body: is a JSON {kind}, not a change object or a list of changes"


def test_object_of_no_known_shape_names_its_keys_only() -> None:
    message = str(refused(text({"op": "add", "who": "alice@example.com"})))
    assert message.startswith("body: is not a user change:")
    assert message.endswith("keys seen ['op', 'who']")
    assert "alice" not in message


def test_not_a_body_type_at_all() -> None:
    assert str(refused(3.5)) == "body: must be JSON text, an object or a list, not number"


def test_empty_list() -> None:
    assert str(refused("[]")) == "body: holds no change"


def test_empty_batch() -> None:
    assert str(refused(text({"changes": []}))) == "changes: holds no change"


def test_batch_changes_must_be_a_list() -> None:
    assert str(refused(text({"changes": {"type": "delete"}}))) == "changes: must be an array of changes, got object"


def test_too_many_changes() -> None:
    body = {"changes": [{"type": "delete", "userId": f"u-{n}"} for n in range(MAX_CHANGES + 1)]}
    assert str(refused(text(body))) == "changes: holds 1001 changes; at most 1000 in one message"
    assert len(parse_changes(text({"changes": body["changes"][:MAX_CHANGES]}))) == MAX_CHANGES


def test_unknown_batch_field() -> None:
    exc = refused(text({"changes": [ANN], "type": "upsert"}))
    assert str(exc) == 'type: is not a field of a batch (it holds "changes" and "specversion")'


def test_batch_of_another_version() -> None:
    assert str(refused(text({"specversion": "2", "changes": [ANN]}))) == (
        "specversion: is '2'; this reader knows version \"1\" only"
    )


# --- rejections: one change --------------------------------------------------------------------------------------


def test_fc_sample_upsert_without_user_name_is_malformed_with_its_reasons() -> None:
    body = load_event("fc/queue-mns-topic-json.json")["Message"]
    exc = refused(body)
    assert str(exc) == (
        'change 1: email: is not a field of a change (a user\'s fields go inside "user"); '
        "change 1: user: userName: is required; change 1: user: groupId: is required; "
        "change 1: user: groupName: is required"
    )
    assert "alice" not in str(exc)


def test_upsert_without_user_name_even_with_defaults() -> None:
    assert str(refused(text({"action": "upsert", "userId": "u-1004"}), defaults=DEFAULTS)) == (
        "change 1: user: userName: is required"
    )


def test_specversion_other_than_1() -> None:
    assert str(refused(text({"specversion": 1, "type": "delete", "userId": "u"}))) == (
        'change 1: specversion: is a JSON number; this reader knows version "1" only'
    )


def test_type_missing() -> None:
    assert str(refused(text({"eventId": "e", "userId": "u"}))) == 'change 1: type: is required: "upsert" or "delete"'


@pytest.mark.parametrize(("value", "shown"), [("create", "'create'"), (None, "a JSON null"), (1, "a JSON number")])
def test_type_invalid(value: Any, shown: str) -> None:
    assert str(refused(text({"type": value, "userId": "u"}))) == (
        f'change 1: type: must be "upsert" or "delete", got {shown}'
    )


def test_type_and_action_together() -> None:
    assert str(refused(text({"type": "delete", "action": "delete", "userId": "u"}))) == (
        'change 1: action: stands for "type": give one of them, not both'
    )


def test_unknown_change_field() -> None:
    assert str(refused(text({"type": "delete", "userId": "u", "occuredAt": "2024-05-01T02:00:00Z"}))) == (
        'change 1: occuredAt: is not a field of a change (a user\'s fields go inside "user")'
    )


def test_batches_do_not_nest() -> None:
    assert str(refused(text([{"type": "delete", "userId": "u", "changes": []}]))) == (
        "change 1: changes: batches do not nest: a change holds no changes"
    )


def test_item_that_is_not_an_object() -> None:
    assert str(refused(text([ANN, "u-2"]))) == "change 2: must be an object, got string"


def test_upsert_without_user() -> None:
    assert str(refused(text({"type": "upsert", "eventId": "e"}))) == (
        "change 1: user: is required for an upsert: an object with the user's fields"
    )


def test_user_must_be_an_object() -> None:
    assert str(refused(text({"type": "upsert", "user": "u-1"}))) == "change 1: user: must be an object, got string"


def test_invalid_user_fields_are_all_named() -> None:
    exc = refused(text({"type": "upsert", "user": {**ANN, "userName": "", "userAvatarUrl": "ftp://x"}}))
    assert [(p.change, p.field) for p in exc.problems] == [(1, "user.userName"), (1, "user.userAvatarUrl")]


def test_user_ids_that_disagree() -> None:
    assert str(refused(text({"type": "upsert", "userId": "u-2", "user": ANN}))) == (
        "change 1: userId: differs from user.userId"
    )
    assert str(refused(text({"type": "delete", "userId": "u-2", "user": {"userId": "u-1"}}))) == (
        "change 1: userId: differs from user.userId"
    )


def test_delete_without_user_id() -> None:
    assert str(refused(text({"type": "delete", "eventId": "e"}))) == "change 1: userId: is required for a delete"


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("", "is empty (leave it out instead)"),
        ("x" * 65, "is 65 characters long; at most 64 allowed"),
        ("u\n1", "contains control characters (line breaks, tabs or NUL)"),
        (True, "must be text, got boolean"),
        (2**300, "is a number too large to be an id"),
    ],
)
def test_delete_user_id_rules(user_id: Any, reason: str) -> None:
    assert str(refused({"type": "delete", "userId": user_id})) == f"change 1: userId: {reason}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2024-05-01T02:00:00", "not an ISO-8601 time with a timezone (add Z or an offset such as +08:00)"),
        ("2024-02-30T02:00:00Z", "not an ISO-8601 time with a timezone"),
        ("yesterday", "not an ISO-8601 time with a timezone"),
        ("2024-05-01T25:00:00Z", "not an ISO-8601 time with a timezone"),
        ("2024-05-01T02:00:00+24:00", "not an ISO-8601 time with a timezone"),
        ("２０２４-05-01T02:00:00Z", "not an ISO-8601 time with a timezone"),
        (1714528800, "is before 1973 in epoch milliseconds: epoch seconds? send milliseconds"),
        (-1, "is out of range for epoch milliseconds (100000000000..253402300799999)"),
        (253402300800000, "is out of range for epoch milliseconds (100000000000..253402300799999)"),
        (
            1714528800000.5,
            "must be an ISO-8601 time with a timezone or epoch milliseconds, got a number with a fraction",
        ),
        (True, "must be an ISO-8601 time with a timezone or epoch milliseconds, got boolean"),
        ({"at": 1}, "must be an ISO-8601 time with a timezone or epoch milliseconds, got object"),
    ],
)
def test_occurred_at_rules(value: Any, reason: str) -> None:
    body = {"changes": [{"type": "delete", "userId": "u"}, {"type": "delete", "userId": "u", "occurredAt": value}]}
    assert str(refused(text(body))) == f"change 2: occurredAt: {reason}"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("eventId", "", "is empty (leave it out instead)"),
        ("eventId", "e" * 129, "is 129 characters long; at most 128 allowed"),
        ("eventId", "e\t1", "contains control characters (line breaks, tabs or NUL)"),
        ("eventId", 7, "must be text, got number"),
        ("source", ["hr"], "must be text, got array"),
        ("source", "s" * 257, "is 257 characters long; at most 256 allowed"),
    ],
)
def test_event_id_and_source_rules(field: str, value: Any, reason: str) -> None:
    assert str(refused(text({"type": "delete", "userId": "u", field: value}))) == f"change 1: {field}: {reason}"


# --- atomicity, reporting ----------------------------------------------------------------------------------------


def test_batch_is_atomic_one_bad_change_refuses_the_message() -> None:
    body = {"changes": [{"type": "upsert", "user": ANN}, {"type": "upsert", "user": {"userId": "u-2"}},
                        {"type": "delete", "userId": "u-3"}]}  # fmt: skip
    exc = refused(text(body), message_id="m-1", defaults=DEFAULTS)
    assert exc.problems == [ChangeProblem(2, "user.userName", "is required")]
    assert exc.message_id == "m-1"
    assert str(exc) == "change 2: user: userName: is required"


def test_every_problem_of_every_change_is_listed() -> None:
    body = [{"type": "delete"}, {"type": "upsert", "user": {"userId": "u"}, "occurredAt": "then"}]
    exc = refused(text(body), defaults=DEFAULTS)
    assert [(p.change, p.field) for p in exc.problems] == [(1, "userId"), (2, "occurredAt"), (2, "user.userName")]
    assert exc.to_dict() == {
        "code": "MalformedMessage",
        "message": str(exc),
        "retryable": False,
        "messageId": None,
        "problems": [
            {"change": 1, "field": "userId", "reason": "is required for a delete"},
            {"change": 2, "field": "occurredAt", "reason": "not an ISO-8601 time with a timezone"},
            {"change": 2, "field": "user.userName", "reason": "is required"},
        ],
    }


def test_the_message_shows_ten_problems_and_counts_the_rest() -> None:
    exc = refused(text([{"type": "delete"}] * 25))
    assert len(exc.problems) == 25
    assert str(exc).count("is required for a delete") == 10
    assert str(exc).endswith("; and 15 more problems")


# --- personal data --------------------------------------------------------------------------------------------------


def test_invalid_email_and_mobile_are_masked_in_reasons() -> None:
    user = {**ANN, "userEmail": "alice.smith@example", "userMobile": "13800001234 ext 9"}
    exc = refused(text({"type": "upsert", "user": user}))
    message = str(exc) + text(exc.to_dict())
    assert "a***@example" in message
    assert "138****2349" in message
    for secret in ("alice.smith", "13800001234"):
        assert secret not in message


def test_personal_data_in_keys_and_types_is_not_echoed() -> None:
    body = {"type": "bob@example.com", "alice@example.com": 1, "13912345678": 2, "userId": "u"}
    message = str(refused(text(body)))
    assert "got a text of 15 characters" in message
    assert message.count("<a field name of") == 2
    for secret in ("bob", "alice", "13912345678"):
        assert secret not in message


emails = st.emails()
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    secret=st.one_of(emails, mobiles),
    place=st.sampled_from(
        [
            "type",
            "specversion",
            "key",
            "eventId",
            "source",
            "userId",
            "occurredAt",
            "userEmail",
            "userMobile",
            "userName",
            "groupId",
            "batchKey",
        ]
    ),
)
def test_personal_data_never_shows_in_a_reason(secret: str, place: str) -> None:
    change: dict[str, Any] = {"type": "upsert", "user": {"userId": "u", "userName": "x" * 200}}
    if place == "key":
        change[secret] = 1
    elif place in ("userEmail", "userMobile", "userName", "groupId"):
        change["user"][place] = secret + " !"
    else:
        change[place] = secret
    body: Any = {"changes": [change], secret: 1} if place == "batchKey" else change
    with pytest.raises(MalformedMessage) as caught:
        parse_changes(text(body))
    message = str(caught.value) + text(caught.value.to_dict())
    assert secret not in message
    if "@" in secret:
        assert secret.split("@")[0] + "@" not in message


# --- the schema -----------------------------------------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def sample_bodies() -> list[tuple[str, str]]:
    """Every message body of the queue samples, as the queue reader hands it over."""
    out = []
    for path in sample_paths("fc", "aws"):
        if not path.rsplit("/", 1)[-1].startswith("queue-"):
            continue
        for message in parse_queue_event(load_event(path, raw=True)).messages:
            out.append((f"{path} {message.message_id}", message.body))
    return out


SAMPLE_BODIES = sample_bodies()


@pytest.mark.parametrize(("where", "body"), SAMPLE_BODIES, ids=[where for where, _ in SAMPLE_BODIES])
def test_sample_bodies_the_parser_accepts_match_the_schema(where: str, body: str) -> None:
    try:
        parse_changes(body)
    except MalformedMessage:
        assert not VALIDATOR.is_valid(orjson.loads(body))
    else:
        assert VALIDATOR.is_valid(orjson.loads(body)), [e.message for e in VALIDATOR.iter_errors(orjson.loads(body))]


def test_the_version_1_samples_and_the_reference_deletes_are_valid() -> None:
    """15 of 24 bodies: the 11 written to this format, and the FC reference samples' 4 deletes; the reference
    upserts (``{"action": "upsert", "userId": ...}``, no user) are not."""
    valid = [where for where, body in SAMPLE_BODIES if VALIDATOR.is_valid(orjson.loads(body))]
    assert (len(valid), len(SAMPLE_BODIES)) == (15, 24)


def test_the_documentation_example_is_valid() -> None:
    doc = (SCHEMA_PATH.parent / "user-change-event.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    assert VALIDATOR.is_valid(json.loads(example))
    assert [c.op for c in parse_changes(example)] == ["upsert", "delete"]


VALID = [
    {"type": "upsert", "user": ANN},
    {"action": "delete", "userId": "u"},
    {"type": "delete", "user": {"userId": "u"}},
    {"type": "upsert", "userId": "u-1", "user": {"userName": "Ann"}},
    {"specversion": "1", "type": "delete", "userId": "u", "eventId": "e", "occurredAt": 1714528800000, "source": "hr"},
    {"type": "delete", "userId": "u", "occurredAt": "2024-05-01T10:00:00+08:00"},
    {"type": "delete", "userId": "u", "eventId": None, "occurredAt": None, "source": None, "specversion": None},
    {"changes": [{"type": "upsert", "user": ANN}, BOB]},
    {"specversion": "1", "changes": [{"type": "delete", "userId": "u"}]},
    ANN,
    {"userId": "u-1", "userName": "Ann"},
    [ANN, BOB],
    [{"type": "delete", "userId": "u"}, ANN],
    {"type": "upsert", "user": {**ANN, "userEmail": "ann@example.com", "userMobile": "+86 138 0000 1234"}},
    {"type": "upsert", "user": {**ANN, "userEmail": "", "departId": "", "userAvatarUrl": "https://x.example/a.png"}},
    {"type": "upsert", "user": {**ANN, "userName": "a\nb"}},  # a line break in a name becomes a space (issue 12)
]
INVALID = [
    {},
    [],
    {"changes": []},
    {"type": "delete"},
    {"type": "create", "userId": "u"},
    {"type": None, "userId": "u"},
    {"type": "delete", "action": "delete", "userId": "u"},
    {"type": "upsert", "userId": "u-1"},
    {"type": "upsert", "user": {"userId": "u-1"}},
    {"type": "upsert", "user": "u-1"},
    {"type": "delete", "userId": ""},
    {"type": "delete", "userId": "x" * 65},
    {"type": "delete", "userId": "u", "eventId": ""},
    {"type": "delete", "userId": "u", "occurredAt": "2024-05-01T02:00:00"},
    {"type": "delete", "userId": "u", "occurredAt": 1714528800},
    {"type": "delete", "userId": "u", "occurredAt": 1.5},
    {"type": "delete", "userId": "u", "extra": 1},
    {"specversion": "2", "type": "delete", "userId": "u"},
    {"changes": [ANN], "type": "upsert"},
    {"changes": [{"type": "delete", "userId": "u", "changes": []}]},
    {"userId": "u-1"},
    {"userName": "Ann"},
    [ANN, "u-2"],
    [{"type": "delete"}],
    {"type": "upsert", "user": {**ANN, "userEmail": "not-an-email"}},
    {"type": "upsert", "user": {**ANN, "userMobile": "call me"}},
    {"type": "upsert", "user": {**ANN, "userAvatarUrl": "ftp://x"}},
    {"type": "upsert", "user": {**ANN, "userName": "a\x00b"}},
    {"type": "upsert", "user": {**ANN, "userId": "a\nb"}},
    "upsert",
    42,
]


@pytest.mark.parametrize("document", VALID, ids=[f"valid-{n}" for n in range(len(VALID))])
def test_schema_and_parser_both_accept(document: Any) -> None:
    assert VALIDATOR.is_valid(document), [e.message for e in VALIDATOR.iter_errors(document)]
    assert parse_changes(text(document), defaults=DEFAULTS)


@pytest.mark.parametrize("document", INVALID, ids=[f"invalid-{n}" for n in range(len(INVALID))])
def test_schema_and_parser_both_refuse(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)
    with pytest.raises(MalformedMessage):
        parse_changes(text(document), defaults=DEFAULTS)


ABSENT = object()


def _pick(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def _build(pairs: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs.items() if value is not ABSENT}


# Valid documents, then up to two mutations each, so that about half the examples are valid. Left out on purpose,
# the reader's documented leniencies: numbers and PascalCase names for user fields, unknown user fields, whitespace
# around text, impossible dates, and userId/user.userId disagreement (a schema cannot compare two fields).
valid_users = st.builds(
    lambda **fields: _build(fields),
    userId=_pick("u-1"),
    userName=_pick("Ann", "王芳"),
    groupId=_pick(ABSENT, "g", ""),
    groupName=_pick(ABSENT, "G"),
    userEmail=_pick(ABSENT, "", None, "a@b.co"),
    userMobile=_pick(ABSENT, "13800001234"),
    userAvatarUrl=_pick(ABSENT, "https://x.example/a.png"),
)
CHANGE_MUTATIONS = [
    ("specversion", "2"), ("specversion", 1), ("type", "create"), ("type", None), ("type", ABSENT),
    ("action", "delete"), ("userId", ""), ("userId", "x" * 65), ("userId", "a\tb"), ("userId", None),
    ("userId", ABSENT), ("eventId", ""), ("eventId", "e\x00"), ("eventId", "e" * 129), ("eventId", 7),
    ("occurredAt", "2024-05-01T02:00:00"), ("occurredAt", "soon"), ("occurredAt", 1714528800),
    ("occurredAt", 253402300800000), ("occurredAt", -1), ("occurredAt", True), ("occurredAt", 1.5),
    ("source", ""), ("source", 3), ("user", None), ("user", "u-1"), ("user", ABSENT), ("email", "x"),
]  # fmt: skip
USER_MUTATIONS = [
    ("userId", None), ("userId", "u\n1"), ("userId", ABSENT), ("userName", None), ("userName", ""),
    ("userName", "  "), ("userName", "x" * 129), ("userName", ABSENT), ("groupId", ""),
    ("userEmail", "not-an-email"), ("userMobile", "call me"), ("userAvatarUrl", "ftp://x"),
]  # fmt: skip


def _mutate(document: dict[str, Any], mutations: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(document)
    for key, value in mutations:
        if value is ABSENT:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@st.composite
def changes_to_check(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(_pick("upsert", "delete"))
    user = draw(valid_users)
    change: dict[str, Any] = {draw(_pick("type", "action")): op}
    if op == "upsert":
        if draw(st.booleans()):  # the id beside the user rather than in it
            change["userId"] = user.pop("userId")
        change["user"] = user
    elif draw(st.booleans()):
        change["userId"] = "u-1"
    else:
        change["user"] = {"userId": "u-1"}
    for key, values in (
        ("specversion", ("1", None)),
        ("eventId", (None, "e-1")),
        ("source", (None, "hr")),
        ("occurredAt", (None, "2024-05-01T02:00:00Z", "2024-05-01T10:00:00.5+08:00", 1714528800123)),
    ):
        value = draw(_pick(ABSENT, *values))
        if value is not ABSENT:
            change[key] = value
    change = _mutate(change, draw(st.lists(st.sampled_from(CHANGE_MUTATIONS), max_size=1)))
    if isinstance(change.get("user"), dict):
        change["user"] = _mutate(change["user"], draw(st.lists(st.sampled_from(USER_MUTATIONS), max_size=1)))
    return change


bare_users = st.builds(_mutate, valid_users, st.lists(st.sampled_from(USER_MUTATIONS), max_size=1))
items = st.one_of(changes_to_check(), bare_users)
documents = st.one_of(
    changes_to_check(),
    bare_users,
    st.lists(items, min_size=0, max_size=3),
    st.builds(
        lambda changes, version: _build({"changes": changes, "specversion": version}),
        st.lists(items, min_size=0, max_size=3),
        _pick(ABSENT, "1", "2"),
    ),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_schema_and_parser_agree_on_generated_documents(document: Any) -> None:
    schema_ok = VALIDATOR.is_valid(document)
    try:
        parse_changes(text(document), defaults=DEFAULTS)
        parser_ok = True
    except MalformedMessage:
        parser_ok = False
    assert schema_ok == parser_ok, (schema_ok, [e.message for e in VALIDATOR.iter_errors(document)][:3])


# --- properties: any JSON --------------------------------------------------------------------------------------------

KNOWN = ["type", "action", "user", "userId", "userName", "groupId", "groupName", "eventId", "occurredAt", "source",
         "specversion", "changes", "UserId", "userEmail", "userMobile"]  # fmt: skip
KNOWN_VALUES = ["upsert", "delete", "1", "2024-05-01T02:00:00Z", "u-1", "a@b.co"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(KNOWN_VALUES),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(["decoded", "text", "bytes"]))
def test_any_json_gives_changes_or_malformed_message(document: Any, form: str) -> None:
    if form == "decoded":
        body: Any = document
    else:
        body = json.dumps(document) if form == "text" else json.dumps(document).encode()
    try:
        changes = parse_changes(body, defaults=DEFAULTS, message_id="m")
    except MalformedMessage as exc:
        assert exc.problems and str(exc)
    else:
        assert changes and all(isinstance(change, UserChange) for change in changes)
        assert isinstance(document, (dict, list))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64)))
def test_any_bytes_or_text_gives_changes_or_malformed_message(body: bytes | str) -> None:
    with contextlib.suppress(MalformedMessage):
        parse_changes(body)


def test_base64_is_not_decoded_here() -> None:
    """Decoding base64 is the transport adapter's call (only MNS says it may be): a body here is JSON or nothing."""
    assert str(refused(base64.b64encode(orjson.dumps(ANN)))).startswith("body: is not JSON (")


def test_looks_like_change_body() -> None:
    assert looks_like_change_body({"action": "upsert", "userId": "u"})
    assert looks_like_change_body([ANN, {"type": "delete"}])
    assert looks_like_change_body({"changes": []})
    assert not looks_like_change_body({"type": "oss:ObjectCreated"})
    assert not looks_like_change_body([])
    assert not looks_like_change_body([ANN, "x"])
    assert not looks_like_change_body("upsert")


def test_a_delete_cleans_its_id_up_as_an_upsert_does() -> None:
    """Issue 12: one clean-up on every path. A full-width id deletes the user its upsert created (NFKC), Excel's text
    mark is undone, and an id Excel turned into scientific notation is refused, never deleted."""
    [upsert] = parse_changes(text({"type": "upsert", "user": {**ANN, "userId": "ＢＳ００１"}}), defaults=DEFAULTS)
    [delete] = parse_changes(text({"type": "delete", "userId": "ＢＳ００１"}))
    [marked] = parse_changes(text({"type": "delete", "userId": "'BS001"}))
    assert upsert.user_id == delete.user_id == marked.user_id == "BS001"
    with pytest.raises(MalformedMessage, match="Excel turned this column into a number"):
        parse_changes(text({"type": "delete", "userId": "1.21235E+09"}))
