"""``Run``: the one lifecycle every write to CVC goes through, whoever asked for it.

A writer builds a typed plan (``engine.workspace.SyncPlan`` of ``PlanRow``s) and hands it to a ``Run``, which owns
the steps in their one order::

    mark in flight -> apply within the time budget -> dead letters -> state commit (engine.settle) -> report

The writers say only *what* to write: the export runs (``runs.lifecycle``: upload, resume, chunk, saved plan) add
checkpoints and fan-out around ``apply``; the change runs (``runs.changes``: queue messages, HTTP writes, the
redrive) coalesce changes before planning; reconcile's heal-cvc (``schedule.reconcile_task``) pushes the state's
users. Each step is here once, so none of them can skip one: a run that marked users in flight always commits (the
commit folds its list into a generation), a failed write is recorded as the user's latest intent (uncertain), a
race lost to a newer change is dead-lettered as a repair, and every report is closed the same way (calls, timings,
received = Σ outcomes).

Where a run's writes go is the state's business (``engine.state``): an export's, a continuation's and reconcile's
into the next generation of the whole snapshot; a change run's (``journal``: a ``engine.views.ChangeSession``)
into the journal, one entry per user, so that a change costs the same at 1k users as at 1M. Both record through
the one rule and return the same repairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from cvcsync import clock
from cvcsync.budget import TimeBudget
from cvcsync.engine.apply import Applier, ApplyResult, ApplySettings
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.concurrency import combine
from cvcsync.engine.outcomes import RunReport, RunStatus, check_accounting
from cvcsync.engine.settle import Repair, Write, repair_letters, settle_writes
from cvcsync.engine.state import ShadowState
from cvcsync.engine.views import ChangeSession
from cvcsync.engine.workspace import SyncPlan
from cvcsync.errors import CvcSyncError
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.platform.context import SyncContext

log = logging.getLogger(__name__)

SETTLE_BATCH = 5000  # writes settled per step of a commit: the state's lookups are batched, memory stays flat


class Run:
    """One run of ``plan`` for ``writer`` (``upload``, ``queue``, ``http``, ``redrive``, ``reconcile``): its
    report, its time budget, its circuit breaker (``circuit=False``: none, failures are dead-lettered after their
    retries), and the shared steps. ``plan`` is None when every input was refused before planning (malformed
    messages): then there is nothing to mark, send or commit, only letters and the report. ``journal``: the
    change run's session its plan was read through; its marks and its commit go to the journal."""

    def __init__(
        self,
        ctx: SyncContext,
        plan: SyncPlan | None,
        report: RunReport,
        *,
        writer: str,
        budget: TimeBudget | None = None,
        breaker: CircuitBreaker | None = None,
        circuit: bool = True,
        started: float | None = None,
        journal: ChangeSession | None = None,
    ) -> None:
        self.ctx = ctx
        self.journal = journal
        self._plan = plan
        self.report = report
        self.writer = writer
        self.budget = budget if budget is not None else ctx.invocation.budget(ctx.settings.deadline_margin)
        self.breaker = breaker if breaker is not None or not circuit else CircuitBreaker(ctx.settings.circuit_failures)
        self.started = time.monotonic() if started is None else started

    @property
    def plan(self) -> SyncPlan:
        if self._plan is None:
            raise ValueError("this run has no plan: every input was refused before planning")
        return self._plan

    @property
    def run_id(self) -> str:
        return self.report.run_id

    # -- before the first write ---------------------------------------------------------------------------------

    def mark_in_flight(self) -> None:
        """Tell the state which users this run may change (``engine.state``), once per run and only when it has
        something to send: a run killed between CVC and its commit leaves those users uncertain, never wrong."""
        plan = self._plan
        if plan is not None and "inFlight" not in self.report.state and plan.pending_count():
            if self.journal is not None:
                self.report.state["inFlight"] = self.journal.mark_in_flight(self.run_id, plan.in_flight())
            else:
                self.report.state["inFlight"] = self.ctx.state.mark_in_flight(self.run_id, plan.in_flight())

    # -- the writes ---------------------------------------------------------------------------------------------

    def apply(self, *, chunk: int | None = None, on_progress: Callable[[int], None] | None = None) -> ApplyResult:
        """Send what is pending (of one chunk, for a fanned-out run) within the budget; its time is added to the
        report's ``apply`` duration."""
        self.mark_in_flight()
        settings = ApplySettings(
            batch_size=self.ctx.cvc.settings.batch_size,
            concurrency=self.ctx.settings.concurrency,
            max_concurrency=self.ctx.settings.max_concurrency,
            budget=self.budget,
        )
        began = time.monotonic()
        result = Applier(self.ctx.cvc, settings, on_progress=on_progress, breaker=self.breaker).run(
            self.plan, chunk=chunk
        )
        durations = self.report.durations_ms
        durations["apply"] = durations.get("apply", 0.0) + (time.monotonic() - began) * 1000
        if result.concurrency is not None and result.concurrency.attempts:
            self.report.concurrency = combine(self.report.concurrency, result.concurrency)
        return result

    def alert_circuit_open(self) -> None:
        """CVC failed as a whole: leave the marker the heartbeat task alerts on (``schedule.alerts``)."""
        from cvcsync.schedule.alerts import mark_circuit_open

        mark_circuit_open(
            self.ctx.store,
            self.ctx.output_bucket,
            self.ctx.settings.output_prefix,
            reason=(self.breaker.reason if self.breaker else None) or "CVC failing",
            source=self.writer,
            request_id=self.ctx.invocation.request_id,
        )

    # -- after the writes ---------------------------------------------------------------------------------------

    def put_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Dead-letter what could not be applied; with no sink configured the run fails rather than lose them."""
        if not letters:
            return 0
        if self.ctx.sink is None:
            raise CvcSyncError(
                f"{len(letters)} records failed and no dead-letter sink is configured", code="NoDeadLetterSink"
            )
        return self.ctx.sink.put(list(letters))

    def commit(
        self,
        writes: Callable[[], Iterable[Write]],
        *,
        also: Callable[[ShadowState, list[Repair]], None] | None = None,
        needed: bool = True,
        snapshot_rows: int | None = None,
        repair_letters_to_sink: bool = True,
        unchanged: bool = False,
    ) -> list[Repair]:
        """Record what CVC now holds: each write at its event time through the one rule (``engine.settle``),
        against the generation the plan was made on. ``writes`` is called afresh on each attempt (a commit that
        met a concurrent one runs again on the newer generation); ``also`` records what else the writer keeps in
        the same generation (a snapshot's time, settled event ids, the last sync). ``needed=False``: nothing to
        record; the run still commits when it marked users in flight, so no list outlives its run. A change run
        commits to the journal instead (``journal``): the same rule, replayed per user (``engine.views``).

        Races lost to newer changes committed meanwhile come back as repairs: dead-lettered, so the newest change
        is applied again (``repair_letters_to_sink=False``: a writer with no sink of its own, reconcile, only
        counts them). ``unchanged``: the plan wrote no user; when the state has not moved since the plan, only the
        meta ``also`` records is committed (``StateStore.commit_unchanged``: one small object, not the snapshot)."""
        report = self.report
        if not needed and not report.state.get("inFlight"):
            report.state.setdefault("generationAfter", report.state.get("generationBefore"))
            return []
        base = self._plan.state_generation if self._plan is not None else None
        repairs: list[Repair] = []
        if self.journal is not None:
            report.state["generationAfter"], found = self.journal.commit(list(writes()), also)
            repairs.extend(found)
            report.state["journalEntries"] = self.journal.entries
        else:

            def changes(state: ShadowState) -> None:
                repairs.clear()
                pending = iter(writes())
                while batch := list(islice(pending, SETTLE_BATCH)):
                    repairs.extend(settle_writes(state, batch, base_generation=base))
                if also is not None:
                    also(state, repairs)

            late: list[Repair] = []
            committed = None
            if unchanged and self._plan is not None and not report.state.get("inFlight"):
                committed = self.ctx.state.commit_unchanged(
                    changes,
                    run_id=self.run_id,
                    snapshot_rows=snapshot_rows,
                    planned_on=self._plan.state_generation,
                    journal=self._plan.state_journal,
                    late_repairs=late,
                )
                report.state["metaOnly"] = committed is not None
            if committed is None:
                committed = self.ctx.state.commit(
                    changes, run_id=self.run_id, snapshot_rows=snapshot_rows, late_repairs=late, writes_settled=True
                )
            report.state["generationAfter"] = committed
            repairs.extend(late)
        if repairs:
            report.state["repairs"] = len(repairs)
            report.messages.append(
                f"{len(repairs)} user(s) were changed by another writer while this run applied: their newest change "
                "is dead-lettered to be applied again (LostRace)"
            )
            letters = repair_letters(repairs, run_id=self.run_id, source={**report.source, "kind": "repair"})
            if repair_letters_to_sink:
                self.put_letters(letters)
            elif self.ctx.sink is not None:
                self.ctx.sink.put(letters)
        return repairs

    def close(self, *, report_keys: Sequence[str] = (), log_fields: dict[str, Any] | None = None) -> RunReport:
        """Finish the report (CVC calls, timings, received = Σ outcomes) and store it under each key."""
        report = self.report
        baseline = self.ctx.calls_baseline
        report.calls = {k: n - baseline.get(k, 0) for k, n in self.ctx.cvc.calls.items() if n > baseline.get(k, 0)}
        report.durations_ms["total"] = (time.monotonic() - self.started) * 1000
        report.finished_at = clock.report_time()
        if report.status == RunStatus.DRY_RUN.value:
            check_accounting(report.received, report.planned)  # nothing applied: every row has a planned operation
        else:
            report.check()
        if report_keys:
            document = report.to_dict()
            for key in report_keys:
                self.ctx.put_json(key, document)
        level = logging.ERROR if report.refused or report.status == RunStatus.REJECTED.value else logging.INFO
        log.log(
            level,
            "%s run %s",
            self.writer,
            report.status,
            extra={"runId": self.run_id, "writer": self.writer, "outcomes": report.outcomes, **(log_fields or {})},
        )
        return report

    def run_report_key(self) -> str:
        """Where a run's report is found by its id alone (the HTTP API's ``GET /runs/{id}``)."""
        return self.ctx.settings.key("runs", self.run_id, "report.json")
