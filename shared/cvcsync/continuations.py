"""Claims that make a run's continuations idempotent: one step, one invocation doing it.

FC and Lambda deliver asynchronous invocations at least once, and retry one that failed. A continuation (resume a
checkpointed run, apply a chunk, finish a fanned-out run) names its step; before any write the invocation claims
``runs/<run id>/claims/<step>`` create-only. A second delivery of the same step finds the claim and does nothing
while the claim's lease runs (the claiming invocation's own deadline), or ever once the step is done: it would only
resend the same batches.
A step that fails with an error releases its claim, so the platform's retry goes on; a step killed outright leaves
a claim whose lease ends with the killed invocation's deadline, after which a retry takes it over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from .context import SyncContext

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 900.0  # no deadline known (a local run): the longest a function may run on either cloud


def claim_key(ctx: SyncContext, run_id: str, step: str) -> str:
    return ctx.settings.key("runs", run_id, f"claims/{step}.json")


def _lease_until(ctx: SyncContext) -> float:
    remaining = ctx.invocation.remaining()
    return time.time() + (DEFAULT_LEASE_SECONDS if remaining is None else max(remaining, 0.0))


def try_claim(ctx: SyncContext, run_id: str, step: str) -> bool:
    """Claim ``step`` of ``run_id`` for this invocation; False while another invocation's lease on it runs."""
    key = claim_key(ctx, run_id, step)
    body = orjson.dumps({"requestId": ctx.invocation.request_id, "until": _lease_until(ctx)})
    if ctx.store.put_bytes(ctx.output_bucket, key, body, if_absent=True):
        return True
    raw = ctx.store.get_bytes(ctx.output_bucket, key)
    try:
        held = orjson.loads(raw or b"{}")
        done, until = bool(held.get("done")), float(held.get("until", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        done, until = False, 0.0
    if done or until > time.time():
        log.info(
            "continuation already claimed: a duplicate delivery does nothing", extra={"runId": run_id, "step": step}
        )
        return False
    # The claiming invocation's deadline has passed: it was killed. Take the step over.
    ctx.store.put_bytes(ctx.output_bucket, key, body)
    log.warning("continuation claim expired: taking the step over", extra={"runId": run_id, "step": step})
    return True


def release(ctx: SyncContext, run_id: str, step: str) -> None:
    ctx.store.delete(ctx.output_bucket, claim_key(ctx, run_id, step))


def mark_done(ctx: SyncContext, run_id: str, step: str) -> None:
    """The step is complete: every later delivery of it is a duplicate, whenever it comes."""
    body = orjson.dumps({"requestId": ctx.invocation.request_id, "done": True})
    ctx.store.put_bytes(ctx.output_bucket, claim_key(ctx, run_id, step), body)


@contextmanager
def claimed(ctx: SyncContext, run_id: str, step: str | None) -> Iterator[bool]:
    """``with claimed(...) as mine:`` do the step only when ``mine``; an error releases the claim for a retry.

    ``step`` None (an event from before steps were named) claims nothing and always runs."""
    if step is None:
        yield True
        return
    mine = try_claim(ctx, run_id, step)
    try:
        yield mine
    except BaseException:
        if mine:
            release(ctx, run_id, step)
        raise
    if mine:
        mark_done(ctx, run_id, step)
