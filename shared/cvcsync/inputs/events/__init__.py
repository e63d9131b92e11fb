"""Storage events, read into the platform-neutral ``ObjectUploaded``: one entry point, ``parse_object_events``.

It accepts what a handler receives (FC's ``bytes``, Lambda's ``dict``, or a list in batch mode) and tells the
shapes apart: FC OSS trigger events, S3 notifications, S3 events via AWS EventBridge, and those same events
wrapped in a queue or topic message (SQS, SNS in SQS, FC's MNS topic trigger, Alibaba EventBridge MNS queue
messages, FC async-invocation destination records), unwrapping recursively up to ``MAX_DEPTH`` levels.

Every record ends as an upload or as a ``SkippedEvent`` with a reason: not an object creation, an S3 test event,
a key under one of ``ignore_prefixes`` (the function's own output: it must never trigger itself), a directory
marker, or a hostile key. An empty object is NOT skipped: an empty full snapshot must reach the completeness
gate and end in a loud, refused report, not in a quiet log line. A shape we do not read raises
``UnsupportedEvent``, whose message names the keys it saw and never their values.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from cvcsync.inputs.events import destination, eventbridge, fields, mns, oss, s3, sns, sqs
from cvcsync.inputs.events.types import (
    SKIP_DIRECTORY_MARKER,
    SKIP_OWN_OUTPUT,
    SKIP_TEST_EVENT,
    ObjectEvents,
    ObjectUploaded,
    SkippedEvent,
    UnsupportedEvent,
)

__all__ = ["MAX_DEPTH", "ObjectEvents", "ObjectUploaded", "SkippedEvent", "UnsupportedEvent", "parse_object_events"]

logger = logging.getLogger(__name__)

MAX_DEPTH = 16
_MAX_KEYS_SHOWN = 20


def parse_object_events(
    event: bytes | str | Mapping[str, Any] | list[Any], *, ignore_prefixes: Sequence[str] = ()
) -> ObjectEvents:
    """Every upload and every skipped record in ``event``, in order.

    ``ignore_prefixes`` are compared with the decoded key; empty prefixes are ignored (they would match all).
    Raises ``UnsupportedEvent`` (an ``InvalidInputError``) for anything it cannot read, and nothing else.
    """
    if isinstance(ignore_prefixes, str):
        raise TypeError("ignore_prefixes is a sequence of prefixes, not one string")
    found = ObjectEvents()
    prefixes = tuple(p for p in ignore_prefixes if p)
    for item in _walk(event, 0, ()):
        if isinstance(item, ObjectUploaded):
            skip = _screen(item, prefixes)
            if skip is None:
                found.uploads.append(item)
                continue
            item = skip
        logger.info("skipped object event: %s", item.reason, extra={"reason": item.reason, "detail": item.detail})
        found.skipped.append(item)
    return found


def _screen(upload: ObjectUploaded, prefixes: tuple[str, ...]) -> SkippedEvent | None:
    problem = fields.key_problem(upload.key)
    if problem is not None:
        reason, description = problem
        return SkippedEvent(reason, f"{upload.bucket}: {description}")
    where = f"{upload.bucket}/{upload.key}"
    if any(upload.key.startswith(prefix) for prefix in prefixes):
        return SkippedEvent(SKIP_OWN_OUTPUT, where)
    if upload.key.endswith("/"):
        return SkippedEvent(SKIP_DIRECTORY_MARKER, where)
    return None


def _walk(obj: Any, depth: int, path: tuple[str, ...]) -> list[ObjectUploaded | SkippedEvent]:
    if depth > MAX_DEPTH:
        raise UnsupportedEvent(f"event nested deeper than {MAX_DEPTH} levels{_inside(path)}")
    deeper = depth + 1
    if isinstance(obj, (bytes, bytearray, memoryview, str)):
        return _walk(_decode(obj, path), deeper, path)
    if isinstance(obj, list):
        return [found for item in obj for found in _walk(item, deeper, path)]
    if not isinstance(obj, Mapping):
        raise UnsupportedEvent(f"unsupported event: a JSON {_json_type(obj)}{_inside(path)}")
    return _walk_mapping(obj, deeper, path)


def _walk_mapping(obj: Mapping[str, Any], deeper: int, path: tuple[str, ...]) -> list[ObjectUploaded | SkippedEvent]:
    # Object events first: a wrapper's test could match an event that merely carries a field of the same name.
    if oss.is_oss_event(obj):
        return [oss.read_oss_record(record) for record in obj["events"]]
    if oss.is_oss_record(obj):
        return [oss.read_oss_record(obj)]
    if s3.is_s3_record(obj):
        return [s3.read_s3_record(obj)]
    if s3.is_eventbridge_s3(obj):
        return [s3.read_eventbridge_s3(obj)]
    if s3.is_test_event(obj):
        return [SkippedEvent(SKIP_TEST_EVENT, f"s3:TestEvent for {fields.text(obj.get('Bucket')) or 'a bucket'}")]
    records = obj.get("Records")
    if isinstance(records, list):
        return [found for record in records for found in _walk(record, deeper, path)]
    if sqs.is_sqs_record(obj):
        return _walk(sqs.sqs_body(obj), deeper, (*path, "SQS body"))
    if sns.is_sns_record(obj) or sns.is_sns_envelope(obj):
        return _walk(sns.sns_message(obj), deeper, (*path, "SNS Message"))
    if mns.is_topic_json(obj) or mns.is_stream_with_attributes(obj):
        return _walk(mns.topic_payload(obj), deeper, (*path, "MNS message"))
    if eventbridge.is_cloud_event(obj):
        payload = eventbridge.cloud_event_payload(obj)
        if payload is None:
            data_keys = fields.keys_seen(fields.mapping(obj.get("data")), _MAX_KEYS_SHOWN)
            raise UnsupportedEvent(f"EventBridge event carries no object event{_inside(path)}: data keys {data_keys}")
        return _walk(payload, deeper, (*path, "EventBridge data"))
    if destination.is_destination_record(obj):
        return _walk(destination.request_payload(obj), deeper, (*path, "destination requestPayload"))
    keys = fields.keys_seen(obj, _MAX_KEYS_SHOWN)
    raise UnsupportedEvent(f"unsupported event shape{_inside(path)}: top-level keys {keys}")


def _decode(raw: bytes | bytearray | memoryview | str, path: tuple[str, ...]) -> Any:
    """JSON, or base64 of JSON (MNS bodies often are). Never echoes the text: it may hold personal data."""
    data = bytes(raw) if not isinstance(raw, str) else raw
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    compact = b"".join(data.split()) if isinstance(data, bytes) else "".join(data.split())
    try:
        return orjson.loads(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise UnsupportedEvent(
            f"unsupported event{_inside(path)}: {len(data)} characters that are neither JSON nor base64 of JSON"
        ) from None


def _inside(path: tuple[str, ...]) -> str:
    return f" inside {' > '.join(path)}" if path else ""


def _json_type(obj: Any) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__
