"""Claims that make a run's continuations idempotent: one step, one invocation doing it.

FC and Lambda deliver asynchronous invocations at least once, and retry one that failed. A continuation (resume a
checkpointed run, apply a chunk, finish a fanned-out run) names its step. Before any write, the invocation takes
the step's lease (``schedule.lease.TaskLease`` under ``runs/<run id>/claims/<step>/``: create-only generations, so
of two deliveries racing for it exactly one wins, and an expired holder is taken over without a delete). A second
delivery of the step while the lease is held does nothing: it would only resend the same batches. When the step
is done, a create-only ``done`` marker is written after the work and before the release, and every later delivery
of the step finds it and does nothing. A step that fails with an error releases its lease, so the platform's retry
goes on; a step killed outright holds it until the killed invocation's deadline (plus slack), then a retry takes
it over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cvcsync.schedule.lease import LeaseHeld, TaskLease, lease_duration

if TYPE_CHECKING:
    from cvcsync.platform.context import SyncContext

log = logging.getLogger(__name__)


def _prefix(ctx: SyncContext, run_id: str, step: str) -> str:
    return ctx.settings.key("runs", run_id, f"claims/{step}/")


@contextmanager
def claimed(ctx: SyncContext, run_id: str, step: str | None) -> Iterator[bool]:
    """``with claimed(...) as mine:`` do the step only when ``mine``; an error releases the step for a retry.

    ``step`` None (an event from before steps were named) claims nothing and always runs."""
    if step is None:
        yield True
        return
    prefix = _prefix(ctx, run_id, step)
    done_key = prefix + "done"
    if ctx.store.head(ctx.output_bucket, done_key) is not None:
        log.info("continuation step already done: a duplicate delivery does nothing", extra={"runId": run_id})
        yield False
        return
    lease = TaskLease(ctx.store, ctx.output_bucket, prefix, f"{run_id}/{step}")
    try:
        held = lease.acquire(ctx.invocation.request_id or "local", lease_duration(ctx.invocation.remaining()))
    except LeaseHeld:
        log.info("continuation step held by another delivery: this one does nothing", extra={"runId": run_id})
        yield False
        return
    try:
        if ctx.store.head(ctx.output_bucket, done_key) is not None:  # done between our look and our lease
            yield False
            return
        yield True
        ctx.store.put_bytes(ctx.output_bucket, done_key, b"", if_absent=True)  # after what it marks
    finally:
        lease.release(held)
