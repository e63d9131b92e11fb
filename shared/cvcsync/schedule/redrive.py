"""The redrive: dead letters applied again, with backoff per letter, until they succeed or are parked.

One pass walks the sink page by page (``DeadLetterSink.pages``) while the invocation has time, and settles each
letter in exactly one outcome:

* ``applied`` (CreateUser/DeleteUser went through) or ``alreadyApplied`` (the state already holds exactly this
  record, so nothing was sent): the shadow state records it, the letter is removed;
* ``stale``: the state knows a newer change for that user (a later sync, change or redrive), so applying this one
  would undo it; removed. ``duplicate``: another letter of the same user in the page is newer, or is a copy of
  this one; removed (the newer one is the one that counts);
* ``rescheduled``: it failed again; put back with the failure added to its ``history``, removed in its old form;
* ``parked``: it failed ``CVCSYNC_REDRIVE_MAX_ATTEMPTS`` redrives, or can never succeed (a malformed queue
  message, a record that is no user); written to ``<output prefix>parked/`` with every failure, then removed;
* ``notDue``: its backoff has not passed (next try not before its last failure plus ``CVCSYNC_REDRIVE_BACKOFF_SECONDS``
  times two to the number of redrives so far, capped at ``CVCSYNC_REDRIVE_BACKOFF_MAX_SECONDS``); left alone;
* ``pending``: the deadline came or the circuit opened before its batch was sent; left alone.

Records CVC refused for a business reason are retried too: they often pass once someone fixes CVC (capacity, a
department) or the configuration, and the attempt limit bounds the cost.

Which of two changes to a user wins is the queue's rule (``clock``): event time, ties by arrival. A letter's time
is its change's (a queue letter's ``record.occurredAt``, which the queue path fills with the arrival when the
change had no time; an upload letter's ``source.occurredAt``, its run's start, or else its first failure, a little
after that start), compared with the user's last applied change in the state (``changes``, event times only).
When a write was committed (``users.synced_at``) never decides: a late, older change applied after a newer one
failed must not make the newer one look stale.

Order of writes, so a crash loses nothing and duplicates at worst a harmless retry: CVC first, then the state
commit, then the re-put and parked copies, and only then the removal from the sink. A crash before the removal
leaves the letter (and maybe its new copy) in the sink: the next pass finds the state already holds it
(``alreadyApplied``, no call), or settles the copies as ``duplicate`` by their identity, and parking is
create-only. The next timer continues where this one stopped.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cvcsync import clock
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.outcomes import check_accounting
from cvcsync.engine.settle import last_changes
from cvcsync.engine.state import EVENT_MEMORY_DAYS, ShadowState
from cvcsync.engine.views import ChangeSession
from cvcsync.errors import CvcSyncError
from cvcsync.inputs.changes import DELETE, UPSERT, UserChange
from cvcsync.inputs.records import RecordError, User, parse_user
from cvcsync.outputs.deadletters import DeadLetter, StoredLetter
from cvcsync.outputs.parked import PARKED_DIR, ParkedLetters
from cvcsync.runs.changes import ChangeBatch, ChangeEntry, run_changes
from cvcsync.schedule import alerts
from cvcsync.schedule.context import ScheduleContext, carry_last_sync, iso, read_options

log = logging.getLogger(__name__)

APPLIED, ALREADY, STALE, DUPLICATE = "applied", "alreadyApplied", "stale", "duplicate"
RESCHEDULED, PARKED, NOT_DUE, PENDING = "rescheduled", "parked", "notDue", "pending"
OUTCOMES = (APPLIED, ALREADY, STALE, DUPLICATE, RESCHEDULED, PARKED, NOT_DUE, PENDING)
SETTLED = (APPLIED, ALREADY, STALE, DUPLICATE, RESCHEDULED, PARKED)  # removed from the sink
NEVER_RETRYABLE, INVALID_LETTER, MAX_ATTEMPTS = "NeverRetryable", "InvalidLetter", "MaxAttempts"
OPTIONS = {"pageSize": int, "maxLetters": int, "ignoreBackoff": bool}
# What a change's outcome in the shared run means for its letter (anything else failed again: rescheduled).
_REDRIVE_OUTCOME = {
    "created": APPLIED,
    "updated": APPLIED,
    "deleted": APPLIED,
    "unchanged": ALREADY,
    "stale": STALE,
    "duplicate": DUPLICATE,
    "superseded": DUPLICATE,
}
_NOT_SENT = ("CircuitOpen", "DeadlineExceeded")  # not tried in this pass: the letter stays as it is
DEFAULT_PAGE_SIZE = 100
MAX_LISTED = 100


class InvalidLetter(CvcSyncError):
    code = INVALID_LETTER


@dataclass
class _Item:
    """One letter of a page and what it asks for: upsert ``record`` (validated user JSON) or delete ``user_id``."""

    stored: StoredLetter
    user_id: str = ""
    op: str = ""
    record: bytes | None = None
    user: User | None = None  # the validated user of an upsert
    origin: datetime = clock.EPOCH  # the change's time under the ordering rule (``_read_item``)
    event_id: str | None = None
    outcome: str | None = None
    error: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def letter(self) -> DeadLetter:
        return self.stored.letter

    @property
    def at(self) -> str:
        """The change's time in the one stored format: what the state's ``changes`` table compares."""
        return clock.stamp(self.origin)


@dataclass
class RedriveReport:
    run_id: str
    started_at: str
    finished_at: str = ""
    status: str = "done"
    pages: int = 0
    read: int = 0  # letters taken from the sink in this pass; each ends in exactly one outcome
    outcomes: Counter[str] = field(default_factory=Counter)
    state_generation: int | None = None
    parked: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "redrive",
            "runId": self.run_id,
            "status": self.status,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "pages": self.pages,
            "read": self.read,
            "outcomes": {name: self.outcomes.get(name, 0) for name in OUTCOMES},
            "stateGenerationAfter": self.state_generation,
            "parked": self.parked[:MAX_LISTED],
            "failed": self.failed[:MAX_LISTED],
            "messages": self.messages,
        }


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _read_item(stored: StoredLetter, defaults: dict[str, str]) -> _Item:
    """What the letter asks for; ``InvalidLetter`` when it is no user change (it can never succeed)."""
    letter = stored.letter
    item = _Item(stored)
    record = letter.record
    # When the change reached cvc-sync, at the latest: the time of a change that carries none of its own.
    first_failed = clock.parse(letter.first_failed_at) or clock.EPOCH
    try:
        if "type" in record:  # a change from the queue: {"type", "userId", "user", "eventId", "occurredAt"}
            item.op = _text(record.get("type"))
            user = record.get("user") if isinstance(record.get("user"), dict) else None
            item.event_id = _text(record.get("eventId")) or None
            item.origin = clock.event_time(clock.parse(record.get("occurredAt")), first_failed)
        else:  # a row of an upload: the user's fields, or {"userId", "old"} with source.operation "delete"
            item.op = _text(letter.source.get("operation")) or (
                "delete" if set(record) <= {"userId", "old"} else "upsert"
            )
            user = record
            # The run's start, which the upload path records its changes at (``source.occurredAt``, when the
            # letter carries it); else the first failure, a little after that start.
            item.origin = clock.event_time(clock.parse(letter.source.get("occurredAt")), first_failed)
        if item.op == "upsert":
            parsed = parse_user(user or {}, defaults=defaults)
            item.user_id, item.record, item.user = parsed.user_id, parsed.to_json(), parsed
        elif item.op == "delete":
            item.user_id = _text(record.get("userId")) or _text((user or {}).get("userId"))
        else:
            raise InvalidLetter(f"the letter's operation is {item.op!r}, neither upsert nor delete")
    except RecordError as exc:
        raise InvalidLetter(f"the record is not a valid user: {exc.message}") from None
    if not item.user_id:
        raise InvalidLetter("the letter names no user")
    return item


class Redrive:
    """One redrive pass (``run``) over the sink of ``ctx``; see the module docstring for what it guarantees."""

    def __init__(self, ctx: ScheduleContext, options: dict[str, Any] | None = None) -> None:
        checked = read_options("redrive", options or {}, OPTIONS)
        self.ctx = ctx
        self.page_size: int = checked.get("pageSize", DEFAULT_PAGE_SIZE)
        self.max_letters: int | None = checked.get("maxLetters")
        self.ignore_backoff: bool = checked.get("ignoreBackoff", False)
        self.run_id = f"redrive-{uuid.uuid4()}"
        self.report = RedriveReport(self.run_id, iso(ctx.now()))
        self.breaker = CircuitBreaker(ctx.sync.settings.circuit_failures)
        self.parked = ParkedLetters(ctx.sync.store, ctx.bucket, ctx.key(PARKED_DIR))
        self._handled: set[str] = set()  # identities settled in this pass: our own re-puts are not met twice
        self._workdir: Path | None = None
        self._page_runs = 0

    # -- the pass -------------------------------------------------------------------------------------------------

    def run(self) -> RedriveReport:
        sink = self.ctx.sync.sink
        if sink is None:
            raise CvcSyncError("the redrive needs a dead-letter sink", code="NoDeadLetterSink")
        with tempfile.TemporaryDirectory(prefix="cvcsync-redrive-") as tmp:
            self._workdir = Path(tmp)
            pages = sink.pages(self.page_size)
            while True:
                stop = self._reason_to_stop()
                if stop:
                    self.report.status = stop
                    break
                page = next(pages, None)
                if page is None:
                    break
                fresh = [s for s in page if s.letter.identity not in self._handled]
                self.report.pages += 1
                self.report.read += len(fresh)
                self._page(fresh)
                if self.breaker.open:
                    self.report.status = "circuit-open"
                    self._circuit_opened()
                    break
        return self._close()

    def _reason_to_stop(self) -> str | None:
        remaining = self.ctx.remaining()
        if remaining is not None and remaining <= 2 * self.ctx.sync.settings.deadline_margin:
            return "deadline"  # the next timer continues: what was not reached is still in the sink
        if self.max_letters is not None and self.report.read >= self.max_letters:
            return "max-letters"
        return None

    def _page(self, page: list[StoredLetter]) -> None:
        items: list[_Item] = []
        for stored in page:
            if stored.letter.kind != "record":  # a malformed queue message (or an unreadable line): hopeless
                items.append(_Item(stored, outcome=PARKED, reason=NEVER_RETRYABLE))
                continue
            try:
                items.append(_read_item(stored, self.ctx.sync.settings.defaults))
            except InvalidLetter as exc:
                items.append(_Item(stored, outcome=PARKED, reason=f"{INVALID_LETTER}: {exc.message}"))
        live = [i for i in items if i.outcome is None]
        if live:
            self._settle_duplicates(live)
            self._settle_stale([i for i in live if i.outcome is None])
            self._settle_not_due([i for i in live if i.outcome is None])
            due = [i for i in live if i.outcome is None]
            if due:
                self._apply(due)
        self._write_back(items)

    # -- deciding -------------------------------------------------------------------------------------------------

    @staticmethod
    def _settle_duplicates(items: list[_Item]) -> None:
        """Per user, the newest letter counts (ties: the one redriven more often, i.e. a re-put copy)."""
        best: dict[str, _Item] = {}
        for item in items:
            rank = (item.at, item.letter.redrives)
            current = best.get(item.user_id)
            if current is None or rank >= (current.at, current.letter.redrives):
                if current is not None:
                    current.outcome = DUPLICATE
                best[item.user_id] = item
            else:
                item.outcome = DUPLICATE

    def _settle_stale(self, items: list[_Item]) -> None:
        """A letter older than the user's last applied change (a sync's, a queue change's, a redrive's) is stale,
        by the queue's own rule (``clock.is_newer``) and event times only: before its backoff, so a stale letter
        leaves the sink at once. The page's users are read one by one (``engine.views``), never the snapshot."""
        if not items:
            return
        assert self._workdir is not None
        session = ChangeSession(self.ctx.sync.state, self._workdir, run_id=f"{self.run_id}-read")
        # No HEAD before the read: the one after it proves the generation read the newest (``engine.views``).
        view = session.read(sorted({i.user_id for i in items}), probe=False)
        try:
            known = last_changes(view.state, sorted({i.user_id for i in items}))  # with the last snapshot's time
        finally:
            view.state.close()
        for item in items:
            if not clock.is_newer(item.at, known.get(item.user_id)):
                item.outcome = STALE

    def _settle_not_due(self, items: list[_Item]) -> None:
        if self.ignore_backoff:
            return
        settings = self.ctx.settings
        now = self.ctx.now()
        for item in items:
            wait = min(settings.redrive_backoff_max, settings.redrive_backoff * 2**item.letter.redrives)
            failed = clock.parse(item.letter.failed_at) or clock.EPOCH
            if now < failed + timedelta(seconds=wait):
                item.outcome = NOT_DUE

    # -- applying -------------------------------------------------------------------------------------------------

    def _apply(self, items: list[_Item]) -> None:
        """The due letters as one batch of changes through the run every change writer uses
        (``runs.changes.run_changes``): the same ordering, plan workspace, in-flight mark, applier within the time
        budget, circuit, ``engine.settle`` commit and repairs. Only what becomes of a failure is the redrive's own:
        the letter goes back with its history or is parked (``_write_back``), so the run writes no new letter."""
        entries = [
            ChangeEntry(
                UserChange(
                    UPSERT if i.op == "upsert" else DELETE,
                    i.user_id,
                    i.user,
                    None,  # the letter is its own identity: its event id was settled when it was dead-lettered
                    i.origin,
                    "redrive",
                    f"letter {i.letter.identity}",
                ),
                i.origin,
                {"kind": "redrive", "letter": i.letter.identity},
            )
            for i in items
        ]
        self._page_runs += 1
        batch = ChangeBatch(
            writer="redrive",
            source={"kind": "redrive", "runId": self.run_id},
            entries=entries,
            run_id=f"{self.run_id}-page-{self._page_runs}",
            dead_letters=False,
            on_commit=lambda state: self._on_commit(state, [i.event_id for i in items if i.event_id]),
        )
        run = run_changes(batch, self.ctx.sync, breaker=self.breaker, store_report=False)
        generation = run.report.state.get("generationAfter")
        if isinstance(generation, int):
            self.report.state_generation = generation
        for item, result in zip(items, run.results, strict=True):
            item.outcome = _REDRIVE_OUTCOME.get(result.outcome, RESCHEDULED)
            if item.outcome == RESCHEDULED:
                item.error = dict(result.error or {})
                if item.error.get("code") in _NOT_SENT:
                    item.outcome = PENDING  # the deadline or an open circuit: left alone for the next pass

    @staticmethod
    def _on_commit(state: ShadowState, event_ids: list[str]) -> None:
        """What the redrive records beside the writes: the last real sync's time survives a scheduled task's
        commit (the heartbeat reads it), and the letters' event ids are settled (a redelivery is a duplicate)."""
        carry_last_sync(state)
        now = clock.now()
        forget = now - timedelta(days=EVENT_MEMORY_DAYS)
        state.record_events(event_ids, now=clock.stamp(now), forget_before=clock.stamp(forget))

    # -- writing back ---------------------------------------------------------------------------------------------

    def _write_back(self, items: list[_Item]) -> None:
        """Re-put and park first, remove from the sink last: a crash in between leaves copies, never a gap."""
        sink = self.ctx.sync.sink
        assert sink is not None
        max_attempts = self.ctx.settings.redrive_max_attempts
        put_back: list[DeadLetter] = []
        for item in items:
            if item.outcome == RESCHEDULED:
                again = self._failed_again(item)
                if again.redrives >= max_attempts:
                    item.outcome, item.reason = PARKED, MAX_ATTEMPTS
                    self._park(item, again)
                else:
                    put_back.append(again)
            elif item.outcome == PARKED:
                self._park(item, item.letter)
        if put_back:
            sink.put(put_back)
        settled = [i for i in items if i.outcome in SETTLED]
        if settled:
            sink.remove([i.stored.handle for i in settled])
        for item in items:
            assert item.outcome is not None
            self.report.outcomes[item.outcome] += 1
            if item.outcome in SETTLED:
                self._handled.add(item.letter.identity)

    def _failed_again(self, item: _Item) -> DeadLetter:
        detail = item.error
        code = str(detail.get("code") or "Unknown")
        self.report.failed.append({"userId": item.user_id, "code": code, "requestId": detail.get("requestId")})
        return item.letter.retried(
            error_code=code,
            error_message=str(detail.get("message") or ""),
            request_id=detail.get("requestId") if isinstance(detail.get("requestId"), str) else None,
            attempts=int(detail.get("attempts") or 1),
            retryable=bool(detail.get("retryable", False)),
            run_id=self.run_id,
            now=self.ctx.now(),
        )

    def _park(self, item: _Item, letter: DeadLetter) -> None:
        if not self.parked.put(letter, item.reason):
            log.info("letter was parked already (an earlier pass stopped before removing it)")
        self.report.parked.append(
            {
                "userId": item.user_id or None,
                "reason": item.reason,
                "errorCode": letter.error_code,
                "failures": len(letter.failures()),
                "key": self.parked.key_for(letter),
            }
        )

    # -- state and the end ----------------------------------------------------------------------------------------

    def _circuit_opened(self) -> None:
        reason = self.breaker.reason or "CVC failing"
        self.report.messages.append(f"circuit open: {reason}")
        alerts.mark_circuit_open(
            self.ctx.sync.store,
            self.ctx.bucket,
            self.ctx.output_prefix,
            reason=reason,
            source="redrive",
            request_id=self.ctx.sync.invocation.request_id,
            now=self.ctx.now(),
        )

    def _close(self) -> RedriveReport:
        report = self.report
        report.finished_at = iso(self.ctx.now())
        check_accounting(report.read, dict(report.outcomes))
        if report.read:
            key = self.ctx.key("reports", "redrive", f"{self.run_id}.json")
            self.ctx.sync.put_json(key, report.to_dict())
        if report.parked:
            codes = Counter(p["errorCode"] for p in report.parked)
            self.ctx.alerter.raise_alert(
                alerts.Alert(
                    alerts.LETTERS_PARKED,
                    f"the redrive parked {len(report.parked)} dead letter(s) under {self.ctx.key(PARKED_DIR)}",
                    {"parked": len(report.parked), "errorCodes": dict(sorted(codes.items())), "runId": self.run_id},
                ),
                source="redrive",
                request_id=self.ctx.sync.invocation.request_id,
            )
        outcomes = {k: v for k, v in report.outcomes.items() if v}
        log.info(
            "redrive %s",
            report.status,
            extra={"runId": self.run_id, "outcomes": outcomes, "pages": report.pages},
        )
        return report


COMPACT_TIME = 300.0  # seconds a compaction may need at 1M users (read the journal, write the whole generation)


def run_redrive(ctx: ScheduleContext, options: dict[str, Any]) -> dict[str, Any]:
    """A redrive pass, then the state's journal folded into a generation when it is long (``StateStore.
    compact_if_long``): the one place a large directory's compaction runs, in a timer's time, not a request's."""
    started = time.monotonic()
    report = Redrive(ctx, options).run()
    remaining = ctx.remaining()
    compacted = None
    if remaining is None or remaining > COMPACT_TIME:
        compacted = ctx.sync.state.compact_if_long()
    return {
        **report.to_dict(),
        "compactedGeneration": compacted,
        "durationMs": round((time.monotonic() - started) * 1000, 1),
    }
