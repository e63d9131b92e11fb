"""moto for integration tests: ``cvcsync_dev.emulator.moto`` (shared with ``make demo``)."""

from __future__ import annotations

from typing import Any

import orjson

from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, REGION, MotoServer, MotoStartError, start_moto

__all__ = ["DUMMY_CREDENTIALS", "REGION", "MotoServer", "MotoStartError", "start_moto"]


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message body on the queue (JSON), each deleted once read: what a consumer would be handed."""
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies
