"""The queue trigger: user-change messages from MNS, RocketMQ or Kafka (through EventBridge) on FC, SQS, SNS or
EventBridge on Lambda, synced with per-message failure isolation.

How a failure reaches the platform, per trigger (the platform's retry is what re-delivers a message):
- SQS (Lambda, ``ReportBatchItemFailures``): the answer lists exactly the messages to retry; on a FIFO queue, a
  failed message fails every later message of its group in the batch too, so order is kept. Malformed messages
  and records CVC refuses for good are dead-lettered and acknowledged.
- Without ``CVCSYNC_STATE_BUCKET`` the function runs without a durable shadow state (``services.stateless_context``:
  a warm container's /tmp, dead letters as ERROR log lines) and never imports boto3: idempotency and stale-event
  protection then hold within a warm container only. Set the bucket for the full guarantees.
- Everything else (FC MNS topic and EventBridge triggers, Lambda SNS and EventBridge, FC destination replays):
  the invocation succeeds when every message is done or dead-lettered, and raises ``RetryLater`` when some must
  be retried; the platform then re-delivers the whole event, and the event ids remembered in the shadow state
  make the re-delivered, already applied changes cost nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from cvcsync.config import SyncSettings
from cvcsync.errors import CvcSyncError
from cvcsync.inputs.events.queue import parse_queue_event
from cvcsync.inputs.events.types import UnsupportedEvent
from cvcsync.platform.services import build_context, stateless_context
from cvcsync.platform.triggers.common import decode_event, invocation_of, shape_answer
from cvcsync.runs.changes import RETRY, ChangeSyncResult, sync_changes

log = logging.getLogger(__name__)


class RetryLater(CvcSyncError):
    """Raised to make the platform deliver the event again (some messages could not be applied yet)."""

    code = "RetryLater"
    retryable = True


def _sqs_failures(result: ChangeSyncResult, fifo: bool) -> list[dict[str, str]]:
    failed: list[dict[str, str]] = []
    blocked: set[str] = set()
    for message in result.messages:
        group = message.group_id
        if message.status == RETRY or (fifo and group is not None and group in blocked):
            failed.append({"itemIdentifier": message.message_id})
            if fifo and group is not None:
                blocked.add(group)
    return failed


def handle(event: Any, context: Any, *, env: Mapping[str, str] | None = None) -> Any:
    env = os.environ if env is None else env
    with invocation_of(context, env) as invocation:
        try:
            batch = parse_queue_event(decode_event(event))
        except UnsupportedEvent as exc:
            log.error("unsupported event: nothing synced", extra={"code": exc.code, "detail": exc.message})
            raise
        settings = SyncSettings.from_env(env)
        if settings.state_bucket:
            ctx = build_context(invocation, settings.state_bucket, inline=None, env=env, reads_files=False)
        else:
            ctx = stateless_context(invocation, env)
        # Reports go where the state goes: without a bucket the store is a warm container's /tmp, which they
        # would only fill up (the log line of every run still carries its outcomes).
        result = sync_changes(batch, ctx, store_report=bool(settings.state_bucket))
        summary = {
            "runId": result.report.run_id,
            "received": result.report.received,
            "outcomes": result.report.outcomes,
            "deadLetters": result.report.dead_letters,
            "circuitOpen": result.circuit_open,
        }
        if batch.platform_kind in ("sqs", "sqs-fifo"):
            failures = _sqs_failures(result, batch.platform_kind == "sqs-fifo")
            return shape_answer({"batchItemFailures": failures, **summary}, invocation)
        if result.to_retry:
            raise RetryLater(
                f"{len(result.to_retry)} of {len(result.messages)} messages must be retried: "
                f"{result.to_retry[0].reason}"
            )
        return shape_answer(summary, invocation)
