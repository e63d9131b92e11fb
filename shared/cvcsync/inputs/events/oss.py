"""Function Compute's OSS trigger: ``{"events": [{"eventName", "oss": {"bucket", "object"}, ...}]}``.

The same record also arrives alone as the ``data`` of an EventBridge OSS event, and inside MNS messages when OSS
notifies a topic or queue; the dispatcher unwraps those and hands the records here.

Key encoding is not documented for OSS events, so ``decode_oss_key`` accepts both forms and decodes only a key
that can only have come from a percent-encoder (see its docstring for the rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from cvcsync.inputs.events import fields
from cvcsync.inputs.events.types import (
    SKIP_INCOMPLETE_UPLOAD,
    SKIP_NOT_CREATED,
    ObjectUploaded,
    SkippedEvent,
    UnsupportedEvent,
)

# Events named ObjectCreated:* that do not mean "a whole object is there to read": a multipart upload was started
# or one of its parts arrived. The object appears with CompleteMultipartUpload.
_IN_PROGRESS = frozenset(
    {"ObjectCreated:InitiateMultipartUpload", "ObjectCreated:UploadPart", "ObjectCreated:UploadPartCopy"}
)
# Cross-region replication writes whole objects into the bucket, like an upload would.
_REPLICATED = frozenset({"ObjectReplication:ObjectCreated", "ObjectReplication:ObjectModified"})
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def is_oss_event(obj: Mapping[str, Any]) -> bool:
    """The trigger's envelope: an ``events`` list of OSS records (FC never sends it empty; we accept that too)."""
    events = obj.get("events")
    return isinstance(events, list) and all(isinstance(e, Mapping) and is_oss_record(e) for e in events)


def is_oss_record(obj: Mapping[str, Any]) -> bool:
    return isinstance(obj.get("oss"), Mapping) and ("eventName" in obj or obj.get("eventSource") == "acs:oss")


def decode_oss_key(raw: str) -> str:
    """The object key, percent-decoded only when the raw text can only be the output of a percent-encoder.

    Decode when all of these hold, else return ``raw`` untouched:

    1. it contains at least one ``%XX`` escape (two hex digits);
    2. it is pure ASCII with no space: an encoder escapes those, so ``张三 50%.csv`` is a raw key;
    3. every ``%`` starts a valid escape: an encoder escapes a literal ``%``, so ``50%off.csv`` is a raw key;
    4. the escaped bytes are valid UTF-8 and decode to no control character but tab (``%0A`` is kept as typed).

    ``+`` is never turned into a space (that is form encoding, which S3 uses and OSS is not known to). The one
    ambiguity left is a raw key that happens to look encoded, such as ``a%20b.csv``: it is read as ``a b.csv``.
    A decoded key that escapes its prefix (``%2E%2E%2F``) is still decoded, and then refused as hostile.
    """
    if "%" not in raw or not raw.isascii() or " " in raw:
        return raw
    escapes = len(_ESCAPE.findall(raw))
    if escapes == 0 or escapes != raw.count("%"):
        return raw
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if fields.has_control(decoded):
        return raw
    return decoded


def read_oss_record(record: Mapping[str, Any]) -> ObjectUploaded | SkippedEvent:
    oss = fields.mapping(record.get("oss"))
    bucket = fields.text(fields.mapping(oss.get("bucket")).get("name"))
    obj = fields.mapping(oss.get("object"))
    raw_key = fields.text(obj.get("key"))
    if not bucket or raw_key is None:
        raise UnsupportedEvent("OSS event record without oss.bucket.name or oss.object.key")
    name = fields.event_name(record.get("eventName"), "oss:")
    key = decode_oss_key(raw_key)
    if name in _IN_PROGRESS:
        return SkippedEvent(SKIP_INCOMPLETE_UPLOAD, f"{name} {fields.describe(bucket, key)}")
    if not name.startswith("ObjectCreated:") and name not in _REPLICATED:
        return SkippedEvent(SKIP_NOT_CREATED, f"{name or 'no eventName'} {fields.describe(bucket, key)}")
    return ObjectUploaded(
        bucket=bucket,
        key=key,
        size=fields.size(obj.get("size")),
        etag=fields.etag(obj.get("eTag")),
        event_name=name,
        source="oss",
        event_time=fields.text(record.get("eventTime")),
        region=fields.text(record.get("region")),
    )
