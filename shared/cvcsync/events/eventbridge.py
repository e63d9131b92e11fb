"""Alibaba Cloud EventBridge (FC's MNS queue, RocketMQ, Kafka and OSS triggers): CloudEvents 1.0 objects, one at a
time or as a JSON array in batch mode.

Two carry object events:

* an MNS queue message: ``{"specversion", "type": "mns:Queue:SendMessage", "data": {"requestId", "messageId",
  "messageBody": "<string>"}}``; the body is JSON, or base64 of it when the trigger's ``IsBase64Decode`` is off;
* an OSS event routed by EventBridge: ``{"specversion", "type": "oss:ObjectCreated:PutObject", "data": {...one OSS
  event record, as in the FC OSS trigger...}}``.

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
