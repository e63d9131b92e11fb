"""Alerts: one ERROR log line with a stable code (what log-based alarms match on), and optionally an SQS message.

Codes (stable; alarms and runbooks key on them):

* ``CVCSYNC_ALERT_STALE_SYNC``: no sync has committed the shadow state for longer than the configured age.
* ``CVCSYNC_ALERT_DEADLETTER_BACKLOG``: more dead letters wait than the configured limit.
* ``CVCSYNC_ALERT_CIRCUIT_OPEN``: a circuit breaker opened (CVC failing systemically) since the last heartbeat.
* ``CVCSYNC_ALERT_LETTERS_PARKED``: the redrive gave up on letters (they wait in the parked area for a person).
* ``CVCSYNC_ALERT_RECONCILE_REFUSED``: healing CVC would delete more users than the deletion threshold allows.
* ``CVCSYNC_ALERT_UNDELIVERED``: an alert could not be sent to the alert queue (its ERROR line was still written).

The circuit-open marker is the hook for every path with a circuit breaker: ``mark_circuit_open`` writes
``<output prefix>alerts/circuit-open`` (the newest opening wins), and the heartbeat alerts once per opening. The
redrive writes it today; the queue and HTTP paths can call the same function where their breaker opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from cvcsync.adapters.objects import ObjectStore

log = logging.getLogger(__name__)

STALE_SYNC = "CVCSYNC_ALERT_STALE_SYNC"
DEADLETTER_BACKLOG = "CVCSYNC_ALERT_DEADLETTER_BACKLOG"
CIRCUIT_OPEN = "CVCSYNC_ALERT_CIRCUIT_OPEN"
LETTERS_PARKED = "CVCSYNC_ALERT_LETTERS_PARKED"
RECONCILE_REFUSED = "CVCSYNC_ALERT_RECONCILE_REFUSED"
UNDELIVERED = "CVCSYNC_ALERT_UNDELIVERED"
CIRCUIT_MARKER = "alerts/circuit-open"


@dataclass(frozen=True)
class Alert:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class Alerter:
    """Raises alerts: the ERROR line always, the queue message when ``queue_url`` is set (boto3 only then)."""

    def __init__(self, queue_url: str | None = None, sqs_client_factory: Callable[[], Any] | None = None) -> None:
        if queue_url and sqs_client_factory is None:
            raise ValueError("an alert queue needs an SQS client factory")
        self.queue_url = queue_url
        self._sqs_client_factory = sqs_client_factory
        self.raised: list[Alert] = []

    def raise_alert(self, alert: Alert, *, source: str, request_id: str | None = None) -> bool:
        """Log ``alert`` and send it on; ``False`` when the queue did not take it (logged as UNDELIVERED)."""
        self.raised.append(alert)
        log.error(alert.message, extra={"code": alert.code, "alert": alert.details, "source": source})
        if not self.queue_url:
            return True
        body = {
            **alert.to_dict(),
            "source": source,
            "requestId": request_id,
            "raisedAt": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        return self._send(orjson.dumps(body, default=str).decode(), alert.code)

    def _send(self, body: str, code: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        assert self._sqs_client_factory is not None
        try:
            self._sqs_client_factory().send_message(QueueUrl=self.queue_url, MessageBody=body)
        except (BotoCoreError, ClientError) as exc:
            log.error(
                "alert not delivered to the alert queue",
                extra={"code": UNDELIVERED, "alertCode": code, "cause": type(exc).__name__},
            )
            return False
        return True


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mark_circuit_open(
    store: ObjectStore,
    bucket: str,
    output_prefix: str,
    *,
    reason: str,
    source: str,
    request_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record that a circuit breaker opened (the hook for the queue and HTTP paths; the redrive calls it)."""
    body = {
        "openedAt": _iso(now or datetime.now(timezone.utc)),
        "reason": reason[:500],
        "source": source,
        "requestId": request_id,
    }
    store.put_bytes(bucket, output_prefix + CIRCUIT_MARKER, orjson.dumps(body), content_type="application/json")


def read_circuit_marker(store: ObjectStore, bucket: str, output_prefix: str) -> dict[str, Any] | None:
    raw = store.get_bytes(bucket, output_prefix + CIRCUIT_MARKER)
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        log.warning("the circuit-open marker is not a JSON object; ignored", extra={"key": CIRCUIT_MARKER})
        return None
    return data
