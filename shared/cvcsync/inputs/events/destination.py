"""Function Compute's asynchronous-invocation destinations (on failure, on success).

A destination receives ``{"timestamp", "requestContext": {"requestId", "functionArn", "condition",
"approximateInvokeCount"}, "requestPayload": "<the original event as a string>", "responseContext",
"responsePayload"}``. Replaying a failed upload means reading the original event back out of
``requestPayload``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_destination_record(obj: Mapping[str, Any]) -> bool:
    return "requestPayload" in obj and isinstance(obj.get("requestContext"), Mapping)


def request_payload(obj: Mapping[str, Any]) -> Any:
    """The original event: normally a string, a mapping or list if a test or a proxy already decoded it."""
    return obj.get("requestPayload")


def invoke_count(obj: Mapping[str, Any]) -> int | None:
    """``requestContext.approximateInvokeCount``: how many times FC ran the original event before giving up."""
    context = obj.get("requestContext")
    value = context.get("approximateInvokeCount") if isinstance(context, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
