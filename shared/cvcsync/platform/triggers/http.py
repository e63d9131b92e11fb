"""The HTTP trigger: FC 2.0 calls ``handler(environ, start_response)`` (WSGI); FC 3.0, API Gateway and Lambda
function URLs call ``handler(event, context)``. One entry point tells the two apart by its arguments, so every
platform configures the same ``index.handler``; both reach the one ``HttpApi``.

The same entry point takes the continuation events a ``POST /sync`` run sends itself (``{"cvcsync": {"action":
"resume" | "chunk", ...}}``, by FC or Lambda asynchronous invocation of this very function): a run that reached its
deadline, or fanned out, is finished by them as the upload function's runs are, by the same code.

The ``HttpApi`` is made once per warm container (it holds the replay memory and the circuit breaker); it reads no
environment variable until a request comes.
"""

from __future__ import annotations

from typing import Any

from cvcsync.config import ENV_LOG_LEVEL
from cvcsync.http_api.adapters import handle_event, is_wsgi_call
from cvcsync.http_api.app import HttpApi
from cvcsync.logs import configure_logging
from cvcsync.platform.triggers.common import continuation_of, decode_event

_api = HttpApi()


def handle(request_or_event: Any, start_response_or_context: Any, *, api: HttpApi | None = None) -> Any:
    """The WSGI body iterable, or the event platform's response object. ``api``: tests bring their own."""
    api = api or _api
    configure_logging(api.env.get(ENV_LOG_LEVEL, "").strip() or "INFO")
    if is_wsgi_call(request_or_event, start_response_or_context):
        return api(request_or_event, start_response_or_context)
    event = decode_event(request_or_event)
    if continuation_of(event) is not None:
        from cvcsync.platform.triggers.upload import (
            handle as continue_run,  # the one continuation entry; only continuations pay its import
        )

        return continue_run(event, start_response_or_context, env=api.env)
    return handle_event(api, event, start_response_or_context)
