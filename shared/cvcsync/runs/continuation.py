"""Continuing an export run in a new invocation: resume a checkpointed run, apply one chunk of a fanned-out run,
and finish a fanned-out run when its last chunk is done. Each continuation names its step and claims it first
(``runs.claims``): a duplicate delivery does nothing, and markers are written after what they mark.
"""

from __future__ import annotations

import logging
import time

import orjson

from cvcsync.engine.apply import CHECKPOINTED
from cvcsync.engine.outcomes import RunReport
from cvcsync.platform.context import SyncContext
from cvcsync.runs import lifecycle
from cvcsync.runs.claims import claimed
from cvcsync.runs.run import Run

log = logging.getLogger(__name__)


def resume_run(
    run_id: str, ctx: SyncContext, *, step: str | None = None, not_before: float | None = None
) -> RunReport | None:
    """Continue a checkpointed run from its saved plan: only what is still pending is sent. None: ``step`` was
    already taken by another delivery of the same continuation (``continuations``), so nothing was done.
    ``not_before`` (epoch seconds): a paused run waits until then, within this invocation's time, or hands the
    wait on to a new continuation."""
    started = time.monotonic()
    with claimed(ctx, run_id, step) as mine:
        if not mine:
            return None
        with lifecycle.scratch_dir() as workdir:
            plan, report = lifecycle.load_run(ctx, run_id, workdir)
            try:
                run = Run(ctx, plan, report, writer="upload", started=started)
                if not_before is not None and not _wait_until(not_before, ctx):
                    return lifecycle.checkpoint(run, workdir, not_before=not_before)
                report.messages.append(f"continued at {lifecycle.time_now()}")
                return lifecycle.apply_and_finish(run, workdir)
            finally:
                plan.close()


def _wait_until(moment: float, ctx: SyncContext) -> bool:
    """Sleep until ``moment`` (epoch seconds) if this invocation's budget holds the wait; False when it does not."""
    wait = moment - time.time()
    if wait <= 0:
        return True
    if not ctx.invocation.budget(ctx.settings.deadline_margin).allows(wait):
        return False
    time.sleep(wait)
    return True


def _chunk_results_key(ctx: SyncContext, run_id: str, chunk: int) -> str:
    return lifecycle.run_key(ctx, run_id, f"chunks/{chunk:05d}.ndjson")


def _next_step(step: str | None, base: str) -> str:
    """The step name of the next continuation of the same chunk: ``chunk-3`` -> ``chunk-3.1`` -> ``chunk-3.2``."""
    if step and "." in step:
        head, _, count = step.rpartition(".")
        if count.isdigit():
            return f"{head}.{int(count) + 1}"
    return f"{base}.1"


def apply_chunk(run_id: str, chunk: int, chunks: int, ctx: SyncContext, *, step: str | None = None) -> RunReport | None:
    """Apply one chunk of a fanned-out run; the invocation that completes the last chunk finishes the run.

    The chunk's claim (``continuations``) covers the finish too: if finishing fails, the claim is released and the
    platform's retry of this chunk finds its results saved, sends nothing again, and finishes the run."""
    if ctx.store.head(ctx.output_bucket, lifecycle.run_key(ctx, run_id, "finished")) is not None:
        return None  # a late duplicate: the run is complete
    with claimed(ctx, run_id, step) as mine:
        if not mine:
            return None
        return _apply_chunk(run_id, chunk, chunks, ctx, step)


def _apply_chunk(run_id: str, chunk: int, chunks: int, ctx: SyncContext, step: str | None) -> RunReport | None:
    with lifecycle.scratch_dir() as workdir:
        plan, report = lifecycle.load_run(ctx, run_id, workdir)
        try:
            earlier = ctx.store.get_bytes(ctx.output_bucket, _chunk_results_key(ctx, run_id, chunk))
            if earlier:
                plan.record_outcomes(tuple(orjson.loads(line)) for line in earlier.splitlines() if line)
            # No circuit here: a chunk has no pause of its own (its event carries no time to wait for), so in an
            # outage its records are dead-lettered after their retries, and the redrive sends them.
            result = Run(ctx, plan, report, writer="upload", circuit=False).apply(chunk=chunk)
            rows = plan.db.execute(
                "SELECT seq, outcome, error FROM rows WHERE chunk = ? AND outcome IS NOT NULL", (chunk,)
            )
            ctx.store.put_bytes(
                ctx.output_bucket,
                _chunk_results_key(ctx, run_id, chunk),
                b"".join(orjson.dumps(r) + b"\n" for r in rows),
            )
            if result.status == CHECKPOINTED:
                assert ctx.dispatcher is not None
                again = _next_step(step, f"chunk-{chunk}")
                ctx.dispatcher.dispatch(
                    [lifecycle.continuation_event(ctx, "chunk", run_id, chunk=chunk, chunks=chunks, step=again)]
                )
                return None
            ctx.store.put_bytes(ctx.output_bucket, lifecycle.run_key(ctx, run_id, f"chunks/{chunk:05d}.done"), b"")
        finally:
            plan.close()
    done = sum(
        1
        for k in ctx.store.list_keys(ctx.output_bucket, lifecycle.run_key(ctx, run_id, "chunks/"))
        if k.endswith(".done")
    )
    if done < chunks:
        return None
    with claimed(ctx, run_id, "finish") as mine:  # one finisher, even when two last chunks end at once
        if not mine:
            return None
        report = finish_run(run_id, chunks, ctx)
    # After what it marks (issue 11, defect 4): a finish that failed left no marker, so a retry finishes the run.
    ctx.store.put_bytes(ctx.output_bucket, lifecycle.run_key(ctx, run_id, "finished"), b"")
    return report


def finish_run(run_id: str, chunks: int, ctx: SyncContext) -> RunReport:
    """Merge every chunk's outcomes into the plan, then dead letters, state and report, as a single run would."""
    started = time.monotonic()
    with lifecycle.scratch_dir() as workdir:
        plan, report = lifecycle.load_run(ctx, run_id, workdir)
        try:
            for chunk in range(chunks):
                raw = ctx.store.get_bytes(ctx.output_bucket, _chunk_results_key(ctx, run_id, chunk)) or b""
                plan.record_outcomes(tuple(orjson.loads(line)) for line in raw.splitlines() if line)
            return lifecycle.finish(Run(ctx, plan, report, writer="upload", started=started))
        finally:
            plan.close()
