"""Run one scheduled task under its lease: a second run of the same task at the same time does nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cvcsync.inputs.events.timer import HEARTBEAT, RECONCILE, REDRIVE, ScheduledTask
from cvcsync.schedule.context import ScheduleContext
from cvcsync.schedule.heartbeat import run_heartbeat
from cvcsync.schedule.lease import LeaseHeld, TaskLease, holding, lease_duration
from cvcsync.schedule.reconcile_task import run_reconcile
from cvcsync.schedule.redrive import run_redrive

log = logging.getLogger(__name__)

TaskRunner = Callable[[ScheduleContext, dict[str, Any]], dict[str, Any]]
RUNNERS: dict[str, TaskRunner] = {REDRIVE: run_redrive, RECONCILE: run_reconcile, HEARTBEAT: run_heartbeat}
LEASE_HELD = "lease-held"


def task_lease(ctx: ScheduleContext, task: str) -> TaskLease:
    return TaskLease(ctx.sync.store, ctx.bucket, ctx.key("leases", task) + "/", task, now=ctx.now)


def run_task(task: ScheduledTask, ctx: ScheduleContext) -> dict[str, Any]:
    """The task's result, or ``{"status": "lease-held", ...}`` when another run of it is under way."""
    runner = RUNNERS[task.name]
    holder = ctx.sync.invocation.request_id
    origin = {"trigger": task.trigger, "triggerName": task.trigger_name, "firedAt": task.fired_at}
    try:
        with holding(task_lease(ctx, task.name), holder, lease_duration(ctx.remaining())) as lease:
            log.info("scheduled task started", extra={"task": task.name, "leaseGeneration": lease.generation, **origin})
            result = runner(ctx, dict(task.options))
    except LeaseHeld as held:
        log.info(
            "lease held: another run of this task is under way; nothing done",
            extra={"task": task.name, "holder": held.lease.holder, "expiresAt": held.lease.expires_at},
        )
        return {
            "task": task.name,
            "status": LEASE_HELD,
            "holder": held.lease.holder,
            "expiresAt": held.lease.expires_at,
            **origin,
        }
    return {**result, **origin}
