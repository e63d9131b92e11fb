"""Handing work to new invocations of a function: continuing a checkpointed run, applying chunks in parallel.

- ``FcDispatcher``: Function Compute 3.0 asynchronous invocation of the function itself, one signed ``requests``
  POST per event to ``/2023-03-30/functions/{name}/invocations`` with ``x-fc-invocation-type: Async``, signed
  ACS3-HMAC-SHA256 (``adapters.acs3_signature``) with the role's STS credentials.
- ``LambdaDispatcher``: Lambda ``Invoke`` with ``InvocationType=Event`` of the function's own ARN (boto3).
- ``QueueDispatcher``: one SQS message per event, for a queue-triggered worker (boto3).
- ``InlineDispatcher``: a thread per event in this process; the CLI and the tests use it.

Each event is small JSON (``{"cvcsync": {"action": ..., "runId": ...}}``): the work itself is in the object store.

Why no SDK on FC. ``aliyun-fc2`` speaks only the 2016-08-15 API, which addresses a function under a service
(``/services/{service}/functions/{name}``); FC 3.0 has no services, and no published source names a service under
which a function created by FC 3.0 answers that API (``deploy/ros_specs/README.md``, (d)). FC 3.0's own SDK,
``alibabacloud_fc20230330``, is what the one call would otherwise need, and it is the expensive import. Cold-start
cost: sum of ``python -X importtime`` self times of the modules an import adds, median of 9 fresh interpreters
(Python 3.11.7, 2 shared cores, load about 2; ``import`` alone, then after what a function has already loaded)::

    import requests, cvcsync.adapters.acs3_signature     99.0 ms   225 modules
    import fc2 (aliyun-fc2 2.5.2)                        120.7 ms   257 modules
    import alibabacloud_fc20230330.client (4.8.3)        323.2 ms   858 modules (aiohttp, apscheduler, ...)
    after requests and the CVC client:
      cvcsync.platform.dispatch (with the signer)          3.4 ms     6 modules
      fc2                                                 11.3 ms    32 modules
      alibabacloud_fc20230330.client                     264.1 ms   631 modules

The endpoint is the account's internal one, ``https://{account}.{region}-internal.fc.aliyuncs.com`` (FC 3.0
"Endpoints"), from the context's ``account_id`` and ``region``; ``CVCSYNC_FC_ENDPOINT`` overrides it (the public
``https://{account}.{region}.fc.aliyuncs.com``, or a local stand-in in tests). A continuation invokes the qualifier
(version or alias) the run itself runs, when the context names one.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from cvcsync.adapters import acs3_signature
from cvcsync.adapters.credentials import Credentials, from_environment, from_fc_context
from cvcsync.adapters.http_session import signed_call_session
from cvcsync.budget import TimeBudget
from cvcsync.config import ENV_FC_ENDPOINT
from cvcsync.errors import ConfigurationError, CvcSyncError
from cvcsync.platform.runtime import Invocation

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

FC_API_VERSION = "2023-03-30"
FC_CONNECT_TIMEOUT = 3.05
FC_READ_TIMEOUT = 10.0  # clipped to the invocation's time left; an async invoke answers in milliseconds
# FC's answers that another attempt may get past: overload and its own failures. Anything else is about the request
# (signature, credentials, permission, name) and repeats until the deployment is fixed.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CREDENTIAL_CODES = ("SignatureNotMatch", "SignatureDoesNotMatch", "InvalidAccessKeyID", "InvalidSecurityToken")


class DispatchError(CvcSyncError):
    """The platform did not take a continuation. The run's work is saved; the same event may be sent again
    (continuations are idempotent by their step). ``retryable`` is False for a refusal only a fix can cure."""

    code = "DispatchFailed"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        error_code: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.request_id = request_id
        self.error_code = error_code
        self.retryable = retryable

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "httpStatus": self.http_status,
            "requestId": self.request_id,
            "errorCode": self.error_code,
        }


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


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _new_nonce() -> str:
    return uuid.uuid4().hex


def new_fc_session() -> requests.Session:
    """One session per warm container (``adapters.http_session``: no adapter retries, each attempt signed anew)."""
    return signed_call_session()


@dataclass(frozen=True)
class InvokeRequest:
    """One signed async invocation, as it goes on the wire."""

    url: str
    headers: dict[str, str] = field(repr=False)  # Authorization and the STS token: never in a repr or a log
    body: bytes = field(repr=False)


def _answer_fields(content: bytes) -> tuple[str | None, str | None]:
    """(error code, request id) from FC's JSON error body, in either spelling it uses; (None, None) if not JSON."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = next((data[k] for k in ("Code", "code", "ErrorCode", "errorCode") if isinstance(data.get(k), str)), None)
    rid = next((data[k] for k in ("RequestId", "requestId") if isinstance(data.get(k), str)), None)
    return code, rid


def invoke_failure(function: str, status: int, request_id: str | None, content: bytes) -> DispatchError:
    """FC's refusal of an invocation as a DispatchError: its code, status and request id, and what to check.

    Never FC's message: a signature mismatch may echo what was signed, which holds the STS token.
    """
    code, body_request_id = _answer_fields(content)
    code = code or f"HTTP{status}"
    request_id = request_id or body_request_id
    if code.startswith(_CREDENTIAL_CODES):
        hint = "; FC refused the signature or the function role's STS credentials"
    elif code == "AccessDenied" or status == 403:
        hint = "; grant the function's role fc:InvokeFunction on the function itself"
    elif code == "FunctionNotFound" or status == 404:
        hint = f"; no such function at this endpoint: check the account and region (or {ENV_FC_ENDPOINT})"
    else:
        hint = ""
    retryable = status in _RETRYABLE_STATUSES or code.startswith(("Throttl", "ResourceExhausted"))
    return DispatchError(
        f"FC did not take the async invocation of function {function!r}: {code} "
        f"(HTTP {status}, request id {request_id or 'none'}){hint}",
        http_status=status,
        request_id=request_id,
        error_code=code,
        retryable=retryable,
    )


class FcDispatcher:
    """FC 3.0 asynchronous invocation of the function itself (its name, account and region from the context)."""

    def __init__(
        self,
        invocation: Invocation,
        *,
        env: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        now: Callable[[], datetime] = _utc_now,
        nonce: Callable[[], str] = _new_nonce,
    ) -> None:
        name = invocation.function_name
        if not name:
            raise ConfigurationError("FC fan-out needs the function's name from the invocation context")
        if "/" in name:
            raise ConfigurationError(f"FC fan-out: {name!r} from the context is not a function name (it has a /)")
        self._invocation = invocation
        self._function = name
        self._env = os.environ if env is None else env
        self._session = session  # built at the first dispatch: most runs never continue
        self._now = now
        self._nonce = nonce

    def endpoint(self) -> str:
        """``CVCSYNC_FC_ENDPOINT``, else the internal endpoint of the function's own account and region."""
        explicit = self._env.get(ENV_FC_ENDPOINT, "").strip()
        if explicit:
            if not explicit.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"{ENV_FC_ENDPOINT} must be a full URL such as https://<account-id>.cn-hangzhou.fc.aliyuncs.com"
                )
            return explicit.rstrip("/")
        account, region = self._invocation.account_id, self._invocation.region
        if not (account and region):
            raise ConfigurationError(
                f"FC fan-out needs the account id and region from the invocation context, or {ENV_FC_ENDPOINT}"
            )
        return f"https://{account}.{region}-internal.fc.aliyuncs.com"

    def credentials(self) -> Credentials:
        """The function role's STS credentials: the context's (python3.10), else the environment's (python3.12,
        whose context has none; FC sets ``ALIBABA_CLOUD_*`` to the role's key)."""
        context = self._invocation.context
        found = from_fc_context(context)() or from_environment(self._env, fc_context=context)()
        if found is None:
            raise ConfigurationError(
                "FC fan-out needs the function role's STS credentials (the context's, or ALIBABA_CLOUD_ACCESS_KEY_ID, "
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET and ALIBABA_CLOUD_SECURITY_TOKEN): give the function a role"
            )
        return found

    def request(self, event: dict[str, Any], *, endpoint: str, credentials: Credentials) -> InvokeRequest:
        """The signed POST that hands ``event`` to a new invocation; a fresh date and nonce every time."""
        body = orjson.dumps(event)
        path = f"/{FC_API_VERSION}/functions/{self._function}/invocations"
        qualifier = self._invocation.qualifier
        query = {"qualifier": str(qualifier)} if qualifier else {}
        headers = acs3_signature.sign(
            "POST",
            path,
            query,
            {
                "host": urlsplit(endpoint).netloc,
                "content-type": "application/octet-stream",
                "x-acs-action": "InvokeFunction",
                "x-acs-version": FC_API_VERSION,
                "x-fc-invocation-type": "Async",
            },
            body,
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
            now=self._now(),
            nonce=self._nonce(),
            also_sign=("x-fc-invocation-type",),  # so that nobody on the way can make the call synchronous
        )
        query_string = acs3_signature.canonical_query(query)
        url = endpoint + acs3_signature.canonical_uri(path) + (f"?{query_string}" if query_string else "")
        return InvokeRequest(url, headers, body)

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        endpoint = self.endpoint()
        credentials = self.credentials()
        if self._session is None:
            self._session = new_fc_session()
        for event in events:
            request_id = self._send(self._session, self.request(event, endpoint=endpoint, credentials=credentials))
            log.info(
                "continuation handed to a new invocation",
                extra={"function": self._function, "fcRequestId": request_id},
            )

    def _send(self, session: requests.Session, request: InvokeRequest) -> str | None:
        """One attempt; FC's request id on success. The one place requests' and FC's failures become DispatchError."""
        import requests

        budget = TimeBudget.until(self._invocation.deadline)
        timeout = (FC_CONNECT_TIMEOUT, max(1.0, budget.clip(FC_READ_TIMEOUT)))
        try:
            response = session.post(
                request.url, data=request.body, headers=request.headers, timeout=timeout, allow_redirects=False
            )
            content = response.content
        except requests.RequestException as exc:
            raise DispatchError(
                f"FC async invocation of function {self._function!r} got no answer from "
                f"{urlsplit(request.url).netloc} ({type(exc).__name__})"
            ) from exc
        request_id = response.headers.get("x-fc-request-id")
        if 200 <= response.status_code < 300:
            return request_id
        raise invoke_failure(self._function, response.status_code, request_id, content)


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
