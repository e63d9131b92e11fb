"""An export run: a file of users (an upload, or a local file from the CLI) planned against the shadow state,
checked by the safety gates, then applied through the shared run steps (``runs.lifecycle``).

``sync_source`` is the core; ``sync_upload`` feeds it an object from the store (the upload function); a dry run
writes its plan as an artefact that ``apply_saved_plan`` applies exactly. A run that reaches its deadline is
checkpointed and continued by ``runs.continuation``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import IO, Any

import orjson

from cvcsync import clock
from cvcsync.adapters.cvc import CvcClient
from cvcsync.engine import guards as gates
from cvcsync.engine.outcomes import GuardResult, RunReport, RunStatus
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState, StateConflict
from cvcsync.engine.workspace import CREATE, DELETE, UPDATE, PlanInput, SyncPlan
from cvcsync.errors import CvcError, InvalidInputError
from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.events.types import ObjectUploaded
from cvcsync.inputs.readers import read_records
from cvcsync.platform.context import SyncContext
from cvcsync.runs import approvals, lifecycle
from cvcsync.runs.approvals import ApprovalCheck
from cvcsync.runs.run import Run

log = logging.getLogger(__name__)


def _capacity(cvc: CvcClient, deadline: float | None) -> tuple[int | None, int | None]:
    """(licensed users, users in CVC) from GetAccountInfo, or (None, None) where it does not answer."""
    try:
        info = cvc.get_account_info(deadline=deadline)
    except CvcError as exc:
        log.warning("capacity preflight skipped: GetAccountInfo failed", extra={"code": exc.code})
        return None, None
    maximum, number = info.get("AccountApplicationMax"), info.get("AccountApplicationNumber")
    return (maximum if isinstance(maximum, int) else None, number if isinstance(number, int) else None)


def _evaluate_guards(
    plan: SyncPlan,
    state: ShadowState,
    ctx: SyncContext,
    approved: bool,
    approval: ApprovalCheck | None,
    event_time: str,
) -> RunReport:
    tally = plan.tally()
    counts = tally.ops()
    capacity, cvc_users = _capacity(ctx.cvc, ctx.invocation.deadline)
    # The groups are read from every record, input and state: only when a user is created or updated (``guards``).
    changed = bool(counts[CREATE] or counts[UPDATE])
    facts = gates.GuardFacts(
        mode=plan.mode,
        deletes=counts[DELETE],
        creates=counts[CREATE],
        valid_users=tally.valid_users,
        state_users=state.count(),
        last_snapshot_users=state.snapshot_rows,
        capacity=capacity,
        cvc_users=cvc_users,
        state_groups=state.groups() if changed else frozenset(),
        snapshot_groups=plan.groups() if changed else frozenset(),
        only_unchanged=not changed,
    )
    s = ctx.settings
    settings = gates.GuardSettings(
        s.max_deletes,
        s.max_delete_percent,
        s.max_snapshot_drop_percent,
        s.upserts_when_refused,
        override=s.guard_override or approved or bool(approval and approval.approved),
    )
    report = RunReport(run_id=plan.plan_id, mode=plan.mode, source=plan.source, started_at=lifecycle.time_now())
    report.event_time = event_time
    report.guards = gates.evaluate(facts, settings)
    if approval is not None:
        report.approval = approval.to_report()
        if not approval.approved:
            report.messages.append(f"approval marker {approval.marker_key} not used: {approval.detail}")
    report.planned = counts
    report.rows_read = tally.rows_read
    report.implied_deletions = tally.implied_deletions
    report.state = {"generationBefore": state.generation, "usersBefore": facts.state_users}
    notices = plan.notices
    report.messages.extend(notices["first"])
    if notices["count"] > len(notices["first"]):
        report.messages.append(f"… and {notices['count'] - len(notices['first'])} more notices")
    return report


def _apply_guards(plan: SyncPlan, report: RunReport, upserts_when_refused: bool) -> None:
    """A refusal skips every deletion, and the upserts too unless configured otherwise (capacity: everything)."""
    refused = {g.name for g in report.guards if not g.passed and not g.overridden}
    if not refused:
        return
    plan.skip_pending([DELETE])
    # Capacity and group refusals stop creates and updates whatever the setting says: CVC would refuse them, or
    # they are another group's users.
    held = upserts_when_refused and not refused & {gates.CAPACITY, gates.GROUP}
    if not held:
        plan.skip_pending([CREATE, UPDATE])
    for guard in report.guards:
        if guard.name in refused:
            message = f"REFUSED by the {guard.name} gate: {guard.detail}"
            report.messages.append(message)
            log.error("sync refused by a safety gate", extra={"guard": guard.name, "detail": guard.detail})
    report.messages.append(
        "no deletion was sent; "
        + ("creates and updates were applied (CVCSYNC_UPSERTS_WHEN_REFUSED)" if held else "nor any create or update")
        + ". If the change is intended, approve it (an approval marker object, --approve, or "
        "CVCSYNC_GUARD_OVERRIDE=true) and upload again."
    )


def write_plan_artefact(plan: SyncPlan, report: RunReport, target: IO[bytes]) -> None:
    """The dry-run plan as one JSON document, streamed operation by operation (old -> new for updates)."""
    header = {
        "planId": plan.plan_id,
        "createdAt": report.started_at,
        "mode": plan.mode,
        "source": plan.source,
        "stateGeneration": plan.state_generation,
        "stateJournal": plan.state_journal,
        "eventTime": report.event_time,
        "summary": report.planned,
        "guards": [g.to_dict() for g in report.guards],
    }
    target.write(orjson.dumps(header)[:-1] + b',"operations":[')
    for index, operation in enumerate(plan.operations()):
        target.write((b"," if index else b"\n") + orjson.dumps(operation) + b"\n")
    target.write(b"]}\n")


def sync_source(
    stream: IO[bytes],
    *,
    name: str,
    source: dict[str, Any],
    mode: str,
    ctx: SyncContext,
    dry_run: bool = False,
    approved: bool = False,
    approval: ApprovalCheck | None = None,
    plan_out: IO[bytes] | None = None,
    event_time: datetime | None = None,
) -> RunReport:
    """Plan ``stream`` against the shadow state, check the gates, and apply (unless ``dry_run``).

    ``approved``: a person approved this run outright (the CLI's ``--approve``); ``approval``: what the upload's
    approval marker says (``approvals``), used only when it names this very upload. ``event_time``: when the
    export was made or uploaded (none: now, its arrival); a user changed later by another writer keeps that change."""
    started = time.monotonic()
    as_of = clock.stamp(clock.event_time(event_time, clock.now()))
    with lifecycle.scratch_dir() as workdir:
        state = ctx.state.checkout(workdir)
        try:
            rows = read_records(stream, name=name, encoding=ctx.settings.encoding)
            mapper = ctx.column_map or ColumnMap.from_env()
            try:
                plan = build_plan(PlanInput(rows, mode, ctx.settings.defaults, mapper, source, as_of), state, workdir)
            except InvalidInputError as exc:  # the file as a whole: binary, damaged, no header, wrong encoding
                report = RunReport(run_id=str(uuid.uuid4()), mode=mode, source=source, started_at=lifecycle.time_now())
                report.event_time = as_of
                return lifecycle.reject_input(Run(ctx, None, report, writer="upload", started=started), exc)
            report = _evaluate_guards(plan, state, ctx, approved, approval, as_of)
        finally:
            state.close()
        report.durations_ms["plan"] = (time.monotonic() - started) * 1000
        try:
            _apply_guards(plan, report, ctx.settings.upserts_when_refused)
            if dry_run:
                report.status = RunStatus.DRY_RUN.value
                if plan_out is not None:
                    write_plan_artefact(plan, report, plan_out)
                else:
                    with (workdir / "plan.json").open("wb") as artefact:
                        write_plan_artefact(plan, report, artefact)
                    ctx.store.put_file(
                        ctx.output_bucket,
                        ctx.settings.key(
                            "plans", str(source.get("key", name)).lstrip("/"), f"{report.run_id}.plan.json"
                        ),
                        workdir / "plan.json",
                    )
                report.outcomes = plan.outcome_counts()
                return lifecycle.close_report(Run(ctx, plan, report, writer="upload", started=started))
            return lifecycle.apply_and_finish(Run(ctx, plan, report, writer="upload", started=started), workdir)
        finally:
            plan.close()


def sync_upload(upload: ObjectUploaded, ctx: SyncContext, *, dry_run: bool = False) -> RunReport:
    """The upload function's job: the object named by the event, in the mode its key prefix says."""
    etag = upload.etag
    if not etag:  # some event shapes carry none: the approval must still be bound to this very object
        info = ctx.store.head(upload.bucket, upload.key)
        etag = info.etag if info else None
    approval = approvals.check(ctx.store, ctx.output_bucket, ctx.settings.key("approvals", upload.key), etag)
    source = {
        "bucket": upload.bucket,
        "key": upload.key,
        "etag": upload.etag,
        "size": upload.size,
        "event": upload.event_name,
    }
    with ctx.store.open(upload.bucket, upload.key) as stream:
        return sync_source(
            stream,
            name=upload.key,
            source=source,
            mode=ctx.settings.mode_for(upload.key),
            ctx=ctx,
            dry_run=dry_run,
            approval=approval,
            event_time=clock.parse(upload.event_time),
        )


def apply_saved_plan(artefact: IO[bytes], ctx: SyncContext) -> RunReport:
    """Apply exactly a dry run's plan: its creates, updates and deletes, refusing if the state moved on since."""
    saved = orjson.loads(artefact.read())
    generation = ctx.state.latest_generation()
    if saved.get("stateGeneration") != generation:
        raise StateConflict(
            f"the plan was made against state generation {saved.get('stateGeneration')}, "
            f"but the state is now at generation {generation}: plan again"
        )
    # Change runs (queue, HTTP, SCIM) commit to the journal without a new generation: one since the dry run moved
    # the state as much as a generation would have.
    if str(saved.get("stateJournal") or "") != ctx.state.journal_fingerprint():
        raise StateConflict("changes were committed (queue, HTTP or SCIM writes) since the plan was made: plan again")
    started = time.monotonic()
    with lifecycle.scratch_dir() as workdir:
        plan = SyncPlan.from_artefact(saved, workdir)
        try:
            report = RunReport(
                run_id=str(uuid.uuid4()), mode=plan.mode, source=plan.source, started_at=lifecycle.time_now()
            )
            report.event_time = str(saved.get("eventTime") or clock.stamp(clock.now()))
            report.planned = plan.op_counts()
            report.rows_read = plan.rows_read()
            report.implied_deletions = plan.implied_deletions()
            report.state = {"generationBefore": generation, "fromPlan": saved.get("planId")}
            # The dry run's gates hold for its plan: a refused plan stays refused (its skipped operations stay skipped).
            report.guards = [
                GuardResult(g["name"], g["passed"], g["detail"], g.get("overridden", False))
                for g in saved.get("guards", [])
                if isinstance(g, dict) and {"name", "passed", "detail"} <= set(g)
            ]
            report.messages.append(f"applied saved plan {saved.get('planId')}")
            if report.refused:
                report.messages.append(
                    "the saved plan was refused by a safety gate: its skipped operations stay skipped"
                )
            return lifecycle.apply_and_finish(Run(ctx, plan, report, writer="upload", started=started), workdir)
        finally:
            plan.close()


__all__ = ["apply_saved_plan", "sync_source", "sync_upload", "write_plan_artefact"]
