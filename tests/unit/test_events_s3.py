"""S3 notifications, the test event and EventBridge S3 events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cvcsync.inputs.events import UnsupportedEvent, parse_object_events
from cvcsync.inputs.events.s3 import decode_s3_key
from support.events import load_event


def s3_event(key: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    event = copy.deepcopy(load_event("aws/s3-put-encoded-key.json"))
    event["Records"][0]["eventName"] = name
    event["Records"][0]["s3"]["object"]["key"] = key
    return dict(event)


def eventbridge_event(key: str, detail_type: str = "Object Created") -> dict[str, Any]:
    event = copy.deepcopy(load_event("aws/eventbridge-s3-object-created.json"))
    event["detail-type"] = detail_type
    event["detail"]["object"]["key"] = key
    return dict(event)


def test_s3_key_is_form_decoded() -> None:
    assert load_event("aws/s3-put-encoded-key.json")["Records"][0]["s3"]["object"]["key"] == (
        "users/2024+05/%E5%BC%A0+%E4%B8%89%2Bx.csv"
    )
    assert parse_object_events(load_event("aws/s3-put-encoded-key.json")).uploads[0].key == "users/2024 05/张 三+x.csv"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("a+b.csv", "a b.csv"),
        ("a%2Bb.csv", "a+b.csv"),
        ("users%2F2024%2Fa.csv", "users/2024/a.csv"),
        ("50%25.csv", "50%.csv"),
        ("plain.csv", "plain.csv"),
        ("%zz.csv", "%zz.csv"),
    ],
)
def test_decode_s3_key(raw: str, key: str) -> None:
    assert decode_s3_key(raw) == key


def test_undecodable_s3_key_is_skipped_not_guessed() -> None:
    got = parse_object_events(s3_event("users/%FF.csv"))
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == ["invalid-key"]


@pytest.mark.parametrize(
    "name", ["ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy", "s3:ObjectCreated:Put"]
)
def test_s3_created_events(name: str) -> None:
    (upload,) = parse_object_events(s3_event("a.csv", name)).uploads
    assert upload.event_name == name.removeprefix("s3:")


@pytest.mark.parametrize(
    "name",
    [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRestore:Completed",
        "ReducedRedundancyLostObject",
    ],
)
def test_s3_other_events_are_skipped(name: str) -> None:
    got = parse_object_events(s3_event("a.csv", name))
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == ["not-created"]
    assert name in got.skipped[0].detail


def test_test_event_is_skipped() -> None:
    got = parse_object_events(load_event("aws/s3-test-event.json"))
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == ["test-event"]


def test_eventbridge_key_is_decoded_like_a_notification_key() -> None:
    assert parse_object_events(eventbridge_event("a+b%2Bc.csv")).uploads[0].key == "a b+c.csv"


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_eventbridge_other_detail_types_are_skipped(detail_type: str) -> None:
    got = parse_object_events(eventbridge_event("a.csv", detail_type))
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == ["not-created"]


def test_a_record_without_a_bucket_is_unsupported() -> None:
    event = s3_event("a.csv")
    del event["Records"][0]["s3"]["bucket"]
    with pytest.raises(UnsupportedEvent, match=r"s3\.bucket\.name"):
        parse_object_events(event)


def test_lambda_sns_trigger_record_is_unwrapped() -> None:
    envelope = {"Type": "Notification", "Message": load_event("aws/s3-put-encoded-key.json", raw=True).decode()}
    event = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": envelope}]}
    assert [u.key for u in parse_object_events(event).uploads] == ["users/2024 05/张 三+x.csv"]
