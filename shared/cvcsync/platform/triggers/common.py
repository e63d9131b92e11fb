"""What every trigger adapter does the same way: decode the event, set up logs and the invocation, shape the answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson

from cvcsync.config import ENV_LOG_LEVEL
from cvcsync.errors import InvalidInputError
from cvcsync.logs import configure_logging, request_id_var
from cvcsync.platform.runtime import FC, RUN_ID, Invocation, from_context

STEP = re.compile(r"(resume-[0-9]{1,6}|chunk-[0-9]{1,6}(\.[0-9]{1,6})?)")


def decode_event(event: Any) -> Any:
    """FC hands Python 3 ``bytes``; Lambda a ``dict`` or ``list``; a local caller maybe a ``str``."""
    if isinstance(event, (bytes, bytearray, memoryview, str)):
        raw = bytes(event) if not isinstance(event, str) else event.encode()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", "replace")  # a STREAM-format message body may be plain text
    return event


@contextmanager
def invocation_of(context: Any, env: Mapping[str, str]) -> Iterator[Invocation]:
    """The invocation (deadline, request id) with JSON logging set up and the request id on every log line."""
    started = time.monotonic()
    configure_logging(env.get(ENV_LOG_LEVEL, "").strip() or "INFO")
    invocation = from_context(context, started=started)
    token = request_id_var.set(invocation.request_id)
    try:
        yield invocation
    finally:
        request_id_var.reset(token)


def shape_answer(result: dict[str, Any], invocation: Invocation) -> Any:
    """FC event functions answer bytes (we send JSON); Lambda serialises a dict itself."""
    if invocation.platform == FC:
        return orjson.dumps(result)
    return result


def continuation_of(payload: Any) -> dict[str, Any] | None:
    """The ``{"cvcsync": {...}}`` events cvc-sync sends itself (resume a run, apply a chunk), else None."""
    if isinstance(payload, dict) and isinstance(payload.get("cvcsync"), dict):
        inner: dict[str, Any] = payload["cvcsync"]
        if inner.get("action") not in ("resume", "chunk") or not isinstance(inner.get("runId"), str):
            raise InvalidInputError("a cvcsync continuation event needs action resume|chunk and a runId")
        if not RUN_ID.fullmatch(inner["runId"]):  # it becomes part of object keys and file names
            raise InvalidInputError("a continuation's runId must be letters, digits, - and _ (a run id)")
        if inner["action"] == "chunk" and not all(
            isinstance(inner.get(name), int) and not isinstance(inner.get(name), bool) and inner[name] >= 0
            for name in ("chunk", "chunks")
        ):
            raise InvalidInputError("a chunk continuation needs whole numbers chunk and chunks")
        step = inner.get("step")
        if step is not None and not (isinstance(step, str) and STEP.fullmatch(step)):  # part of an object key
            raise InvalidInputError("a continuation's step must be a step name such as resume-2 or chunk-3.1")
        not_before = inner.get("notBefore")
        if not_before is not None and (isinstance(not_before, bool) or not isinstance(not_before, (int, float))):
            raise InvalidInputError("a continuation's notBefore must be a time in epoch seconds")
        return inner
    return None
