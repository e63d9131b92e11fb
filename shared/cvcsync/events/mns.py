"""Function Compute's MNS topic trigger, in its message formats.

* JSON: ``{"TopicOwner", "TopicName", "Subscriber", "SubscriptionName", "MessageId", "MessageMD5",
  "PublishTime", "Message"}`` (message attributes merged at the top level); the payload is the string
  ``Message``.
* STREAM with attributes: ``{"body": "<string>", "attrs": {...}}``; the payload is ``body``.
* STREAM without attributes: the raw message body itself, which needs no unwrapping.

OSS notifies MNS with the same ``{"events": [...]}`` document the FC OSS trigger receives, often base64-encoded;
the dispatcher decodes either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_topic_json(obj: Mapping[str, Any]) -> bool:
    return "TopicOwner" in obj and "MessageId" in obj and isinstance(obj.get("Message"), str)


def is_stream_with_attributes(obj: Mapping[str, Any]) -> bool:
    return isinstance(obj.get("body"), str) and isinstance(obj.get("attrs"), Mapping)


def topic_payload(obj: Mapping[str, Any]) -> str:
    """``Message`` of the JSON format, or ``body`` of the STREAM format with attributes."""
    value = obj.get("Message") if is_topic_json(obj) else obj.get("body")
    return value if isinstance(value, str) else ""
