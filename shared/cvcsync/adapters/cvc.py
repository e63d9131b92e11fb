"""The signed CVC client: one private ``_call`` (build, sign, send, classify, parse) and one method per action.

Every attempt is signed anew (fresh Timestamp and SignatureNonce), so a retry can never earn
``SignatureNonceUsed``. Retries are decided here, never by the HTTP adapter. Batches of users are split to at
most ``batch_size`` per CreateUser/DeleteUser call, and each batch's fate is reported, not raised, so a caller
syncing thousands of users can dead-letter one failed batch and carry on with the rest.

Time comes from the caller as a ``TimeBudget``: every attempt's timeouts are clipped to what is left of it and no
retry wait passes it. A bare ``deadline=`` (a ``time.monotonic()`` instant) is the budget that ends there.

A caller running many calls at once passes a ``pacer`` (``retry.Pacer``): it sees every attempt's outcome, the
throttled retries too, and may hold an attempt back while the service asked everyone to wait.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

import orjson
import requests

from cvcsync import __version__
from cvcsync.adapters import signature
from cvcsync.adapters.credentials import Credentials, default_credentials
from cvcsync.adapters.http_session import signed_call_session
from cvcsync.adapters.ratelimit import RateLimiter
from cvcsync.adapters.retry import Pacer, RetryContext, RetryPolicy, is_retryable_code, parse_retry_after
from cvcsync.budget import TimeBudget
from cvcsync.config import API_VERSION, DEFAULT_MAX_CONCURRENCY, CvcSettings
from cvcsync.errors import (
    CvcBusinessError,
    CvcError,
    CvcGatewayError,
    CvcTransportError,
    DeadlineExceeded,
)

log = logging.getLogger(__name__)

_SIGNATURE_MISMATCH_MARK = "server string to sign is:"
_PREVIEW_LIMIT = 200
_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"cvcsync/{__version__}",
}


@dataclass(frozen=True)
class CallResult:
    """A successful answer: the decoded body, the request id, and what it took to get it."""

    action: str
    data: dict[str, Any]
    request_id: str | None
    attempts: int
    latency: float


@dataclass
class BatchResult:
    """One CreateUser/DeleteUser batch: which users it carried and how it ended (``error`` is None on success)."""

    action: str
    user_ids: list[str]
    records: Sequence[Mapping[str, Any]] = field(repr=False)
    request_id: str | None = None
    attempts: int = 0
    latency: float = 0.0
    error: CvcError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _preview(content: bytes) -> str:
    text = content[:_PREVIEW_LIMIT].decode("utf-8", "replace")
    return text + ("…" if len(content) > _PREVIEW_LIMIT else "")


def _safe_gateway_message(code: str, message: str) -> str:
    """The gateway echoes its string-to-sign, which holds the key id, the STS token and user data: withhold it."""
    if code == "SignatureDoesNotMatch" and _SIGNATURE_MISMATCH_MARK in message:
        head = message.split(_SIGNATURE_MISMATCH_MARK, 1)[0].strip()
        return f"{head} (the gateway's string to sign is withheld from logs; check the AccessKey secret)"
    return message


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _new_nonce() -> str:
    return str(uuid.uuid4())


class CvcClient:
    """A CVC (aliyuncvc 2019-10-30) client over one reused ``requests.Session``."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        settings: CvcSettings | None = None,
        retry_policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        now: Callable[[], datetime] = _utc_now,
        nonce: Callable[[], str] = _new_nonce,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        pool_size: int = DEFAULT_MAX_CONCURRENCY,  # connections kept: one per call a run may have in flight
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings or CvcSettings()
        self.credentials = credentials
        self.retry_policy = retry_policy or RetryPolicy(max_attempts=self.settings.max_attempts)
        self._now = now
        self._nonce = nonce
        self._sleep = sleep
        self._monotonic = monotonic
        self._url = self.settings.endpoint.rstrip("/") + "/"
        if rate_limiter is None and self.settings.max_qps:
            rate_limiter = RateLimiter(self.settings.max_qps)
        self._limiter = rate_limiter
        self.calls: Counter[str] = Counter()  # HTTP requests sent, per action: the report's "calls made"
        self._calls_lock = threading.Lock()
        if session is None:
            session = signed_call_session(pool_size)  # no adapter-level retries: a replay would reuse its nonce
        self._session = session
        # Proxies from the environment are looked up once here, not on every call as requests would (it walks
        # the whole environment per request); HTTPS_PROXY / NO_PROXY still apply.
        self._proxies = requests.utils.get_environ_proxies(self._url) if session.trust_env else {}
        self._session.trust_env = False

    @classmethod
    def from_env(
        cls,
        *,
        fc_context: Any = None,
        env: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> CvcClient:
        settings = CvcSettings.from_env(env)
        if endpoint:
            settings = CvcSettings(**{**settings.__dict__, "endpoint": endpoint.rstrip("/")})
        credentials = default_credentials(fc_context=fc_context, env=env)
        return cls(credentials, settings=settings, **kwargs)

    def __repr__(self) -> str:
        return f"CvcClient(endpoint={self.settings.endpoint!r}, access_key_id={self.credentials.access_key_id!r})"

    def close(self) -> None:
        self._session.close()

    # -- the one call path -------------------------------------------------------------------------------------

    def _signed_query(self, action: str, query: Mapping[str, str], body_encoded: Mapping[str, str]) -> str:
        """This attempt's query string: fresh Timestamp and nonce, signed over query and (encoded) body."""
        creds = self.credentials
        params = signature.common_params(
            action=action,
            version=API_VERSION,
            access_key_id=creds.access_key_id,
            now=self._now(),
            nonce=self._nonce(),
            security_token=creds.security_token,
        )
        params.update(query)
        encoded = signature.encode_values(params)
        text = signature.string_to_sign_encoded("POST", {**encoded, **body_encoded})
        encoded["Signature"] = signature.percent_encode(signature.signature(creds.access_key_secret, text))
        return signature.encode_form(encoded)

    def _budget(self, deadline: float | None, budget: TimeBudget | None) -> TimeBudget:
        """The caller's budget, or the one a bare ``deadline`` instant stands for (on this client's clock)."""
        if budget is not None:
            if deadline is not None:
                raise TypeError("pass a budget or a deadline, not both")
            return budget
        return TimeBudget.until(deadline, clock=self._monotonic)

    def _timeout(self, ctx: RetryContext, action: str) -> tuple[float, float]:
        """This attempt's (connect, read) timeouts, clipped to the budget: a slow answer must not outlast it."""
        if ctx.budget.expired():
            raise DeadlineExceeded(
                "no time left in the caller's budget",
                action=action,
                code="DeadlineExceeded",
                retryable=True,
            )
        return ctx.budget.clip(self.settings.connect_timeout), ctx.budget.clip(self.settings.read_timeout)

    def _attempt(
        self,
        action: str,
        query: Mapping[str, str],
        body_encoded: Mapping[str, str],
        ctx: RetryContext,
        pacer: Pacer | None,
    ) -> CallResult:
        if self._limiter is not None and not self._limiter.acquire(ctx.budget.ends_at):
            raise DeadlineExceeded(
                "the rate limit leaves no time before the deadline",
                action=action,
                code="DeadlineExceeded",
                retryable=True,
            )
        if pacer is not None and not pacer.before_attempt(ctx.budget):
            raise DeadlineExceeded(
                "CVC asked for a pause (x-acs-retry-after) that outlasts the deadline",
                action=action,
                code="DeadlineExceeded",
                retryable=True,
            )
        timeout = self._timeout(ctx, action)
        with self._calls_lock:
            self.calls[action] += 1
        if pacer is None:
            return self._exchange(action, query, body_encoded, ctx, timeout)
        started = self._monotonic()
        try:
            result = self._exchange(action, query, body_encoded, ctx, timeout)
        except CvcError as error:
            pacer.after_attempt(self._monotonic() - started, error)
            raise
        except BaseException:
            pacer.after_attempt(None, None)  # its place must free whatever ended the attempt
            raise
        pacer.after_attempt(result.latency, None)
        return result

    def _exchange(
        self,
        action: str,
        query: Mapping[str, str],
        body_encoded: Mapping[str, str],
        ctx: RetryContext,
        timeout: tuple[float, float],
    ) -> CallResult:
        """Sign, send and classify one attempt."""
        started = self._monotonic()
        url = f"{self._url}?{self._signed_query(action, query, body_encoded)}"
        payload = signature.encode_form(body_encoded).encode("ascii") if body_encoded else b""
        try:
            response = self._session.send(
                self._prepare(url, payload), timeout=timeout, proxies=self._proxies, allow_redirects=False
            )
            content = response.content
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            kind = "Timeout" if isinstance(exc, requests.Timeout) else "ConnectionError"
            raise CvcTransportError(
                f"{type(exc).__name__} talking to {self.settings.endpoint}",
                action=action,
                code=kind,
                retryable=True,
            ) from exc
        latency = self._monotonic() - started
        return self._classify(action, response, content, latency, ctx.attempts)

    def _prepare(self, url: str, payload: bytes) -> requests.PreparedRequest:
        """A ready request without ``Session.prepare_request``: the URL is ours and already fully encoded."""
        prepared = requests.PreparedRequest()
        prepared.method = "POST"
        prepared.url = url
        prepared.headers = requests.structures.CaseInsensitiveDict(_HEADERS)
        if payload:
            prepared.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        prepared.headers["Content-Length"] = str(len(payload))
        prepared.body = payload
        prepared.hooks = {"response": []}
        return prepared

    def _classify(
        self, action: str, response: requests.Response, content: bytes, latency: float, attempts: int
    ) -> CallResult:
        status = response.status_code
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise CvcTransportError(
                f"answer is not JSON (Content-Type {response.headers.get('Content-Type')!r}): {_preview(content)!r}",
                action=action,
                code="InvalidResponse",
                http_status=status,
                retryable=status >= 500,
            ) from exc
        if not isinstance(data, dict):
            raise CvcTransportError(
                f"answer is JSON but not an object: {_preview(content)!r}",
                action=action,
                code="InvalidResponse",
                http_status=status,
                retryable=False,
            )
        request_id = data.get("RequestId")
        if status >= 400 or ("Code" in data and "Success" not in data):
            code = str(data.get("Code") or f"HTTP{status}")
            raise CvcGatewayError(
                _safe_gateway_message(code, str(data.get("Message") or "")),
                action=action,
                code=code,
                http_status=status,
                request_id=request_id,
                retryable=is_retryable_code(code, status),
                retry_after=parse_retry_after(response.headers.get("x-acs-retry-after")),
            )
        if data.get("Success") is False:
            raise CvcBusinessError(
                str(data.get("Message") or "Success is false"),
                action=action,
                code=str(data.get("ErrorCode", "Unknown")),
                http_status=status,
                request_id=request_id,
                retryable=False,
            )
        return CallResult(action, data, request_id, attempts, latency)

    def _call(
        self,
        action: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, str] | None = None,
        budget: TimeBudget,
        batch_size: int | None = None,
        pacer: Pacer | None = None,
    ) -> CallResult:
        """Send one action with retries; raise the last ``CvcError`` when attempts or time run out."""
        ctx = RetryContext(self.retry_policy, budget)
        started = self._monotonic()
        body_encoded = signature.encode_values(body or {})  # once per call, reused by every attempt
        while True:
            ctx.attempts += 1
            try:
                result = self._attempt(action, query or {}, body_encoded, ctx, pacer)
            except CvcError as error:
                delay = ctx.next_delay(error)
                if delay is None:
                    error.attempts = ctx.attempts
                    self._log_call(action, batch_size, ctx.attempts, started, error.request_id, error)
                    raise
                log.debug(
                    "cvc retry",
                    extra={
                        "action": action,
                        "attempt": ctx.attempts,
                        "code": error.code,
                        "delay": round(delay, 3),
                    },
                )
                self._sleep(delay)
                continue
            self._log_call(action, batch_size, ctx.attempts, started, result.request_id, None)
            return result

    def _log_call(
        self,
        action: str,
        batch_size: int | None,
        attempts: int,
        started: float,
        request_id: str | None,
        error: CvcError | None,
    ) -> None:
        fields: dict[str, Any] = {
            "action": action,
            "attempts": attempts,
            "latencyMs": round((self._monotonic() - started) * 1000, 1),
            "cvcRequestId": request_id,
        }
        if batch_size is not None:
            fields["batchSize"] = batch_size
        if error is None:
            log.info("cvc call ok", extra=fields)
        else:
            log.warning("cvc call failed", extra={**fields, "code": error.code, "retryable": error.retryable})

    # -- actions ---------------------------------------------------------------------------------------------

    def create_batch(
        self,
        users: Sequence[Mapping[str, Any]],
        *,
        deadline: float | None = None,
        budget: TimeBudget | None = None,
    ) -> CallResult:
        """One CreateUser call (an upsert); ``users`` must fit one batch."""
        body = {"UserInfo": orjson.dumps(list(users)).decode(), "Count": str(len(users))}
        return self._call("CreateUser", body=body, budget=self._budget(deadline, budget), batch_size=len(users))

    def create_batch_json(
        self,
        users_json: Sequence[str],
        *,
        deadline: float | None = None,
        budget: TimeBudget | None = None,
        pacer: Pacer | None = None,
    ) -> CallResult:
        """CreateUser from users already serialised as JSON objects (the engine's plan stores them so)."""
        body = {"UserInfo": "[" + ",".join(users_json) + "]", "Count": str(len(users_json))}
        spend = self._budget(deadline, budget)
        return self._call("CreateUser", body=body, budget=spend, batch_size=len(users_json), pacer=pacer)

    def delete_batch(
        self,
        user_ids: Sequence[str],
        *,
        deadline: float | None = None,
        budget: TimeBudget | None = None,
        pacer: Pacer | None = None,
    ) -> CallResult:
        body = {
            "UserInfo": orjson.dumps([{"userId": uid} for uid in user_ids]).decode(),
            "Count": str(len(user_ids)),
        }
        spend = self._budget(deadline, budget)
        return self._call("DeleteUser", body=body, budget=spend, batch_size=len(user_ids), pacer=pacer)

    def iter_create(
        self,
        users: Iterable[Mapping[str, Any]],
        *,
        deadline: float | None = None,
        budget: TimeBudget | None = None,
    ) -> Iterator[BatchResult]:
        """Upsert any number of users, ``batch_size`` per call; yields each batch's result as it completes."""
        spend = self._budget(deadline, budget)
        for batch in _batches(users, self.settings.batch_size):
            ids = [str(u.get("userId", "")) for u in batch]
            yield self._run_batch("CreateUser", ids, batch, partial(self.create_batch, batch, budget=spend))

    def iter_delete(
        self, user_ids: Iterable[str], *, deadline: float | None = None, budget: TimeBudget | None = None
    ) -> Iterator[BatchResult]:
        spend = self._budget(deadline, budget)
        for batch in _batches(user_ids, self.settings.batch_size):
            records = [{"userId": uid} for uid in batch]
            yield self._run_batch("DeleteUser", batch, records, partial(self.delete_batch, batch, budget=spend))

    def create_users(
        self,
        users: Iterable[Mapping[str, Any]],
        *,
        deadline: float | None = None,
        budget: TimeBudget | None = None,
    ) -> list[BatchResult]:
        return list(self.iter_create(users, deadline=deadline, budget=budget))

    def delete_users(
        self, user_ids: Iterable[str], *, deadline: float | None = None, budget: TimeBudget | None = None
    ) -> list[BatchResult]:
        return list(self.iter_delete(user_ids, deadline=deadline, budget=budget))

    def _run_batch(
        self,
        action: str,
        user_ids: list[str],
        records: Sequence[Mapping[str, Any]],
        send: Callable[[], CallResult],
    ) -> BatchResult:
        result = BatchResult(action, user_ids, records)
        try:
            answer = send()
        except CvcError as error:
            result.error = error
            result.request_id = error.request_id
            result.attempts = error.attempts
            return result
        result.request_id = answer.request_id
        result.attempts = answer.attempts
        result.latency = answer.latency
        return result

    def get_user(
        self, user_id: str, *, deadline: float | None = None, budget: TimeBudget | None = None
    ) -> dict[str, Any]:
        """GetUser's ``UserInfo`` (PascalCase keys, ``CreateTime`` in epoch ms)."""
        result = self._call("GetUser", query={"UserId": user_id}, budget=self._budget(deadline, budget))
        info = result.data.get("UserInfo")
        if not isinstance(info, dict):
            raise CvcTransportError(
                "GetUser answered without a UserInfo object",
                action="GetUser",
                code="InvalidResponse",
                request_id=result.request_id,
            )
        return info

    def list_users(
        self, *, page_size: int = 100, deadline: float | None = None, budget: TimeBudget | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every user, page by page (PascalCase keys), until a short page or ``TotalCount`` is reached."""
        spend = self._budget(deadline, budget)
        page = 1
        seen = 0
        while True:
            result = self._call(
                "ListUsers",
                query={"PageNumber": str(page), "PageSize": str(page_size)},
                budget=spend,
            )
            data = result.data.get("Data") or {}
            infos = data.get("UserInfos") or []
            yield from infos
            seen += len(infos)
            total = data.get("TotalCount")
            if len(infos) < page_size or (isinstance(total, int) and seen >= total):
                return
            page += 1

    def get_account_info(self, *, deadline: float | None = None, budget: TimeBudget | None = None) -> dict[str, Any]:
        result = self._call("GetAccountInfo", budget=self._budget(deadline, budget))
        info = result.data.get("AccountInfo")
        return info if isinstance(info, dict) else {}
