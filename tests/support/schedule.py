"""Scheduled tasks in unit tests: a context on the memory store and the in-process CVC, a clock that moves, and
dead letters shaped exactly as the upload and queue paths write them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.config import SyncSettings
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink
from cvcsync.platform.context import SyncContext
from cvcsync.platform.runtime import Invocation
from cvcsync.schedule.alerts import Alerter
from cvcsync.schedule.context import ScheduleContext, ScheduleSettings

from .inprocess_cvc import InProcessCvc, inprocess_cvc

BUCKET = "state"
START = datetime(2024, 5, 1, 2, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    ctx: ScheduleContext
    cvc: InProcessCvc
    store: MemoryObjectStore
    sink: ObjectDeadLetterSink
    clock: Clock
    alerter: Alerter = field(default_factory=Alerter)


def world(
    *,
    settings: ScheduleSettings | None = None,
    sync_settings: SyncSettings | None = None,
    deadline_in: float | None = None,
    batch_size: int = 100,
    unavailable: tuple[str, ...] = (),
    clock: Clock | None = None,
) -> World:
    cvc = inprocess_cvc(batch_size=batch_size, unavailable=unavailable)
    store = MemoryObjectStore()
    sync_settings = sync_settings or SyncSettings(state_bucket=BUCKET, concurrency=1)
    sink = ObjectDeadLetterSink(store, BUCKET, sync_settings.key("dead-letters") + "/")
    deadline = time.monotonic() + deadline_in if deadline_in is not None else None
    sync = SyncContext(
        settings=sync_settings,
        cvc=cvc.client,
        store=store,
        output_bucket=BUCKET,
        sink=sink,
        invocation=Invocation("local", "req-test", deadline),
    )
    clock = clock or Clock()
    alerter = Alerter()
    ctx = ScheduleContext(sync, settings or ScheduleSettings(), alerter, now=clock)
    return World(ctx, cvc, store, sink, clock, alerter)


def user(uid: str, name: str | None = None) -> dict[str, str]:
    return {"userId": uid, "userName": name or f"name-{uid}", "groupId": "88", "groupName": "示例科技"}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def upload_letter(uid: str, *, failed_at: datetime = START, name: str | None = None, **extra: Any) -> DeadLetter:
    """As ``runs.lifecycle.dead_letters`` writes an upsert CVC refused or could not take."""
    fields: dict[str, Any] = {
        "record": user(uid, name),
        "source": {"bucket": "uploads", "key": "users.csv", "line": 2, "userId": uid, "operation": "upsert"},
        "error_code": "ServiceUnavailable",
        "error_message": "the service is unavailable",
        "request_id": f"req-{uid}",
        "attempts": 2,
        "failed_at": iso(failed_at),
        "run_id": "run-1",
        "retryable": True,
    }
    return DeadLetter(**{**fields, **extra})


def delete_letter(uid: str, *, failed_at: datetime = START) -> DeadLetter:
    return DeadLetter(
        record={"userId": uid, "old": user(uid)},
        source={"bucket": "uploads", "key": "users.csv", "line": None, "userId": uid, "operation": "delete"},
        error_code="InternalError",
        error_message="boom",
        failed_at=iso(failed_at),
        run_id="run-1",
        retryable=True,
    )


def change_letter(
    uid: str, *, occurred_at: datetime, op: str = "upsert", failed_at: datetime = START, name: str | None = None
) -> DeadLetter:
    """As ``runs.changes._change_letter`` writes a queue change CVC refused."""
    record: dict[str, Any] = {
        "type": op,
        "userId": uid,
        "eventId": f"evt-{uid}-{occurred_at.timestamp():.0f}",
        "occurredAt": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if op == "upsert":
        record["user"] = user(uid, name)
    return DeadLetter(
        record=record,
        source={"messageId": "m-1", "origin": "sqs", "position": 0},
        error_code="10001",
        error_message="refused",
        failed_at=iso(failed_at),
        run_id="run-q",
    )
