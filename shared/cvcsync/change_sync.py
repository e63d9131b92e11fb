"""Syncing user-change events (queue messages): parse, de-duplicate, drop stale, coalesce, apply, account.

Semantics (one named test each):
- a malformed body is dead-lettered at once, with its reason, and never retried (it cannot succeed);
- an event id already applied (a redelivery) is a ``duplicate`` and costs nothing;
- with the shadow state, a change older than the last change applied to that user is ``stale``: an out-of-order
  "create" never resurrects a deleted user;
- within one invocation the changes of a user are coalesced: the latest ``occurredAt`` wins (ties: the later
  arrival), the others are ``superseded``; what is left goes out in the fewest CreateUser/DeleteUser calls;
- a change CVC refuses for good (a business error) is dead-lettered; one that failed for a reason that may pass
  (throttling, 5xx, an open circuit, the deadline) is ``retried``: its message is handed back to the platform,
  and the changes of that message that did succeed are remembered, so the redelivery only sends the rest.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from .changes import MalformedMessage, UserChange, parse_changes
from .context import SyncContext
from .deadletters import DeadLetter
from .engine.apply import Applier, ApplySettings
from .engine.circuit import CircuitBreaker
from .engine.outcomes import Outcome, RunReport, check_accounting
from .engine.plan import DELTA, decide, insert_rows, new_workspace
from .engine.state import EVENT_MEMORY_DAYS, ShadowState
from .errors import CvcSyncError
from .events.queue import QueueBatch, QueueMessage
from .records import content_hash

log = logging.getLogger(__name__)

DONE, DEAD_LETTERED, RETRY = "done", "dead-lettered", "retry"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class MessageResult:
    message_id: str
    status: str = DONE
    group_id: str | None = None
    reason: str | None = None


@dataclass
class ChangeSyncResult:
    report: RunReport
    messages: list[MessageResult] = field(default_factory=list)
    circuit_open: bool = False

    @property
    def to_retry(self) -> list[MessageResult]:
        return [m for m in self.messages if m.status == RETRY]


def _iso(moment: datetime | None) -> str:
    return (moment or _EPOCH).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Item:
    message: int
    change: UserChange
    outcome: str | None = None


def _settle(items: list[_Item], state: ShadowState) -> None:
    """Duplicates, stale changes and superseded ones get their outcome; winners keep None."""
    event_ids = [i.change.event_id for i in items if i.change.event_id]
    seen = state.seen_events(event_ids)
    in_batch: set[str] = set()
    for item in items:
        event_id = item.change.event_id
        if event_id and (event_id in seen or event_id in in_batch):
            item.outcome = Outcome.DUPLICATE.value
        elif event_id:
            in_batch.add(event_id)
    last = state.last_changes(sorted({i.change.user_id for i in items if i.outcome is None}))
    for item in items:
        if (
            item.outcome is None
            and item.change.user_id in last
            and _iso(item.change.occurred_at) < last[item.change.user_id]
        ):
            item.outcome = Outcome.STALE.value
    winners: dict[str, _Item] = {}
    for item in items:  # in arrival order: on equal times the later arrival wins
        if item.outcome is not None:
            continue
        best = winners.get(item.change.user_id)
        if best is None or _iso(item.change.occurred_at) >= _iso(best.change.occurred_at):
            if best is not None:
                best.outcome = Outcome.SUPERSEDED.value
            winners[item.change.user_id] = item
        else:
            item.outcome = Outcome.SUPERSEDED.value


def _row(index: int, item: _Item, message: QueueMessage) -> tuple[Any, ...]:
    change = item.change
    origin = message.message_id
    if item.outcome is not None:
        return (index, change.user_id, "settled", item.outcome, None, None, None, item.outcome, origin)
    if change.op == "delete" or change.user is None:
        return (index, change.user_id, "delete", None, None, None, None, None, origin)
    payload = change.user.to_json()
    return (index, change.user_id, "upsert", None, content_hash(payload), payload.decode(), None, None, origin)


def sync_changes(batch: QueueBatch, ctx: SyncContext, *, breaker: CircuitBreaker | None = None) -> ChangeSyncResult:
    started = time.monotonic()
    breaker = breaker or CircuitBreaker()
    run_id = str(uuid.uuid4())
    report = RunReport(
        run_id=run_id,
        mode="changes",
        source={"kind": batch.platform_kind, "replay": batch.replay, "messages": len(batch.messages)},
        started_at=_now(),
    )
    results = [MessageResult(m.message_id, group_id=m.group_id) for m in batch.messages]
    items: list[_Item] = []
    letters: list[DeadLetter] = []
    for index, message in enumerate(batch.messages):
        try:
            changes = parse_changes(
                message.body,
                message_id=message.message_id,
                defaults=ctx.settings.defaults,
                received_at=message.published_at,
            )
        except MalformedMessage as exc:
            results[index].status, results[index].reason = DEAD_LETTERED, exc.message
            letters.append(_message_letter(message, exc, run_id, batch.platform_kind))
            continue
        items.extend(_Item(index, change) for change in changes)
    malformed = len(letters)

    with tempfile.TemporaryDirectory(prefix="cvcsync-changes-") as tmp:
        workdir = Path(tmp)
        state = ctx.state.checkout(workdir)
        try:
            _settle(items, state)
            plan = new_workspace(workdir, mode=DELTA, state=state, source=report.source)
            insert_rows(plan, (_row(n, item, batch.messages[item.message]) for n, item in enumerate(items, start=1)))
            decide(plan, state)
        finally:
            state.close()
        try:
            settings = ApplySettings(
                batch_size=ctx.cvc.settings.batch_size,
                concurrency=ctx.settings.concurrency,
                deadline=ctx.invocation.deadline,
                margin=min(ctx.settings.deadline_margin, 5.0),
            )
            Applier(ctx.cvc, settings, breaker=breaker).run(plan)
            outcome_of = {
                seq: (outcome, error)
                for seq, outcome, error in plan.db.execute("SELECT line, outcome, error FROM rows")
            }
        finally:
            plan.close()

    applied: list[_Item] = []
    for n, item in enumerate(items, start=1):
        outcome, error = outcome_of[n]
        detail = orjson.loads(error) if error else {}
        if outcome is None or (outcome == Outcome.DEAD_LETTERED.value and detail.get("retryable")):
            item.outcome = Outcome.RETRIED.value  # the platform delivers the message again
            results[item.message].status = RETRY
            results[item.message].reason = breaker.reason or detail.get("code") or "not sent before the deadline"
            continue
        item.outcome = outcome
        if outcome == Outcome.DEAD_LETTERED.value:
            letters.append(_change_letter(batch.messages[item.message], item.change, detail, run_id))
        applied.append(item)

    report.rows_read = len(items) + malformed  # a malformed message is one record: its changes are unknowable
    outcomes = Counter(i.outcome for i in items)
    outcomes[Outcome.DEAD_LETTERED.value] += malformed
    report.outcomes = {o.value: outcomes.get(o.value, 0) for o in Outcome}
    check_accounting(report.received, report.outcomes)
    if letters:
        if ctx.sink is None:
            raise CvcSyncError(
                f"{len(letters)} changes failed and no dead-letter sink is configured", code="NoDeadLetterSink"
            )
        report.dead_letters = ctx.sink.put(letters)
    _remember(applied, ctx, run_id, report)
    report.calls = {
        k: n - ctx.calls_baseline.get(k, 0) for k, n in ctx.cvc.calls.items() if n > ctx.calls_baseline.get(k, 0)
    }
    report.durations_ms["total"] = (time.monotonic() - started) * 1000
    report.finished_at = _now()
    report.status = "circuit-open" if breaker.open else "applied"
    if breaker.reason:
        report.messages.append(f"circuit open: {breaker.reason}")
        from .schedule.alerts import mark_circuit_open  # the heartbeat task alerts on this marker

        mark_circuit_open(
            ctx.store,
            ctx.output_bucket,
            ctx.settings.output_prefix,
            reason=breaker.reason,
            source="queue",
            request_id=ctx.invocation.request_id,
        )
    log.info(
        "changes synced",
        extra={
            "runId": run_id,
            "outcomes": report.outcomes,
            "messages": len(results),
            "retry": sum(1 for r in results if r.status == RETRY),
        },
    )
    return ChangeSyncResult(report, results, breaker.open)


def _remember(applied: list[_Item], ctx: SyncContext, run_id: str, report: RunReport) -> None:
    """What CVC now holds, the last change time per user, and the event ids that are settled."""
    written = [
        i
        for i in applied
        if i.outcome in (Outcome.CREATED.value, Outcome.UPDATED.value, Outcome.DELETED.value, Outcome.UNCHANGED.value)
    ]
    # A copy (``duplicate``) settles nothing of its own: its original may have failed in this very batch and be
    # delivered again, and remembering the copy's id would turn that redelivery into a "duplicate" too.
    settled_events = [i.change.event_id for i in applied if i.change.event_id and i.outcome != Outcome.DUPLICATE.value]
    if not written and not settled_events:
        return

    def changes(state: ShadowState) -> None:
        upserts = [
            (i.change.user_id, content_hash(p), p.decode())
            for i in written
            if i.change.user is not None and i.change.op == "upsert" and i.outcome != Outcome.UNCHANGED.value
            for p in [i.change.user.to_json()]
        ]
        state.upsert(upserts)
        state.delete([i.change.user_id for i in written if i.outcome == Outcome.DELETED.value])
        state.record_changes([(i.change.user_id, _iso(i.change.occurred_at), i.change.op) for i in written])
        now = datetime.now(timezone.utc)
        state.record_events(settled_events, now=_iso(now), forget_before=_iso(now - timedelta(days=EVENT_MEMORY_DAYS)))

    report.state["generationAfter"] = ctx.state.commit(changes, run_id=run_id)


def _message_letter(message: QueueMessage, error: MalformedMessage, run_id: str, kind: str) -> DeadLetter:
    return DeadLetter.from_error(
        {"body": message.body[:200_000], "attributes": message.attributes},
        {"kind": kind, "messageId": message.message_id, "origin": message.origin, "groupId": message.group_id},
        error,
        run_id=run_id,
        kind="message",
        attempts=message.receive_count or 1,
    )


def _change_letter(message: QueueMessage, change: UserChange, detail: dict[str, Any], run_id: str) -> DeadLetter:
    record: dict[str, Any] = {
        "type": change.op,
        "userId": change.user_id,
        "eventId": change.event_id,
        "occurredAt": _iso(change.occurred_at) if change.occurred_at else None,
    }
    if change.user is not None:
        record["user"] = change.user.to_cvc()
    return DeadLetter(
        record=record,
        source={"messageId": message.message_id, "origin": message.origin, "position": change.position},
        error_code=str(detail.get("code", "Unknown")),
        error_message=str(detail.get("message", "")),
        request_id=detail.get("requestId"),
        attempts=int(detail.get("attempts") or 1),
        run_id=run_id,
        kind="record",
        retryable=False,
    )
