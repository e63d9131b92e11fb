"""User changes through the engine, whoever wrote them: queue messages, HTTP writes, the redrive's letters.

``run_changes`` settles the changes against the state (duplicates, stale changes, superseded ones), plans the
winners in a workspace and hands it to the one lifecycle, ``runs.run.Run`` (in-flight mark, apply with a circuit
breaker within the time budget, dead letters, the state commit with each change at its own time, the report).
The state is read and committed per user (``engine.views.ChangeSession``): the run's users and event ids, never the
whole snapshot, so a change costs the same whatever the directory's size, and runs of different users never meet.
A writer only says *what* to write: a
``ChangeBatch`` of ``ChangeEntry`` (the change, its arrival, its origin). ``sync_changes`` is the queue's writer: it
parses messages into changes and the run's per-change results back into per-message results; the HTTP API's user
routes are another (``http_api.users``).

Semantics (one named test each):
- a malformed body is dead-lettered at once, with its reason, and never retried (it cannot succeed);
- an event id already applied (a redelivery) is a ``duplicate`` and costs nothing;
- with the shadow state, a change older than the last change applied to that user is ``stale``: an out-of-order
  "create" never resurrects a deleted user;
- within one run the changes of a user are coalesced: the latest event time wins (ties: the later arrival), the
  others are ``superseded``; what is left goes out in the fewest CreateUser/DeleteUser calls;
- a change CVC refuses for good (a business error) is dead-lettered; one that failed for a reason that may pass
  (throttling, 5xx, an open circuit, the deadline) is ``retried``: the writer hands it back (the queue's platform
  delivers the message again; the HTTP caller is told to retry), and the changes that did succeed are remembered,
  so a redelivery only sends the rest.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.outcomes import GuardResult, Outcome, Problem, RunReport, final_status
from cvcsync.engine.plan import decide
from cvcsync.engine.settle import DELETE, UPSERT, Repair, Write, last_changes
from cvcsync.engine.state import EVENT_MEMORY_DAYS, ShadowState
from cvcsync.engine.views import ChangeSession
from cvcsync.engine.workspace import DELTA, PlanRow, SyncPlan, insert_rows, new_workspace
from cvcsync.inputs.changes import MalformedMessage, UserChange, parse_changes
from cvcsync.inputs.events.queue import QueueBatch, QueueMessage
from cvcsync.inputs.records import content_hash
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.platform.context import SyncContext
from cvcsync.runs.run import Run

log = logging.getLogger(__name__)

DONE, DEAD_LETTERED, RETRY = "done", "dead-lettered", "retry"
MAX_PROBLEMS_IN_REPORT = 100
# What CVC now holds as the change asked (or needed no call): the state remembers these changes.
_WRITTEN = (Outcome.CREATED.value, Outcome.UPDATED.value, Outcome.DELETED.value, Outcome.UNCHANGED.value)


# -- what a writer hands to a run, and what it gets back ----------------------------------------------------------


@dataclass(frozen=True)
class ChangeEntry:
    """One change to write: the change, when cvc-sync received it (``clock``'s ordering rule: a change without a
    time of its own orders as its arrival) and where it came from (a dead letter's ``source``)."""

    change: UserChange
    arrival: datetime
    origin: dict[str, Any]


@dataclass
class ChangeBatch:
    """Everything one run writes. ``writer`` names who (``queue``, ``http``: the circuit alert's source);
    ``malformed``: inputs that never became changes, dead-lettered as they are; ``rejected``: inputs the writer
    refused and answered itself (an HTTP entry that is no valid user); ``skipped``: changes a safety gate the writer
    checked refused (``guards``, the failed one among them: the run is ``refused``, as an upload a gate stops). Each
    of those is one record of the run.
    ``dead_letters=False``: the writer keeps its failed entries itself (the redrive re-puts its letters with their
    history); ``on_commit``: what else the writer records in the same state commit. It is given a view of the run's
    users (``engine.views``): what it may record there is applied event ids (``ShadowState.record_events``) and
    meta (``set_meta``, carried to the next generation through the manifest); per-user data goes in the users'
    writes, the only thing of a user a change run commits."""

    writer: str
    source: dict[str, Any]
    entries: list[ChangeEntry]
    malformed: list[DeadLetter] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)
    guards: list[GuardResult] = field(default_factory=list)
    skipped: int = 0
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    dead_letters: bool = True
    on_commit: Callable[[ShadowState], None] | None = None


@dataclass(frozen=True)
class EntryResult:
    """How one entry ended (an ``Outcome`` value) and, when it failed, CVC's error (``code``, ``message``,
    ``requestId``, ``retryable``...) or why it was not sent (``CircuitOpen``, ``DeadlineExceeded``)."""

    outcome: str
    error: dict[str, Any] | None = None


@dataclass
class ChangeRun:
    report: RunReport
    results: list[EntryResult]  # one per entry, in the batch's order
    circuit_open: bool = False


# -- the queue's results ------------------------------------------------------------------------------------------


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


def _now() -> str:
    return clock.report_time()


@dataclass
class _Item:
    change: UserChange
    arrival: datetime
    origin: dict[str, Any]
    outcome: str | None = None
    error: dict[str, Any] | None = None
    sent: bool = False  # handed back after CVC was called: the call may have landed (its answer was lost)

    @property
    def at(self) -> str:
        """The change's time under the one ordering rule (``clock``): its own, else its arrival."""
        return clock.stamp(clock.event_time(self.change.occurred_at, self.arrival))


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
    last = last_changes(state, sorted({i.change.user_id for i in items if i.outcome is None}))  # with snapshots
    for item in items:
        if (
            item.outcome is None
            and item.change.user_id in last
            and not clock.is_newer(item.at, last[item.change.user_id])
        ):
            item.outcome = Outcome.STALE.value
    winners: dict[str, _Item] = {}
    for item in items:  # in arrival order: on equal times the later arrival wins
        if item.outcome is not None:
            continue
        best = winners.get(item.change.user_id)
        if best is None or clock.is_newer(item.at, best.at):
            if best is not None:
                best.outcome = Outcome.SUPERSEDED.value
            winners[item.change.user_id] = item
        else:
            item.outcome = Outcome.SUPERSEDED.value


def _row(index: int, item: _Item) -> PlanRow:
    change = item.change
    origin = orjson.dumps(item.origin).decode()
    if item.outcome is not None:
        return PlanRow(index, change.user_id, "settled", op=item.outcome, outcome=item.outcome, origin=origin)
    if change.op == "delete" or change.user is None:
        return PlanRow(index, change.user_id, "delete", origin=origin)
    payload = change.user.to_json()
    return PlanRow(index, change.user_id, "upsert", hash=content_hash(payload), record=payload.decode(), origin=origin)


def _unsent(breaker: CircuitBreaker | None) -> dict[str, Any]:
    """Why a change was not sent, or sent without an answer that counts: it is retried."""
    if breaker is not None and breaker.open:
        return {"code": "CircuitOpen", "message": f"not sent: CVC is failing ({breaker.reason})", "retryable": True}
    return {"code": "DeadlineExceeded", "message": "not sent before the deadline", "retryable": True}


def _plan(items: list[_Item], session: ChangeSession, report: RunReport, workdir: Path) -> SyncPlan:
    """Settle the items against the state (duplicates, stale, superseded) and plan the winners against it: the
    state of their users and event ids, read one by one."""
    events: dict[str, list[tuple[str, str]]] = {}  # event id -> (user, time) of each change it names
    for item in items:
        if item.change.event_id:
            events.setdefault(item.change.event_id, []).append((item.change.user_id, item.at))
    state = session.checkout([i.change.user_id for i in items], events)
    try:
        report.state["generationBefore"] = state.generation
        _settle(items, state)
        plan = new_workspace(workdir, mode=DELTA, state=state, source=report.source)
        insert_rows(plan, (_row(n, item) for n, item in enumerate(items, start=1)))
        decide(plan, state)
    finally:
        state.close()
    return plan


def _take_outcomes(items: list[_Item], plan: SyncPlan, breaker: CircuitBreaker | None) -> None:
    """Every item's outcome from its plan row; what was not sent, or failed for a reason that may pass, is
    ``retried``: the writer hands it back."""
    rows = plan.db.execute("SELECT line, outcome, error FROM rows")
    outcome_of = {seq: (outcome, error) for seq, outcome, error in rows}
    for n, item in enumerate(items, start=1):
        outcome, error = outcome_of[n]
        detail = orjson.loads(error) if error else None
        if outcome is None:
            item.outcome, item.error = Outcome.RETRIED.value, _unsent(breaker)
        elif outcome == Outcome.DEAD_LETTERED.value and detail and detail.get("retryable"):
            item.outcome, item.error = Outcome.RETRIED.value, detail  # the writer hands it back to be tried again
            item.sent = True
        else:
            item.outcome, item.error = outcome, detail


def run_changes(
    batch: ChangeBatch, ctx: SyncContext, *, breaker: CircuitBreaker | None = None, store_report: bool = True
) -> ChangeRun:
    """The lifecycle (``runs.run.Run``) for ``batch``; ``store_report=False`` where the store is not durable (a
    warm container's /tmp, memory): the report is then only logged and returned."""
    started = time.monotonic()
    run_id = batch.run_id
    report = RunReport(run_id=run_id, mode="changes", source=batch.source, started_at=_now())
    items = [_Item(e.change, e.arrival, e.origin) for e in batch.entries]
    budget = ctx.invocation.budget(min(ctx.settings.deadline_margin, 5.0))
    with tempfile.TemporaryDirectory(prefix="cvcsync-changes-") as tmp:
        session = ChangeSession(ctx.state, Path(tmp), run_id=run_id)
        plan = _plan(items, session, report, Path(tmp)) if items else None
        run = Run(
            ctx, plan, report, writer=batch.writer, budget=budget, breaker=breaker, started=started, journal=session
        )
        try:
            if plan is not None:
                if plan.pending_count():
                    run.apply()
                _take_outcomes(items, plan, run.breaker)
            # A malformed input or a rejected entry is one record: its changes are unknowable.
            report.rows_read = len(items) + len(batch.malformed) + len(batch.rejected) + batch.skipped
            outcomes = Counter(i.outcome for i in items)
            outcomes[Outcome.DEAD_LETTERED.value] += len(batch.malformed)
            outcomes[Outcome.REJECTED.value] += len(batch.rejected)
            outcomes[Outcome.SKIPPED_BY_GUARD.value] += batch.skipped
            report.guards = list(batch.guards)
            report.outcomes = {o.value: outcomes.get(o.value, 0) for o in Outcome}
            report.problem_count = len(batch.rejected)
            report.problems = batch.rejected[:MAX_PROBLEMS_IN_REPORT]
            letters = list(batch.malformed)
            if batch.dead_letters:
                letters.extend(_change_letter(i, run_id) for i in items if i.outcome == Outcome.DEAD_LETTERED.value)
            report.dead_letters = run.put_letters(letters)
            _remember(run, items, batch)
        finally:
            if plan is not None:
                plan.close()
    report.status = final_status(report.outcomes, refused=report.refused).value
    if run.breaker is not None and run.breaker.reason:
        report.messages.append(f"circuit open: {run.breaker.reason}")
        run.alert_circuit_open()
    keys = (ctx.settings.key("reports", "changes", batch.writer, f"{run_id}.json"), run.run_report_key())
    run.close(report_keys=keys if store_report else (), log_fields={"retried": report.outcomes[Outcome.RETRIED.value]})
    circuit_open = run.breaker is not None and run.breaker.open
    return ChangeRun(report, [EntryResult(str(i.outcome), i.error) for i in items], circuit_open)


def _remember(run: Run, items: list[_Item], batch: ChangeBatch) -> None:
    """What CVC now holds, the last change time per user, and the event ids that are settled. A change handed back
    after CVC was called is, like one dead-lettered, the user's latest intent (``engine.settle``): CVC may hold it,
    so its time is recorded and its user is uncertain (a writer that planned without it repairs its own content,
    and its redelivery, at the same time, is not stale)."""
    applied = [i for i in items if i.outcome != Outcome.RETRIED.value]
    written = [i for i in applied if i.outcome in _WRITTEN or i.outcome == Outcome.DEAD_LETTERED.value]
    written += [i for i in items if i.outcome == Outcome.RETRIED.value and i.sent]
    # A copy (``duplicate``) settles nothing of its own: its original may have failed in this very batch and be
    # delivered again, and remembering the copy's id would turn that redelivery into a "duplicate" too.
    settled_events = [i.change.event_id for i in applied if i.change.event_id and i.outcome != Outcome.DUPLICATE.value]

    def also(state: ShadowState, _repairs: list[Repair]) -> None:
        if batch.on_commit is not None:
            batch.on_commit(state)
        now = clock.now()
        state.record_events(
            settled_events, now=clock.stamp(now), forget_before=clock.stamp(now - timedelta(days=EVENT_MEMORY_DAYS))
        )

    # A run that marked users in flight commits even with nothing to record (``Run.commit``).
    run.commit(lambda: [_write(i) for i in written], also=also, needed=bool(written or settled_events))


def _write(item: _Item) -> Write:
    """What the state records of a change CVC now holds (or held already: ``unchanged``)."""
    change = item.change
    # The latest intent all the same (``engine.settle``), whether dead-lettered or handed back to be retried.
    failed = item.outcome in (Outcome.DEAD_LETTERED.value, Outcome.RETRIED.value)
    if change.op == "upsert" and change.user is not None:
        payload = change.user.to_json()
        changed = item.outcome != Outcome.UNCHANGED.value
        digest = content_hash(payload)
        return Write(change.user_id, item.at, UPSERT, digest, payload.decode(), changed=changed, landed=not failed)
    changed = item.outcome in (Outcome.DELETED.value, Outcome.DEAD_LETTERED.value, Outcome.RETRIED.value)
    return Write(change.user_id, item.at, DELETE, changed=changed, landed=not failed)


def _change_letter(item: _Item, run_id: str) -> DeadLetter:
    change, detail = item.change, item.error or {}
    record: dict[str, Any] = {
        "type": change.op,
        "userId": change.user_id,
        "eventId": change.event_id,
        # The time the redrive orders this change by: its own, or its arrival (one rule, ``clock``).
        "occurredAt": item.at,
    }
    if change.user is not None:
        record["user"] = change.user.to_cvc()
    return DeadLetter(
        record=record,
        source={**item.origin, "position": change.position},
        error_code=str(detail.get("code", "Unknown")),
        error_message=str(detail.get("message", "")),
        request_id=detail.get("requestId"),
        attempts=int(detail.get("attempts") or 1),
        run_id=run_id,
        kind="record",
        retryable=False,
    )


# -- the queue's writer -------------------------------------------------------------------------------------------


def sync_changes(
    batch: QueueBatch, ctx: SyncContext, *, breaker: CircuitBreaker | None = None, store_report: bool = True
) -> ChangeSyncResult:
    """One queue invocation: each message's changes through ``run_changes``; each message done, dead-lettered
    (malformed, or every change refused for good) or to retry (some change may pass later)."""
    breaker = breaker or CircuitBreaker(ctx.settings.circuit_failures)
    results = [MessageResult(m.message_id, group_id=m.group_id) for m in batch.messages]
    source = {"kind": batch.platform_kind, "replay": batch.replay, "messages": len(batch.messages)}
    changes = ChangeBatch(writer="queue", source=source, entries=[])
    owners: list[int] = []  # the message of each entry
    arrival = clock.now()  # a change with no time of its own (nor a transport time) orders as its arrival
    for index, message in enumerate(batch.messages):
        try:
            parsed = parse_changes(
                message.body,
                message_id=message.message_id,
                defaults=ctx.settings.defaults,
                received_at=message.published_at,
            )
        except MalformedMessage as exc:
            results[index].status, results[index].reason = DEAD_LETTERED, exc.message
            changes.malformed.append(_message_letter(message, exc, changes.run_id, batch.platform_kind))
            continue
        origin = {"messageId": message.message_id, "origin": message.origin}
        for change in parsed:
            changes.entries.append(ChangeEntry(change, message.published_at or arrival, origin))
            owners.append(index)

    run = run_changes(changes, ctx, breaker=breaker, store_report=store_report)
    for owner, result in zip(owners, run.results, strict=True):
        if result.outcome == Outcome.RETRIED.value:  # the platform delivers the message again
            error = result.error or {}
            results[owner].status = RETRY
            results[owner].reason = breaker.reason or error.get("code") or "not sent before the deadline"
    return ChangeSyncResult(run.report, results, run.circuit_open)


def _message_letter(message: QueueMessage, error: MalformedMessage, run_id: str, kind: str) -> DeadLetter:
    return DeadLetter.from_error(
        {"body": message.body[:200_000], "attributes": message.attributes},
        {"kind": kind, "messageId": message.message_id, "origin": message.origin, "groupId": message.group_id},
        error,
        run_id=run_id,
        kind="message",
        attempts=message.receive_count or 1,
    )
