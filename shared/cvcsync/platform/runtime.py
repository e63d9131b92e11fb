"""The invocation a handler runs in, the same shape on Function Compute, Lambda and locally.

FC has no remaining-time call: the deadline is the start plus the function's timeout. Lambda tells the remaining
milliseconds. Either way the engine sees one ``deadline`` on the ``time.monotonic()`` clock, and spends it as a
``TimeBudget`` that keeps a margin free for the run's own checkpoint and commit.

FC 2.0 and FC 3.0 contexts are read alike (``request_id``, ``function.name``/``timeout``, ``region``,
``account_id``). FC 3.0 has no ``service``; its ``function.qualifier`` names the version or alias running, which a
continuation invokes again. Its python3.12 runtime has no ``credentials`` either: the role's STS key is then only
in the environment (``adapters.credentials`` reads both).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.budget import TimeBudget
from cvcsync.config import ENV_ALIBABA_REGION, ENV_AWS_REGION

FC, LAMBDA, LOCAL = "fc", "lambda", "local"


# A run id names objects (runs/<id>/...) and local files: letters, digits, - and _ only (a UUID fits).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _read(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass
class Invocation:
    platform: str
    request_id: str
    deadline: float | None
    function_name: str | None = None
    context: Any = field(default=None, repr=False)
    region: str | None = None
    account_id: str | None = None
    service_name: str | None = None
    function_arn: str | None = None
    qualifier: str | None = None  # FC 3.0: the version or alias this invocation runs (function.qualifier)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def budget(self, margin: float) -> TimeBudget:
        """What the run may spend on CVC calls: the deadline less ``margin`` kept to checkpoint and commit."""
        return TimeBudget.until(self.deadline, margin)

    @property
    def fc_context(self) -> Any:
        """The FC context (for its STS credentials), or None off FC."""
        return self.context if self.platform == FC else None


def from_context(context: Any, *, started: float | None = None) -> Invocation:
    """Tell FC from Lambda by what the context offers; no context means a local run without deadline."""
    started = time.monotonic() if started is None else started
    if context is None:
        return Invocation(LOCAL, str(uuid.uuid4()), None)
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        return Invocation(
            LAMBDA,
            str(_read(context, "aws_request_id", "")),
            started + remaining_ms() / 1000.0,
            function_name=_read(context, "function_name"),
            context=context,
            region=os.environ.get(ENV_AWS_REGION),
            function_arn=_read(context, "invoked_function_arn"),
        )
    function = _read(context, "function")
    timeout = _read(function, "timeout")
    return Invocation(
        FC,
        str(_read(context, "request_id", "")),
        started + float(timeout) if timeout else None,
        function_name=_read(function, "name"),
        context=context,
        region=_read(context, "region"),
        account_id=_read(context, "account_id"),
        service_name=_read(_read(context, "service"), "name"),
        qualifier=_read(function, "qualifier"),
    )


@dataclass
class _Namespace:
    """Attribute access over a dict, as FC's Python runtime gives its context objects."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            value = self.values[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Namespace(value) if isinstance(value, dict) else value


def local_fc_context(
    function_name: str, *, timeout: int = 60, credentials: Mapping[str, str] | None = None, memory: int = 512
) -> Any:
    """A context shaped like FC 2.0's Python one (see the reference sample), for ``cvcsync invoke``."""
    return _Namespace(
        {
            "request_id": str(uuid.uuid4()),
            "credentials": dict(credentials or {}),
            "function": {"name": function_name, "handler": "index.handler", "memory": memory, "timeout": timeout},
            "service": {
                "name": "cvc-sync",
                "log_project": "",
                "log_store": "",
                "qualifier": "LATEST",
                "version_id": "",
            },
            "region": os.environ.get(ENV_ALIBABA_REGION, "cn-hangzhou"),
            "account_id": "0000000000000000",
        }
    )


class LocalLambdaContext:
    """A context shaped like Lambda's, with a real countdown, for ``cvcsync invoke``."""

    def __init__(self, function_name: str, *, timeout: int = 60, memory: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))
