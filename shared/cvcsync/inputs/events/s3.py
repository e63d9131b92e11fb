"""Amazon S3 events, in the two shapes S3 sends them.

* Event notifications (to Lambda directly, or through SQS/SNS): ``{"Records": [{"eventSource": "aws:s3",
  "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name"}, "object": {"key", "size", "eTag"}}}]}``, and the
  ``{"Service": "Amazon S3", "Event": "s3:TestEvent"}`` S3 sends once when a notification is configured.
* EventBridge: ``{"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name"},
  "object": {"key", "size", "etag"}, "reason"}}``.

Keys: S3 form-encodes notification keys (``red flower.jpg`` arrives as ``red+flower.jpg``, ``+`` as ``%2B``), so
``decode_s3_key`` is ``unquote_plus``, strict about UTF-8. The EventBridge key is decoded the same way: the S3
page on the EventBridge message structure does not say, but the event is built from the same notification
record, and the consumers that run against it in production (Powertools for AWS Lambda's
``S3EventBridgeNotificationObject.key``, OpenSearch Data Prepper's ``getUrlDecodedKey``) both form-decode it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from cvcsync.inputs.events import fields
from cvcsync.inputs.events.types import (
    SKIP_INVALID_KEY,
    SKIP_NOT_CREATED,
    ObjectUploaded,
    SkippedEvent,
    UnsupportedEvent,
    UploadSource,
)

EVENTBRIDGE_CREATED = "Object Created"


def is_s3_record(obj: Mapping[str, Any]) -> bool:
    return obj.get("eventSource") == "aws:s3" or (isinstance(obj.get("s3"), Mapping) and "eventName" in obj)


def is_test_event(obj: Mapping[str, Any]) -> bool:
    return obj.get("Event") == "s3:TestEvent"


def is_eventbridge_s3(obj: Mapping[str, Any]) -> bool:
    return obj.get("source") == "aws.s3" and "detail-type" in obj and isinstance(obj.get("detail"), Mapping)


def decode_s3_key(raw: str) -> str | None:
    """``unquote_plus``; ``None`` when the escapes are not UTF-8 (S3 never sends that; a forger might)."""
    try:
        return unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


def _upload(
    obj: Mapping[str, Any],
    *,
    bucket: str,
    raw_key: str,
    name: str,
    source: UploadSource,
    etag: Any,
    event_time: Any,
    region: Any,
) -> ObjectUploaded | SkippedEvent:
    key = decode_s3_key(raw_key)
    if key is None:
        return SkippedEvent(SKIP_INVALID_KEY, f"{bucket}: key escapes are not UTF-8")
    return ObjectUploaded(
        bucket=bucket,
        key=key,
        size=fields.size(obj.get("size")),
        etag=fields.etag(etag),
        event_name=name,
        source=source,
        event_time=fields.text(event_time),
        region=fields.text(region),
    )


def read_s3_record(record: Mapping[str, Any]) -> ObjectUploaded | SkippedEvent:
    s3 = fields.mapping(record.get("s3"))
    bucket = fields.text(fields.mapping(s3.get("bucket")).get("name"))
    obj = fields.mapping(s3.get("object"))
    raw_key = fields.text(obj.get("key"))
    if not bucket or raw_key is None:
        raise UnsupportedEvent("S3 notification record without s3.bucket.name or s3.object.key")
    name = fields.event_name(record.get("eventName"), "s3:")
    if not name.startswith("ObjectCreated:"):
        where = fields.describe(bucket, decode_s3_key(raw_key) or raw_key)
        return SkippedEvent(SKIP_NOT_CREATED, f"{name or 'no eventName'} {where}")
    return _upload(
        obj,
        bucket=bucket,
        raw_key=raw_key,
        name=name,
        source="s3",
        etag=obj.get("eTag"),
        event_time=record.get("eventTime"),
        region=record.get("awsRegion"),
    )


def read_eventbridge_s3(event: Mapping[str, Any]) -> ObjectUploaded | SkippedEvent:
    detail = fields.mapping(event.get("detail"))
    bucket = fields.text(fields.mapping(detail.get("bucket")).get("name"))
    obj = fields.mapping(detail.get("object"))
    raw_key = fields.text(obj.get("key"))
    if not bucket or raw_key is None:
        raise UnsupportedEvent("EventBridge S3 event without detail.bucket.name or detail.object.key")
    name = fields.text(event.get("detail-type")) or ""
    if name != EVENTBRIDGE_CREATED:
        where = fields.describe(bucket, decode_s3_key(raw_key) or raw_key)
        return SkippedEvent(SKIP_NOT_CREATED, f"{name or 'no detail-type'} {where}")
    return _upload(
        obj,
        bucket=bucket,
        raw_key=raw_key,
        name=name,
        source="eventbridge-s3",
        etag=obj.get("etag"),
        event_time=event.get("time"),
        region=event.get("region"),
    )
