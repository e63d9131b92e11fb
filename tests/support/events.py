"""The one way tests read the sample events in ``events/``: ``load_event("fc/oss-putobject.json")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def load_event(relative_path: str, *, raw: bool = False) -> Any:
    """The sample parsed (a dict, or a list for batch samples), or its bytes as FC hands them over (``raw``)."""
    path = (EVENTS_DIR / relative_path).resolve()
    if EVENTS_DIR not in path.parents:
        raise ValueError(f"{relative_path!r} is not under events/")
    data = path.read_bytes()
    return data if raw else orjson.loads(data)


def sample_paths(*folders: str) -> list[str]:
    """Every sample under ``folders`` (relative to ``events/``), so a test can prove each one is used."""
    return sorted(
        path.relative_to(EVENTS_DIR).as_posix() for folder in folders for path in (EVENTS_DIR / folder).rglob("*.json")
    )


def sqs_records(messages: list[tuple[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda hands it to the queue function: one record per (message id, body)."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"r-{message_id}",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:cvc-changes",
                "awsRegion": "us-east-1",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1714528805000"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "body": body if isinstance(body, str) else orjson.dumps(body).decode(),
            }
            for message_id, body in messages
        ]
    }
