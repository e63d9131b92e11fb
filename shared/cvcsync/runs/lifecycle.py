"""The steps every export run shares, whoever continues it: in-flight mark, apply within the time budget (with a
circuit breaker that pauses the run in an outage), checkpoint or fan-out when it cannot finish here, then dead
letters, the state commit (``engine.settle``: each write at its event time) and the report.

``runs.export`` plans a run and hands it here; ``runs.continuation`` loads a saved run and hands it here again.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.engine.apply import CHECKPOINTED, CIRCUIT_OPEN, Applier, ApplySettings
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.outcomes import Outcome, RunReport, RunStatus, check_accounting, final_status
from cvcsync.engine.settle import DELETE as DELETE_WRITE
from cvcsync.engine.settle import (
    UPSERT,
    Repair,
    Write,
    record_snapshot,
    repair_letters,
    settle_writes,
    snapshot_repairs,
)
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELETE, SyncPlan
from cvcsync.errors import CvcSyncError
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.problems_csv import problems_csv
from cvcsync.platform.context import SyncContext
from cvcsync.runs import approvals

log = logging.getLogger(__name__)

MAX_PROBLEMS_IN_REPORT = 100
MAX_PAUSES = 6  # circuit-open pauses of one run before what is left is dead-lettered for the redrive
MAX_PAUSE_SECONDS = 600.0


def time_now() -> str:
    return clock.report_time()


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cvcsync-run-") as tmp:
        yield Path(tmp)


def dead_letters(plan: SyncPlan, ctx: SyncContext, report: RunReport) -> int:
    """The records that failed, each with its source line and its change's event time (``source.occurredAt``:
    the redrive orders it by that, as every writer orders changes)."""
    run_id = report.run_id
    query = "SELECT seq, line, user_id, record, old, error FROM rows WHERE outcome = 'deadLettered' ORDER BY seq"
    letters: list[DeadLetter] = []
    source = plan.source
    for _seq, line, user_id, record, old, error in plan.db.execute(query):
        detail = orjson.loads(error or b"{}")
        letters.append(
            DeadLetter(
                record=orjson.loads(record)
                if record
                else {"userId": user_id, **({"old": orjson.loads(old)} if old else {})},
                source={
                    **source,
                    "line": line,
                    "userId": user_id,
                    "operation": "delete" if record is None else "upsert",
                    **({"occurredAt": report.event_time} if report.event_time else {}),
                },
                error_code=str(detail.get("code", "Unknown")),
                error_message=str(detail.get("message", "")),
                request_id=detail.get("requestId"),
                attempts=int(detail.get("attempts") or 0),
                failed_at=time_now(),
                run_id=run_id,
                kind="record",
                retryable=bool(detail.get("retryable", False)),
            )
        )
    return put_letters(ctx, letters)


def put_letters(ctx: SyncContext, letters: list[DeadLetter]) -> int:
    if not letters:
        return 0
    if ctx.sink is None:
        raise CvcSyncError(
            f"{len(letters)} records failed and no dead-letter sink is configured", code="NoDeadLetterSink"
        )
    return ctx.sink.put(letters)


def commit_state(plan: SyncPlan, report: RunReport, ctx: SyncContext) -> None:
    """Record what CVC now holds at the input's event time (``engine.settle``); races lost to newer changes
    committed meanwhile, and users a newer accepted snapshot lacks, are dead-lettered as repairs."""
    at = report.event_time or clock.stamp(clock.now())
    accepted = plan.mode == "full" and not report.refused
    repairs: list[Repair] = []

    def changes(state: ShadowState) -> None:
        repairs.clear()  # a commit that met a concurrent one runs again on the newer generation
        upserts, deletes = plan.changes_for_state()
        writes = chain(
            (Write(uid, at, UPSERT, digest, record) for uid, digest, record in upserts),
            (Write(uid, at, DELETE_WRITE) for uid in deletes),
            # Writes that failed are the latest intents all the same (``engine.settle``): dead-lettered, uncertain.
            (
                Write(uid, at, DELETE_WRITE if op == DELETE else UPSERT, digest, record, landed=False)
                for uid, op, digest, record in plan.db.execute(
                    "SELECT user_id, op, hash, record FROM rows WHERE outcome = 'deadLettered' "
                    "AND op IN ('create', 'update', 'delete')"
                )
            ),
        )
        while batch := list(islice(writes, 5000)):
            repairs.extend(settle_writes(state, batch, base_generation=plan.state_generation))
        if accepted:
            if state.generation != plan.state_generation:  # another writer committed since the plan
                mine = {r.user_id for r in repairs}
                more = snapshot_repairs(state, plan.users_named, at, plan.state_generation)
                repairs.extend(r for r in more if r.user_id not in mine)
            record_snapshot(state, at)

    written = plan.db.execute(
        "SELECT COUNT(*) FROM rows WHERE outcome IN ('created', 'updated', 'deleted', 'deadLettered')"
    ).fetchone()[0]
    if not written and not accepted and not report.state.get("inFlight"):  # a list to fold: commit all the same
        report.state["generationAfter"] = report.state.get("generationBefore")  # nothing to remember
        return
    generation = ctx.state.commit(changes, run_id=report.run_id, snapshot_rows=plan.valid_users() if accepted else None)
    report.state["generationAfter"] = generation
    if repairs:
        report.state["repairs"] = len(repairs)
        report.messages.append(
            f"{len(repairs)} user(s) were changed by another writer while this run applied: their newest change "
            "is dead-lettered to be applied again (LostRace)"
        )
        put_letters(ctx, repair_letters(repairs, run_id=report.run_id, source={**plan.source, "kind": "repair"}))


def report_key(ctx: SyncContext, report: RunReport) -> str:
    key = str(report.source.get("key") or report.source.get("file") or "local")
    return ctx.settings.key("reports", key.lstrip("/"), f"{report.run_id}.json")


def finish(plan: SyncPlan, report: RunReport, ctx: SyncContext, started: float) -> RunReport:
    report.dead_letters = dead_letters(plan, ctx, report)
    commit_state(plan, report, ctx)
    report.outcomes = plan.outcome_counts()
    report.status = final_status(report.outcomes, refused=report.refused).value
    closed = close_report(plan, report, ctx, started)
    if report.approval and report.approval.get("approved"):
        # After the commit and the report: a run killed before here and retried on the same upload still finds it.
        approvals.consume(ctx.store, ctx.output_bucket, str(report.approval["marker"]))
    return closed


def close_report(plan: SyncPlan, report: RunReport, ctx: SyncContext, started: float) -> RunReport:
    report.problem_count = plan.problem_count()
    report.problems = list(plan.problems(MAX_PROBLEMS_IN_REPORT))
    report.calls = {
        k: n - ctx.calls_baseline.get(k, 0) for k, n in ctx.cvc.calls.items() if n > ctx.calls_baseline.get(k, 0)
    }
    report.durations_ms["total"] = (time.monotonic() - started) * 1000
    report.finished_at = time_now()
    if report.status == RunStatus.DRY_RUN.value:
        check_accounting(report.received, report.planned)  # nothing applied: every row has a planned operation
    else:
        report.check()
    key = report_key(ctx, report)
    ctx.put_json(key, report.to_dict())
    ctx.put_json(run_key(ctx, report.run_id, "report.json"), report.to_dict())  # found by run id alone (HTTP API)
    if report.problem_count > MAX_PROBLEMS_IN_REPORT:
        lines = b"".join(orjson.dumps(p.to_dict()) + b"\n" for p in plan.problems())
        ctx.store.put_bytes(ctx.output_bucket, key.removesuffix(".json") + ".problems.ndjson", lines)
    if report.problem_count:  # for whoever fixes the export, in a spreadsheet: formula-safe cells
        ctx.store.put_bytes(
            ctx.output_bucket,
            key.removesuffix(".json") + ".problems.csv",
            problems_csv(plan.problems()),
            content_type="text/csv; charset=utf-8",
        )
    level = logging.ERROR if report.refused else logging.INFO
    log.log(
        level,
        "sync %s",
        report.status,
        extra={"runId": report.run_id, "outcomes": report.outcomes, "received": report.received, "reportKey": key},
    )
    return report


def mark_in_flight(plan: SyncPlan, report: RunReport, ctx: SyncContext) -> None:
    """Before the first write: tell the state which users this run may change (see ``engine.state``), once."""
    if "inFlight" not in report.state:
        report.state["inFlight"] = ctx.state.mark_in_flight(report.run_id, plan.in_flight())


def apply_and_finish(plan: SyncPlan, report: RunReport, ctx: SyncContext, started: float, workdir: Path) -> RunReport:
    settings = ctx.settings
    pending = plan.pending_count()
    mark_in_flight(plan, report, ctx)
    if settings.fanout != "off" and pending > settings.fanout_threshold and ctx.dispatcher is not None:
        return fan_out(plan, report, ctx, workdir)
    applied_at = time.monotonic()
    if ctx.on_apply_start is not None:
        ctx.on_apply_start(pending)
    breaker = CircuitBreaker()
    result = applier(ctx, breaker).run(plan)
    report.durations_ms["apply"] = report.durations_ms.get("apply", 0.0) + (time.monotonic() - applied_at) * 1000
    if result.stopped_by == CIRCUIT_OPEN:
        return pause(plan, report, ctx, workdir, started, breaker.reason or "CVC failing")
    if result.status == CHECKPOINTED:
        return checkpoint(plan, report, ctx, workdir)
    return finish(plan, report, ctx, started)


def applier(ctx: SyncContext, breaker: CircuitBreaker | None = None) -> Applier:
    settings = ApplySettings(
        batch_size=ctx.cvc.settings.batch_size,
        concurrency=ctx.settings.concurrency,
        budget=ctx.invocation.budget(ctx.settings.deadline_margin),
    )
    return Applier(ctx.cvc, settings, on_progress=ctx.on_progress, breaker=breaker)


def pause(plan: SyncPlan, report: RunReport, ctx: SyncContext, workdir: Path, started: float, reason: str) -> RunReport:
    """CVC is failing as a whole (the circuit opened): stop calling it, checkpoint, and come back after a pause
    that doubles each time, as the queue path hands its messages back; after ``MAX_PAUSES`` the records still
    pending are dead-lettered (retryable: the redrive sends them once CVC is back) and the run finishes."""
    from cvcsync.schedule.alerts import mark_circuit_open  # the heartbeat task alerts on this marker

    mark_circuit_open(
        ctx.store,
        ctx.output_bucket,
        ctx.settings.output_prefix,
        reason=reason,
        source="upload",
        request_id=ctx.invocation.request_id,
    )
    pauses = int(report.state.get("pauses", 0)) + 1
    report.state["pauses"] = pauses
    if pauses > MAX_PAUSES:
        report.messages.append(f"circuit open {pauses - 1} times ({reason}): the records not sent are dead-lettered")
        detail = orjson.dumps({"code": "CircuitOpen", "message": reason, "retryable": True}).decode()
        pending = plan.db.execute(
            "SELECT seq FROM rows WHERE outcome IS NULL AND op IN ('create', 'update', 'delete')"
        ).fetchall()
        plan.record_outcomes((seq, Outcome.DEAD_LETTERED.value, detail) for (seq,) in pending)
        return finish(plan, report, ctx, started)
    wait = min(ctx.settings.circuit_pause * 2 ** (pauses - 1), MAX_PAUSE_SECONDS)
    report.messages.append(f"circuit open ({reason}): paused, continuing in {wait:g} s")
    return checkpoint(plan, report, ctx, workdir, not_before=time.time() + wait)


# -- checkpoint, resume, fan-out -------------------------------------------------------------------------------


def run_key(ctx: SyncContext, run_id: str, name: str) -> str:
    return ctx.settings.key("runs", run_id, name)


def save_run(plan: SyncPlan, report: RunReport, ctx: SyncContext, workdir: Path) -> None:
    packed = workdir / "plan.sqlite.gz"
    plan.db.execute("PRAGMA wal_checkpoint")
    with plan.path.open("rb") as source, gzip.open(packed, "wb", compresslevel=4) as target:
        shutil.copyfileobj(source, target, 1024 * 1024)
    ctx.store.put_file(ctx.output_bucket, run_key(ctx, report.run_id, "plan.sqlite.gz"), packed)
    ctx.put_json(run_key(ctx, report.run_id, "run.json"), report.to_dict())


def load_run(ctx: SyncContext, run_id: str, workdir: Path) -> tuple[SyncPlan, RunReport]:
    raw = ctx.store.get_bytes(ctx.output_bucket, run_key(ctx, run_id, "run.json"))
    packed = workdir / "plan.sqlite.gz"
    if raw is None or not ctx.store.download_file(ctx.output_bucket, run_key(ctx, run_id, "plan.sqlite.gz"), packed):
        raise CvcSyncError(f"run {run_id} has no saved plan to continue", code="NoSuchRun")
    path = workdir / f"plan-{run_id}.sqlite"
    with gzip.open(packed, "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target, 1024 * 1024)
    return SyncPlan(path), RunReport.from_dict(orjson.loads(raw))


def continuation_event(ctx: SyncContext, action: str, run_id: str, **extra: Any) -> dict[str, Any]:
    """The event a new invocation gets to go on with a run: small, the work itself is in the object store."""
    return {"cvcsync": {"action": action, "runId": run_id, "bucket": ctx.output_bucket, **extra}}


def checkpoint(
    plan: SyncPlan, report: RunReport, ctx: SyncContext, workdir: Path, *, not_before: float | None = None
) -> RunReport:
    report.status = RunStatus.CHECKPOINTED.value
    report.outcomes = plan.outcome_counts()
    step = int(report.state.get("resumes", 0)) + 1  # each continuation names its step: a duplicate delivery is idle
    report.state["resumes"] = step
    save_run(plan, report, ctx, workdir)
    if ctx.dispatcher is None:
        raise CvcSyncError(
            "the deadline came before the run finished and no way to continue is configured", code="NoContinuation"
        )
    later = {"notBefore": round(not_before, 3)} if not_before is not None else {}
    ctx.dispatcher.dispatch([continuation_event(ctx, "resume", report.run_id, step=f"resume-{step}", **later)])
    log.warning(
        "sync checkpointed; continuing in a new invocation",
        extra={"runId": report.run_id, "pending": plan.pending_count()},
    )
    return report


def fan_out(plan: SyncPlan, report: RunReport, ctx: SyncContext, workdir: Path) -> RunReport:
    assert ctx.dispatcher is not None
    chunks = plan.assign_chunks(ctx.settings.fanout_chunk)
    report.status = RunStatus.FANNED_OUT.value
    report.state["chunks"] = chunks
    report.outcomes = plan.outcome_counts()
    save_run(plan, report, ctx, workdir)
    ctx.dispatcher.dispatch(
        [
            continuation_event(ctx, "chunk", report.run_id, chunk=n, chunks=chunks, step=f"chunk-{n}")
            for n in range(chunks)
        ]
    )
    log.info("sync fanned out", extra={"runId": report.run_id, "chunks": chunks, "pending": plan.pending_count()})
    return report
