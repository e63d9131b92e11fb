"""Amazon SNS: the notification envelope ``{"Type": "Notification", "Message": "<string>"}`` found in SQS bodies
(without raw message delivery), and the Lambda SNS trigger ``{"Records": [{"EventSource": "aws:sns", "Sns":
{...envelope...}}]}``. The payload is ``Message``, a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_sns_envelope(obj: Mapping[str, Any]) -> bool:
    return obj.get("Type") == "Notification" and isinstance(obj.get("Message"), str)


def is_sns_record(obj: Mapping[str, Any]) -> bool:
    sns = obj.get("Sns")
    return obj.get("EventSource") == "aws:sns" and isinstance(sns, Mapping) and is_sns_envelope(sns)


def sns_message(obj: Mapping[str, Any]) -> str:
    """The envelope's ``Message``, given the envelope or a Lambda SNS record."""
    envelope = obj.get("Sns") if isinstance(obj.get("Sns"), Mapping) else obj
    message = envelope.get("Message") if isinstance(envelope, Mapping) else None
    return message if isinstance(message, str) else ""


def envelope(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The notification envelope itself, given the envelope or a Lambda SNS record."""
    inner = obj.get("Sns")
    return inner if isinstance(inner, Mapping) else obj


def message_attributes(obj: Mapping[str, Any]) -> dict[str, str]:
    """``MessageAttributes`` (``{"name": {"Type": "String", "Value": "..."}}``) as ``name -> Value``; binary
    attributes are left out."""
    attributes = envelope(obj).get("MessageAttributes")
    if not isinstance(attributes, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, attribute in attributes.items():
        if (
            isinstance(attribute, Mapping)
            and attribute.get("Type") != "Binary"
            and isinstance(attribute.get("Value"), str)
        ):
            out[str(name)] = attribute["Value"]
    return out
