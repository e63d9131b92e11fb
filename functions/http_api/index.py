"""HTTP API (FC 2.0 HTTP trigger as WSGI; FC 3.0 HTTP trigger, API Gateway and Lambda function URLs as events).

One ``handler`` for both call shapes: ``handler(environ, start_response)`` or ``handler(event, context)``; the
event shape also takes the continuation events of a ``POST /sync`` run (this function invoking itself).
"""

from __future__ import annotations

from typing import Any

from cvcsync.platform.cold_start import cold_imports

with cold_imports():
    from cvcsync.platform.triggers.http import handle


def handler(request_or_event: Any, start_response_or_context: Any) -> Any:
    return handle(request_or_event, start_response_or_context)
