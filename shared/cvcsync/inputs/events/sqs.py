"""Amazon SQS as Lambda delivers it: ``{"Records": [{"eventSource": "aws:sqs", "messageId", "body"}]}``.

An S3 notification sent to a queue is the ``body``, as a JSON string: directly, or wrapped in an SNS envelope
when S3 notifies a topic the queue subscribes to (``sns.py`` reads that envelope).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_sqs_record(obj: Mapping[str, Any]) -> bool:
    return obj.get("eventSource") == "aws:sqs" and isinstance(obj.get("body"), str)


def sqs_body(record: Mapping[str, Any]) -> str:
    body = record.get("body")
    return body if isinstance(body, str) else ""


def system_attribute(record: Mapping[str, Any], name: str) -> str | None:
    """One of ``attributes`` (``ApproximateReceiveCount``, ``SentTimestamp``, ``MessageGroupId``...), as text."""
    attributes = record.get("attributes")
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    return value if isinstance(value, str) and value else None


def is_fifo(record: Mapping[str, Any]) -> bool:
    """From a FIFO queue: its ARN ends in ``.fifo``, or (no ARN) it carries a ``SequenceNumber``, which only FIFO
    queues assign. ``MessageGroupId`` alone is not enough: standard queues accept it too, for fair queueing."""
    arn = record.get("eventSourceARN")
    if isinstance(arn, str) and arn:
        return arn.endswith(".fifo")
    return system_attribute(record, "SequenceNumber") is not None


def message_attributes(record: Mapping[str, Any]) -> dict[str, str]:
    """The sender's ``messageAttributes`` of type String or Number, as ``name -> stringValue``; Binary ones are
    left out (they are base64 of arbitrary bytes, nothing a user change needs)."""
    attributes = record.get("messageAttributes")
    if not isinstance(attributes, Mapping):
        return {}
    out: dict[str, str] = {}
    for name, attribute in attributes.items():
        if isinstance(attribute, Mapping) and isinstance(attribute.get("stringValue"), str):
            out[str(name)] = attribute["stringValue"]
    return out
