"""Handing work to new invocations of a function: continuing a checkpointed run, applying chunks in parallel.

- ``FcDispatcher``: FC asynchronous invocation through ``aliyun-fc2`` (``x-fc-invocation-type: Async``) of the
  function's own service and name, with the context's STS credentials.
- ``LambdaDispatcher``: Lambda ``Invoke`` with ``InvocationType=Event`` of the function's own ARN (boto3).
- ``QueueDispatcher``: one SQS message per event, for a queue-triggered worker (boto3).
- ``InlineDispatcher``: a thread per event in this process; the CLI and the tests use it.

Each event is small JSON (``{"cvcsync": {"action": ..., "runId": ...}}``): the work itself is in the object store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from cvcsync.adapters.credentials import from_fc_context
from cvcsync.errors import ConfigurationError, CvcSyncError
from cvcsync.platform.runtime import Invocation

log = logging.getLogger(__name__)


class DispatchError(CvcSyncError):
    code = "DispatchFailed"
    retryable = True


class InlineDispatcher:
    """Runs each event through ``handle`` on worker threads and waits: parallel chunks without a platform."""

    def __init__(self, handle: Callable[[dict[str, Any]], Any], *, workers: int = 4) -> None:
        self._handle = handle
        self._workers = workers
        self.dispatched: list[dict[str, Any]] = []

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        self.dispatched.extend(events)
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="cvc-inline") as pool:
            for result in pool.map(self._handle, events):
                log.debug("inline invocation finished", extra={"result": str(result)[:200]})


class QueueDispatcher:
    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 10):
            entries = [
                {"Id": str(i), "MessageBody": orjson.dumps(event).decode()}
                for i, event in enumerate(events[start : start + 10])
            ]
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            if answer.get("Failed"):
                raise DispatchError(f"SQS refused {len(answer['Failed'])} continuation messages")


class FcDispatcher:
    def __init__(self, invocation: Invocation, *, client: Any = None) -> None:
        if not (invocation.service_name and invocation.function_name):
            raise ConfigurationError("FC fan-out needs the context's service and function names")
        self._service = invocation.service_name
        self._function = invocation.function_name
        self._invocation = invocation
        self._client = client  # built at the first dispatch: most runs never continue, and fc2 costs a cold start

    @staticmethod
    def _build(invocation: Invocation) -> Any:
        import fc2  # imported only where fan-out or a continuation happens on FC

        creds = from_fc_context(invocation.context)()
        if creds is None or not (invocation.account_id and invocation.region):
            raise ConfigurationError("FC fan-out needs the context's STS credentials, account id and region")
        endpoint = f"https://{invocation.account_id}.{invocation.region}-internal.fc.aliyuncs.com"
        return fc2.Client(
            endpoint=endpoint,
            accessKeyID=creds.access_key_id,
            accessKeySecret=creds.access_key_secret,
            securityToken=creds.security_token or "",
            Timeout=10,
        )

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        if self._client is None:
            self._client = self._build(self._invocation)
        for event in events:
            try:
                self._client.invoke_function(
                    self._service,
                    self._function,
                    payload=orjson.dumps(event),
                    headers={"x-fc-invocation-type": "Async"},
                )
            except Exception as exc:  # fc2 raises its own and requests' errors; one boundary, translated here
                raise DispatchError(f"FC async invocation failed: {type(exc).__name__}") from exc


class LambdaDispatcher:
    def __init__(self, invocation: Invocation, *, client: Any = None) -> None:
        if not invocation.function_arn:
            raise ConfigurationError("Lambda fan-out needs the function's ARN from the context")
        self._arn = invocation.function_arn
        if client is None:
            import boto3

            client = boto3.client("lambda")
        self._client = client

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            answer = self._client.invoke(FunctionName=self._arn, InvocationType="Event", Payload=orjson.dumps(event))
            if answer.get("StatusCode") != 202:
                raise DispatchError(f"Lambda async invocation answered {answer.get('StatusCode')}")
