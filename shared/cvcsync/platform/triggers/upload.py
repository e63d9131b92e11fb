"""The object-upload trigger: OSS or S3 says an export landed; sync it (or continue a run cvc-sync started)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from cvcsync.config import SyncSettings
from cvcsync.inputs.events import UnsupportedEvent, parse_object_events
from cvcsync.platform.runtime import Invocation
from cvcsync.platform.services import build_context
from cvcsync.platform.triggers.common import continuation_of, decode_event, invocation_of, shape_answer
from cvcsync.runs.continuation import apply_chunk, resume_run
from cvcsync.runs.export import sync_upload

log = logging.getLogger(__name__)


def _summary(report: Any) -> dict[str, Any]:
    data = report.to_dict()
    return {k: data[k] for k in ("runId", "status", "refused", "source", "received", "outcomes", "deadLetters")}


def _continue(step: dict[str, Any], invocation: Invocation, env: Mapping[str, str]) -> dict[str, Any]:
    settings = SyncSettings.from_env(env)
    bucket = str(step.get("bucket") or settings.state_bucket or "")
    ctx = build_context(invocation, bucket, inline=lambda e: handle(e, None, env=env), env=env)
    if step["action"] == "resume":
        report = resume_run(step["runId"], ctx, step=step.get("step"), not_before=step.get("notBefore"))
        return {"runs": [_summary(report)] if report else []}
    report = apply_chunk(step["runId"], int(step["chunk"]), int(step["chunks"]), ctx, step=step.get("step"))
    return {"runs": [_summary(report)] if report else [], "chunk": step["chunk"]}


def handle(event: Any, context: Any, *, env: Mapping[str, str] | None = None) -> Any:
    env = os.environ if env is None else env
    with invocation_of(context, env) as invocation:
        payload = decode_event(event)
        step = continuation_of(payload)
        if step is not None:
            return shape_answer(_continue(step, invocation, env), invocation)
        settings = SyncSettings.from_env(env)
        try:
            found = parse_object_events(payload, ignore_prefixes=[settings.output_prefix])
        except UnsupportedEvent as exc:
            log.error("unsupported event: nothing synced", extra={"code": exc.code, "detail": exc.message})
            return shape_answer({"runs": [], "error": exc.to_dict()}, invocation)
        runs = []
        for upload in found.uploads:
            inline = lambda e: handle(e, None, env=env)  # noqa: E731 - the local stand-in for an async invoke
            ctx = build_context(invocation, upload.bucket, inline=inline, env=env)
            runs.append(_summary(sync_upload(upload, ctx)))
        return shape_answer({"runs": runs, "skipped": [asdict(s) for s in found.skipped]}, invocation)
