"""Alibaba Cloud EventBridge (FC's MNS queue, RocketMQ, Kafka and OSS triggers): CloudEvents 1.0 objects, one at a
time or as a JSON array in batch mode.

Two carry object events:

* an MNS queue message: ``{"specversion", "type": "mns:Queue:SendMessage", "data": {"requestId", "messageId",
  "messageBody": "<string>"}}``; the body is JSON, or base64 of it when the trigger's ``IsBase64Decode`` is off;
* an OSS event routed by EventBridge: ``{"specversion", "type": "oss:ObjectCreated:PutObject", "data": {...one OSS
  event record, as in the FC OSS trigger...}}``.

The queue and stream sources carry user changes (``queue.py`` reads them): MNS queue ``data.messageBody``, RocketMQ
``data.body`` and Kafka ``data.value``.

AWS's EventBridge delivers S3 events in its own, non-CloudEvents shape: ``s3.py`` reads those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_cloud_event(obj: Mapping[str, Any]) -> bool:
    return "specversion" in obj and "data" in obj


def cloud_event_payload(obj: Mapping[str, Any]) -> Any:
    """The MNS ``messageBody`` (a string) or the OSS record (a mapping); ``None`` for anything else."""
    data = obj.get("data")
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("messageBody"), str):
        return data["messageBody"]
    if isinstance(data.get("oss"), Mapping):
        return data
    return None


# Queue and stream sources, told apart by their ``data``: what a user-change message arrives in.
MNS_QUEUE = "mns-queue"
ROCKETMQ = "rocketmq"
KAFKA = "kafka"
_PAYLOAD_FIELD = {MNS_QUEUE: "messageBody", ROCKETMQ: "body", KAFKA: "value"}


def queue_source(obj: Mapping[str, Any]) -> str | None:
    """``MNS_QUEUE``, ``ROCKETMQ`` or ``KAFKA`` for a CloudEvent carrying a queue message; ``None`` otherwise.

    Read from ``data``'s fields rather than ``type`` (``mns:Queue:SendMessage``, ``mq:Topic:SendMessage``,
    ``alikafka:Topic:Message``), which self-managed RocketMQ and Kafka sources spell differently.
    """
    data = obj.get("data")
    if not isinstance(data, Mapping):
        return None
    if "messageBody" in data:
        return MNS_QUEUE
    if "value" in data and ("partition" in data or "offset" in data):
        return KAFKA
    if "body" in data and ("systemProperties" in data or "userProperties" in data):
        return ROCKETMQ
    return None


def queue_payload(obj: Mapping[str, Any]) -> Any:
    """The message body (``messageBody``, ``body`` or ``value``): a string, or already-decoded JSON when the
    source's data format is JSON; ``None`` for a message without one (a Kafka tombstone) or no queue message."""
    source = queue_source(obj)
    if source is None:
        return None
    return obj["data"].get(_PAYLOAD_FIELD[source])
