"""What an export run adds around the one lifecycle (``runs.run.Run``): a circuit that opens pauses the run,
a deadline checkpoints it, a large plan is fanned out in chunks; then its dead letters (one per failed row, with
its line), its state commit (every write at the export's event time; an accepted snapshot records its time) and
its report with the problems files.

``runs.export`` plans a run and hands it here; ``runs.continuation`` loads a saved run and hands it here again.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.engine.apply import CHECKPOINTED, CIRCUIT_OPEN
from cvcsync.engine.outcomes import Outcome, Problem, RunReport, RunStatus, final_status
from cvcsync.engine.settle import DELETE as DELETE_WRITE
from cvcsync.engine.settle import UPSERT, Repair, Write, record_snapshot, snapshot_repairs
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELETE, INDEXES, SyncPlan
from cvcsync.errors import CvcSyncError, InvalidInputError
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.problems_csv import problems_csv
from cvcsync.platform.context import SyncContext
from cvcsync.runs import approvals
from cvcsync.runs.run import Run

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


def dead_letters(run: Run) -> int:
    """The records that failed, each with its source line and its change's event time (``source.occurredAt``:
    the redrive orders it by that, as every writer orders changes)."""
    report, plan = run.report, run.plan
    if not plan.outcome_counts()[Outcome.DEAD_LETTERED.value]:
        return 0  # the query reads every row
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
                run_id=report.run_id,
                kind="record",
                retryable=bool(detail.get("retryable", False)),
            )
        )
    return run.put_letters(letters)


def commit_state(run: Run) -> None:
    """Record what CVC now holds at the input's event time; an accepted full snapshot also records its time, and
    users a newer accepted snapshot lacks are dead-lettered as repairs (``Run.commit``)."""
    plan, report = run.plan, run.report
    at = report.event_time or clock.stamp(clock.now())
    accepted = plan.mode == "full" and not report.refused

    def writes() -> Iterator[Write]:
        upserts, deletes = plan.changes_for_state()
        # Writes that failed are the latest intents all the same (``engine.settle``): dead-lettered, uncertain. The
        # query reads every row: only when the counts say there is one.
        letters: Iterable[tuple[str, str, str | None, str | None]] = ()
        if plan.outcome_counts()[Outcome.DEAD_LETTERED.value]:
            letters = plan.db.execute(
                "SELECT user_id, op, hash, record FROM rows WHERE outcome = 'deadLettered' "
                "AND op IN ('create', 'update', 'delete')"
            )
        return chain(
            (Write(uid, at, UPSERT, digest, record) for uid, digest, record in upserts),
            (Write(uid, at, DELETE_WRITE) for uid in deletes),
            (
                Write(uid, at, DELETE_WRITE if op == DELETE else UPSERT, digest, record, landed=False)
                for uid, op, digest, record in letters
            ),
        )

    def snapshot(state: ShadowState, repairs: list[Repair]) -> None:
        if not accepted:
            return
        # Another writer committed since the plan: a generation, or journal entries (``engine.views``) this commit
        # folds in (which of them the plan saw is not known: all count, as the state stamps them).
        if state.generation != plan.state_generation or state.journal_pending:
            mine = {r.user_id for r in repairs}
            more = snapshot_repairs(state, plan.users_named, at, plan.state_generation)
            repairs.extend(r for r in more if r.user_id not in mine)
        record_snapshot(state, at)

    tally = plan.tally()
    outcomes = tally.outcomes()
    written = sum(outcomes[o.value] for o in (Outcome.CREATED, Outcome.UPDATED, Outcome.DELETED, Outcome.DEAD_LETTERED))
    run.commit(
        writes,
        also=snapshot,
        needed=bool(written) or accepted,
        snapshot_rows=tally.valid_users if accepted else None,
        unchanged=not written,
    )


def report_key(ctx: SyncContext, report: RunReport) -> str:
    key = str(report.source.get("key") or report.source.get("file") or "local")
    return ctx.settings.key("reports", key.lstrip("/"), f"{report.run_id}.json")


def finish(run: Run) -> RunReport:
    plan, report = run.plan, run.report
    report.dead_letters = dead_letters(run)
    commit_state(run)
    report.outcomes = plan.outcome_counts()
    report.status = final_status(report.outcomes, refused=report.refused).value
    closed = close_report(run)
    if report.approval and report.approval.get("approved"):
        # After the commit and the report: a run killed before here and retried on the same upload still finds it.
        approvals.consume(run.ctx.store, run.ctx.output_bucket, str(report.approval["marker"]))
    return closed


def close_report(run: Run) -> RunReport:
    plan, report, ctx = run.plan, run.report, run.ctx
    report.problem_count = plan.problem_count()
    report.problems = list(plan.problems(MAX_PROBLEMS_IN_REPORT))
    key = report_key(ctx, report)
    run.close(report_keys=(key, run.run_report_key()), log_fields={"received": report.received, "reportKey": key})
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
    return report


def reject_input(run: Run, error: InvalidInputError) -> RunReport:
    """A file that cannot be read as a whole (binary, damaged, no header, not in its encoding) is a run all the
    same: nothing planned or sent, and a report and a problems file that say why, where the file's reports go."""
    report, ctx = run.report, run.ctx
    problem = Problem(error.code, error.message)
    report.status = RunStatus.REJECTED.value
    report.problems, report.problem_count = [problem], 1
    report.messages.append(f"the file was not synced: {error.message}")
    key = report_key(ctx, report)
    run.close(report_keys=(key, run.run_report_key()), log_fields={"code": error.code, "reportKey": key})
    ctx.store.put_bytes(
        ctx.output_bucket,
        key.removesuffix(".json") + ".problems.csv",
        problems_csv([problem]),
        content_type="text/csv; charset=utf-8",
    )
    return report


def apply_and_finish(run: Run, workdir: Path) -> RunReport:
    ctx, plan = run.ctx, run.plan
    settings = ctx.settings
    pending = plan.pending_count()
    run.mark_in_flight()
    if settings.fanout != "off" and pending > settings.fanout_threshold and ctx.dispatcher is not None:
        return fan_out(run, workdir)
    if ctx.on_apply_start is not None:
        ctx.on_apply_start(pending)
    result = run.apply(on_progress=ctx.on_progress)
    if result.stopped_by == CIRCUIT_OPEN:
        return pause(run, workdir)
    if result.status == CHECKPOINTED:
        return checkpoint(run, workdir)
    return finish(run)


def pause(run: Run, workdir: Path) -> RunReport:
    """CVC is failing as a whole (the circuit opened): stop calling it, checkpoint, and come back after a pause
    that doubles each time, as the queue path hands its messages back; after ``MAX_PAUSES`` the records still
    pending are dead-lettered (retryable: the redrive sends them once CVC is back) and the run finishes."""
    plan, report = run.plan, run.report
    reason = (run.breaker.reason if run.breaker else None) or "CVC failing"
    run.alert_circuit_open()
    pauses = int(report.state.get("pauses", 0)) + 1
    report.state["pauses"] = pauses
    if pauses > MAX_PAUSES:
        report.messages.append(f"circuit open {pauses - 1} times ({reason}): the records not sent are dead-lettered")
        detail = orjson.dumps({"code": "CircuitOpen", "message": reason, "retryable": True}).decode()
        pending = plan.db.execute(
            "SELECT seq FROM rows WHERE outcome IS NULL AND op IN ('create', 'update', 'delete')"
        ).fetchall()
        plan.record_outcomes((seq, Outcome.DEAD_LETTERED.value, detail) for (seq,) in pending)
        return finish(run)
    wait = min(run.ctx.settings.circuit_pause * 2 ** (pauses - 1), MAX_PAUSE_SECONDS)
    report.messages.append(f"circuit open ({reason}): paused, continuing in {wait:g} s")
    return checkpoint(run, workdir, not_before=time.time() + wait)


# -- checkpoint, resume, fan-out -------------------------------------------------------------------------------


def run_key(ctx: SyncContext, run_id: str, name: str) -> str:
    return ctx.settings.key("runs", run_id, name)


def save_run(run: Run, workdir: Path) -> None:
    plan, report, ctx = run.plan, run.report, run.ctx
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
    plan = SyncPlan(path)
    plan.db.executescript(INDEXES)  # a run saved before the counts' indexes existed (``engine.workspace``) gets them
    return plan, RunReport.from_dict(orjson.loads(raw))


def continuation_event(ctx: SyncContext, action: str, run_id: str, **extra: Any) -> dict[str, Any]:
    """The event a new invocation gets to go on with a run: small, the work itself is in the object store."""
    return {"cvcsync": {"action": action, "runId": run_id, "bucket": ctx.output_bucket, **extra}}


def checkpoint(run: Run, workdir: Path, *, not_before: float | None = None) -> RunReport:
    plan, report, ctx = run.plan, run.report, run.ctx
    report.status = RunStatus.CHECKPOINTED.value
    report.outcomes = plan.outcome_counts()
    step = int(report.state.get("resumes", 0)) + 1  # each continuation names its step: a duplicate delivery is idle
    report.state["resumes"] = step
    save_run(run, workdir)
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


def fan_out(run: Run, workdir: Path) -> RunReport:
    plan, report, ctx = run.plan, run.report, run.ctx
    assert ctx.dispatcher is not None
    chunks = plan.assign_chunks(ctx.settings.fanout_chunk)
    report.status = RunStatus.FANNED_OUT.value
    report.state["chunks"] = chunks
    report.outcomes = plan.outcome_counts()
    save_run(run, workdir)
    ctx.dispatcher.dispatch(
        [
            continuation_event(ctx, "chunk", report.run_id, chunk=n, chunks=chunks, step=f"chunk-{n}")
            for n in range(chunks)
        ]
    )
    log.info("sync fanned out", extra={"runId": report.run_id, "chunks": chunks, "pending": plan.pending_count()})
    return report
