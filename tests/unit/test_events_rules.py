"""What is skipped, and why; what is refused, and what the refusal says."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events import UnsupportedEvent, parse_object_events
from support.events import load_event


def oss_event(*keys: str, size: int = 20480) -> dict[str, Any]:
    event = copy.deepcopy(load_event("fc/oss-putobject.json"))
    template = event["events"][0]
    event["events"] = []
    for key in keys:
        record = copy.deepcopy(template)
        record["oss"]["object"]["key"] = key
        record["oss"]["object"]["size"] = size
        event["events"].append(record)
    return dict(event)


def s3_event(raw_key: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("aws/s3-put-encoded-key.json"))
    event["Records"][0]["s3"]["object"]["key"] = raw_key
    return dict(event)


def test_own_output_prefixes_are_skipped_so_the_function_never_triggers_itself() -> None:
    event = oss_event("cvc-sync/reports/r.json", "cvc-sync/dead-letters/2024/x.ndjson", "other/out.csv", "users/u.csv")
    got = parse_object_events(event, ignore_prefixes=["cvc-sync/", "other/"])
    assert [u.key for u in got.uploads] == ["users/u.csv"]
    assert [s.reason for s in got.skipped] == ["own-output"] * 3


def test_prefix_is_compared_with_the_decoded_key() -> None:
    got = parse_object_events(s3_event("cvc+sync/report.json"), ignore_prefixes=["cvc sync/"])
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == ["own-output"]


def test_empty_prefix_ignores_nothing() -> None:
    assert len(parse_object_events(oss_event("users/u.csv"), ignore_prefixes=[""]).uploads) == 1


def test_a_single_string_is_not_taken_for_a_list_of_prefixes() -> None:
    with pytest.raises(TypeError):
        parse_object_events(oss_event("users/u.csv"), ignore_prefixes="cvc-sync/")


def test_directory_markers_are_skipped_but_empty_files_are_not() -> None:
    got = parse_object_events(oss_event("users/2024-05-01/", size=0))
    assert [s.reason for s in got.skipped] == ["directory-marker"]
    got = parse_object_events(oss_event("users/empty.csv", size=0))
    assert got.skipped == [] and [u.key for u in got.uploads] == ["users/empty.csv"]  # the gate must see it


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "users/../../secret.csv",
        "users/..",
        "/etc/passwd",
        "users/a\x00.csv",
        "users/a\r\nInjected: header.csv",
        "users/a\n.csv",
        "users/\x1b[31m.csv",
    ],
)
def test_hostile_keys_are_skipped_and_not_repeated(key: str) -> None:
    got = parse_object_events(oss_event(key))
    assert got.uploads == []
    (skip,) = got.skipped
    assert skip.reason == "hostile-key"
    assert key not in skip.detail


def test_hostile_key_hidden_behind_encoding_is_caught_after_decoding() -> None:
    got = parse_object_events(s3_event("..%2F..%2Fsecret.csv"))
    assert [s.reason for s in got.skipped] == ["hostile-key"]
    got = parse_object_events(oss_event("%2E%2E%2Fsecret.csv"))
    assert [s.reason for s in got.skipped] == ["hostile-key"]


def test_dots_inside_names_are_fine() -> None:
    assert len(parse_object_events(oss_event("users/v1..2/a..b.csv", "users/.hidden.csv")).uploads) == 2


def test_empty_key_is_invalid() -> None:
    assert [s.reason for s in parse_object_events(oss_event("")).skipped] == ["invalid-key"]


def test_every_skip_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cvcsync.inputs.events"):
        parse_object_events(oss_event("cvc-sync/r.json", "../x"), ignore_prefixes=["cvc-sync/"])
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.name == "cvcsync.inputs.events"]
    assert reasons == ["own-output", "hostile-key"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"userId": "u-1", "mobile": "13812341234"}, r"top-level keys \['mobile', 'userId'\]"),
        ({}, "top-level keys none"),
        ({"events": "not a list"}, r"top-level keys \['events'\]"),
        (b"\xff\xfe not json", "neither JSON nor base64"),
        (b"", "neither JSON nor base64"),
        ("42", "a JSON number"),
        ([None], "a JSON null"),
        ([True], "a JSON boolean"),
        ('[["x"]]', "neither JSON"),
    ],
)
def test_unsupported_shapes_say_what_they_saw_never_the_values(event: Any, expected: str) -> None:
    with pytest.raises(UnsupportedEvent, match=expected) as info:
        parse_object_events(event)
    assert isinstance(info.value, InvalidInputError)
    assert info.value.code == "UnsupportedEvent"
    assert "13812341234" not in str(info.value)
    assert "u-1" not in str(info.value)


def test_many_keys_are_listed_up_to_a_limit() -> None:
    with pytest.raises(UnsupportedEvent, match=r"and 5 more"):
        parse_object_events({f"k{i:02d}": i for i in range(25)})


def test_keys_that_look_like_personal_data_are_masked() -> None:
    with pytest.raises(UnsupportedEvent) as info:
        parse_object_events({"alice@example.com": 1})
    assert "alice@example.com" not in str(info.value)


def test_empty_batch_and_empty_oss_event_hold_nothing() -> None:
    assert parse_object_events([]).uploads == []
    assert parse_object_events({"events": []}).uploads == []
    assert parse_object_events({"Records": []}).skipped == []
