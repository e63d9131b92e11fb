"""Queue messages (MNS, RocketMQ, Kafka via EventBridge on FC; SQS, SNS, EventBridge on Lambda): sync user changes."""

from __future__ import annotations

from typing import Any

from cvcsync.platform.cold_start import cold_imports

with cold_imports():
    from cvcsync.platform.triggers.queue import handle


def handler(event: Any, context: Any) -> Any:
    return handle(event, context)
