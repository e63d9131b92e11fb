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

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from cvcsync.inputs.events import fields


def is_topic_json(obj: Mapping[str, Any]) -> bool:
    return "TopicOwner" in obj and "MessageId" in obj and isinstance(obj.get("Message"), str)


def is_stream_with_attributes(obj: Mapping[str, Any]) -> bool:
    return isinstance(obj.get("body"), str) and isinstance(obj.get("attrs"), Mapping)


def topic_payload(obj: Mapping[str, Any]) -> str:
    """``Message`` of the JSON format, or ``body`` of the STREAM format with attributes."""
    value = obj.get("Message") if is_topic_json(obj) else obj.get("body")
    return value if isinstance(value, str) else ""


# The JSON format's own fields; every other top-level key is a message attribute the trigger merged in.
TOPIC_JSON_FIELDS = frozenset(
    {"TopicOwner", "TopicName", "Subscriber", "SubscriptionName", "MessageId", "MessageMD5", "PublishTime", "Message"}
)


def topic_attributes(obj: Mapping[str, Any]) -> dict[str, str]:
    """The message attributes of the JSON format (merged at the top level) or of the STREAM format (``attrs``)."""
    if is_topic_json(obj):
        return fields.text_map({key: value for key, value in obj.items() if key not in TOPIC_JSON_FIELDS})
    return fields.text_map(obj.get("attrs"))


def decode_body(text: str) -> str:
    """The message body as its sender wrote it: ``text`` itself, or the text it is base64 of.

    MNS clients base64-encode bodies by default and nothing in the message says so (the MNS queue trigger's
    ``IsBase64Decode`` setting is not in the event), so a body is decoded only when all of these hold: it is not
    JSON itself; it is strict base64 (whitespace aside); the bytes are UTF-8; and that text is a JSON object or
    array. JSON never looks like base64 (``{``, ``[`` and ``"`` are outside its alphabet), so a JSON body is never
    mistaken for one; anything else is returned as it came, for the change parser to refuse with its reason.
    """
    if _json_container(text):
        return text
    compact = "".join(text.split())
    if not compact:
        return text
    try:
        decoded = base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return text
    return decoded if _json_container(decoded) else text


def _json_container(text: str) -> bool:
    try:
        return isinstance(orjson.loads(text), (dict, list))
    except orjson.JSONDecodeError:
        return False
