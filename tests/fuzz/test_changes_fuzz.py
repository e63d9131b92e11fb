"""The queue message body (the user-change event, ``docs/user-change-event.md``) fed hostile bodies.

Whatever the body (text, bytes, an already-decoded object, anything else), ``parse_changes`` returns changes or raises
``MalformedMessage`` and nothing else; each problem says which change (1-based, or the body), which field and why;
and everything it returns or raises can be written as JSON, since the change path stores event ids and sources in
its state and the dead-letter sink writes the problems as they are.

``tests/unit/test_changes.py`` holds the named rules and the schema agreement; this file adds hostile strings in every
field, mutated valid bodies, decoded bodies holding what JSON text cannot (lone surrogates, huge integers, NaN),
and raw bytes.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.inputs.change_message import MAX_CHANGES
from cvcsync.inputs.changes import CHANGE_FIELDS, MalformedMessage, UserChange, parse_changes
from cvcsync.inputs.records import FIELDS, User
from support.events import load_event
from support.hostile import HOSTILE_STRINGS, hostile_text, json_ish, mutated, raw_bytes

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
RECEIVED = datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc)
DEFAULTS = {"groupId": "88", "groupName": "Acme"}
BATCH = orjson.loads(load_event("fc/queue-mns-topic-json-v1-batch.json")["Message"])
USER = BATCH["changes"][0]["user"]
KEYS = sorted(CHANGE_FIELDS | {"changes", *FIELDS, "UserId", "UserName"})
VALUES = ["upsert", "delete", "1", "2024-05-01T02:00:00Z", 1714528800000, "u-1", "a@b.co"]


def parse(body: Any) -> list[UserChange] | MalformedMessage:
    """``parse_changes`` with every property of its answer checked."""
    try:
        changes = parse_changes(body, message_id="m-1", defaults=DEFAULTS, received_at=RECEIVED)
    except MalformedMessage as exc:
        assert exc.problems and exc.code == "MalformedMessage" and not exc.retryable
        for problem in exc.problems:
            assert problem.reason.strip()
            assert problem.change is None or 1 <= problem.change <= MAX_CHANGES
            assert all(part for part in problem.field.split(".")) or problem.field == ""
            assert str(problem) in exc.message or len(exc.problems) > 10
        orjson.dumps(exc.to_dict())  # the dead letter
        return exc
    assert changes
    for change in changes:
        assert change.op in ("upsert", "delete") and change.user_id.strip() == change.user_id and change.user_id
        assert (change.user is not None) == (change.op == "upsert")
        assert change.occurred_at is not None and change.occurred_at.utcoffset() is not None
        orjson.dumps([change.user_id, change.event_id, change.source, change.position])  # state and reports
        if isinstance(change.user, User):
            change.user.to_json()
    return changes


@FUZZ
@given(json_ish(KEYS, VALUES, max_leaves=30))
def test_any_decoded_body(body: Any) -> None:
    parse(body)


@FUZZ
@given(json_ish(KEYS, VALUES, max_leaves=30))
def test_any_body_as_json_text_and_bytes(body: Any) -> None:
    text = json.dumps(body)  # the stdlib writes NaN, huge integers and \ud800 escapes, which orjson refuses
    first = parse(text)
    second = parse(text.encode())
    assert type(first) is type(second)


@FUZZ
@given(raw_bytes)
def test_any_bytes(body: bytes) -> None:
    assert isinstance(parse(body), MalformedMessage) or body.strip()


@FUZZ
@given(mutated(BATCH, json_ish(KEYS, VALUES, max_leaves=8)))
def test_mutated_batches(body: Any) -> None:
    parse(body)
    parse(json.dumps(body))


@FUZZ
@given(
    where=st.sampled_from(
        ["eventId", "source", "userId", "occurredAt", "type", "specversion", *[f"user.{f}" for f in FIELDS]]
    ),
    value=st.one_of(hostile_text, st.integers(min_value=-(2**400), max_value=2**400), st.floats()),
)
def test_a_hostile_value_in_any_field_is_read_or_named(where: str, value: Any) -> None:
    change: dict[str, Any] = {"type": "upsert", "eventId": "e-1", "source": "hr", "user": copy.deepcopy(USER)}
    if where.startswith("user."):
        change["user"][where[5:]] = value
    else:
        change[where] = value
    got = parse(change)
    if isinstance(got, MalformedMessage):
        assert any(problem.field in (where, where.replace("user.", "user.", 1)) for problem in got.problems), (
            where,
            got.problems,
        )


@pytest.mark.parametrize("field", ["eventId", "source"])
@pytest.mark.parametrize("value", ["e\ud800", "\udfff", "a\udc80b"], ids=["high", "low", "escape-range"])
def test_a_lone_surrogate_in_event_id_or_source_is_named(field: str, value: str) -> None:
    """A body decoded by a lenient JSON reader (Lambda's) can carry one; the state stores event ids as JSON."""
    got = parse({"type": "delete", "userId": "u-1", field: value})
    assert isinstance(got, MalformedMessage)
    assert [(p.change, p.field) for p in got.problems] == [(1, field)]
    assert "surrogate" in got.problems[0].reason


@pytest.mark.parametrize("value", ["u\ud800", 10**5000], ids=["surrogate", "huge"])
def test_a_user_id_that_cannot_be_text_is_named(value: Any) -> None:
    for body in ({"type": "delete", "userId": value}, {"type": "upsert", "user": {**USER, "userId": value}}):
        got = parse(body)
        assert isinstance(got, MalformedMessage)
        assert {p.field for p in got.problems} in ({"userId"}, {"user.userId"})


@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_every_hostile_string_as_the_whole_body(value: str) -> None:
    got = parse(value)
    assert isinstance(got, MalformedMessage)
    assert got.problems[0].field == "body"


def test_a_python_structure_nested_100k_deep_is_refused_without_recursion() -> None:
    body: Any = {"userId": "u-1"}
    for _ in range(100_000):
        body = [body]
    got = parse(body)
    assert isinstance(got, MalformedMessage) and "nested" in got.problems[0].reason
