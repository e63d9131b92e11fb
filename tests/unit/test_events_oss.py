"""The FC OSS trigger and the OSS key rule: decode only what can only be percent-encoded."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cvcsync.inputs.events import parse_object_events
from cvcsync.inputs.events.oss import decode_oss_key
from support.events import load_event


def oss_event(key: str, *, name: str = "ObjectCreated:PutObject", size: Any = 20480) -> dict[str, Any]:
    event = copy.deepcopy(load_event("fc/oss-putobject.json"))
    record = event["events"][0]
    record["eventName"] = name
    record["oss"]["object"]["key"] = key
    record["oss"]["object"]["size"] = size
    return dict(event)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("users/2024-05-01/users.csv", "users/2024-05-01/users.csv"),
        ("users/%E5%BC%A0%E4%B8%89.csv", "users/张三.csv"),
        ("users/a%20b.csv", "users/a b.csv"),
        ("users/%e5%bc%a0.csv", "users/张.csv"),
        ("users/张三.csv", "users/张三.csv"),
        ("users/张三%E5%BC%A0.csv", "users/张三%E5%BC%A0.csv"),
        ("users/50%off.csv", "users/50%off.csv"),
        ("users/100%.csv", "users/100%.csv"),
        ("users/%E5%BC%A0 x.csv", "users/%E5%BC%A0 x.csv"),
        ("users/%41%.csv", "users/%41%.csv"),
        ("users/%FF%FE.csv", "users/%FF%FE.csv"),
        ("users/%E5%BC.csv", "users/%E5%BC.csv"),
        ("users/a%0Ab.csv", "users/a%0Ab.csv"),
        ("users/a%00b.csv", "users/a%00b.csv"),
        ("users/a+b.csv", "users/a+b.csv"),
        ("users/a+b%20c.csv", "users/a+b c.csv"),
    ],
)
def test_decode_oss_key_rule(raw: str, key: str) -> None:
    assert decode_oss_key(raw) == key


def test_encoded_and_raw_keys_both_reach_the_same_object() -> None:
    encoded = parse_object_events(oss_event("users/%E5%BC%A0%E4%B8%89.csv")).uploads
    raw = parse_object_events(oss_event("users/张三.csv")).uploads
    assert [u.key for u in encoded] == [u.key for u in raw] == ["users/张三.csv"]


@pytest.mark.parametrize(
    "name",
    [
        "ObjectCreated:PutObject",
        "ObjectCreated:PostObject",
        "ObjectCreated:CopyObject",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectCreated:AppendObject",
        "ObjectReplication:ObjectCreated",
        "oss:ObjectCreated:PutObject",
    ],
)
def test_whole_object_events_are_uploads(name: str) -> None:
    got = parse_object_events(oss_event("users/u.csv", name=name))
    assert [u.event_name for u in got.uploads] == [name.removeprefix("oss:")]
    assert got.skipped == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ObjectCreated:InitiateMultipartUpload", "incomplete-upload"),
        ("ObjectCreated:UploadPart", "incomplete-upload"),
        ("ObjectCreated:UploadPartCopy", "incomplete-upload"),
        ("ObjectRemoved:DeleteObject", "not-created"),
        ("ObjectRemoved:DeleteObjects", "not-created"),
        ("ObjectRemoved:AbortMultipartUpload", "not-created"),
        ("ObjectDownloaded:GetObject", "not-created"),
        ("ObjectModified:UpdateObjectMeta", "not-created"),
        ("", "not-created"),
    ],
)
def test_other_events_are_skipped_with_a_reason(name: str, reason: str) -> None:
    got = parse_object_events(oss_event("users/u.csv", name=name))
    assert got.uploads == []
    assert [s.reason for s in got.skipped] == [reason]


def test_several_records_in_one_event_keep_their_order() -> None:
    event = oss_event("users/a.csv")
    second = copy.deepcopy(event["events"][0])
    second["oss"]["object"]["key"] = "users/b.csv"
    removed = copy.deepcopy(second)
    removed["eventName"] = "ObjectRemoved:DeleteObject"
    event["events"] += [removed, second]
    got = parse_object_events(event)
    assert [u.key for u in got.uploads] == ["users/a.csv", "users/b.csv"]
    assert [s.reason for s in got.skipped] == ["not-created"]


def test_size_given_as_a_string_and_quoted_etag_are_read() -> None:
    event = oss_event("users/u.csv", size="4096")
    event["events"][0]["oss"]["object"]["eTag"] = '"ABC"'
    (upload,) = parse_object_events(event).uploads
    assert (upload.size, upload.etag) == (4096, "ABC")


def test_eventbridge_oss_event_carries_one_record_as_data() -> None:
    record = load_event("fc/oss-putobject.json")["events"][0]
    cloud_event = {"specversion": "1.0", "type": "oss:ObjectCreated:PutObject", "source": "acs.oss", "data": record}
    (upload,) = parse_object_events(cloud_event).uploads
    assert (upload.bucket, upload.key, upload.source) == ("cvc-user-uploads", "users/2024-05-01/users.csv", "oss")
