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
