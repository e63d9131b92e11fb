"""The operations behind the routes: validate, call CVC or the sync engine, shape the answer.

Batch answers (``POST /users``, ``POST /users:delete``) carry one result per input record, in input order:
200 when every record succeeded, 207 when some were rejected or failed (the body says which, and why).
Calls to CVC go through ``Dependencies.call``, which answers 429 while the container's circuit is open and feeds
every outcome to it.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, TypeVar

import orjson

from .. import services
from ..config import SyncSettings
from ..cvc import BatchResult, CvcClient
from ..errors import CvcBusinessError, CvcError, CvcSyncError, InvalidInputError
from ..events.types import ObjectUploaded
from ..objects import ObjectStoreError
from ..records import MAX_LENGTH, RecordError, User, parse_user, user_from_cvc
from ..runtime import RUN_ID, Invocation
from .app import Operation, Request, Response, Route, State, openapi_document
from .errors import ApiError, cvc_summary, from_cvc_error, from_store_error
from .settings import HttpSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
HEALTH_CACHE_SECONDS = 30.0
MAX_KEY_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UPSERTED, DELETED, REJECTED, SUPERSEDED, FAILED = "upserted", "deleted", "rejected", "superseded", "failed"
_UNSENT = {"code": "CircuitOpen", "message": "not sent: CVC is failing and the circuit opened", "retryable": True}


@dataclass
class Dependencies:
    """What an operation may use, built per request; clients come from ``services`` (kept per warm container)."""

    env: Mapping[str, str]
    state: State
    invocation: Invocation
    settings: HttpSettings

    @cached_property
    def sync_settings(self) -> SyncSettings:
        return SyncSettings.from_env(self.env)

    def check_circuit(self) -> None:
        wait = self.state.circuit.retry_after(self.settings.circuit_cooldown)
        if wait is not None:
            raise ApiError(
                429,
                "CircuitOpen",
                f"CVC is failing ({self.state.circuit.reason}); no calls are made for {wait:.0f} s more",
                headers=[("Retry-After", str(max(1, round(wait))))],
            )

    def cvc(self) -> CvcClient:
        self.check_circuit()
        return services.cvc_client(self.invocation, self.env)

    def call(self, send: Callable[[CvcClient], T]) -> T:
        """One CVC call with its outcome fed to the circuit; a failure raises the ``CvcError`` for the caller."""
        client = self.cvc()
        try:
            result = send(client)
        except CvcError as error:
            self.state.circuit.record(error)
            raise
        self.state.circuit.record(None)
        return result

    def send_batches(self, batches: Iterator[BatchResult], results: list[dict[str, Any]], order: list[int]) -> None:
        """Each batch's fate on its entries (``order``: their indexes, as sent), each fed to the circuit; once the
        circuit opens no further batch is sent (the iterator is lazy) and the entries left fail ``CircuitOpen``."""
        pending = iter(order)
        for batch in batches:
            self.state.circuit.record(batch.error)
            for index in itertools.islice(pending, len(batch.user_ids)):
                if batch.error is None:
                    results[index]["cvcRequestId"] = batch.request_id
                else:
                    results[index].update(status=FAILED, error=cvc_summary(batch.error))
            if self.state.circuit.retry_after(self.settings.circuit_cooldown) is not None:
                break
        for index in pending:
            results[index].update(status=FAILED, error=dict(_UNSENT))


# -- validation -------------------------------------------------------------------------------------------------


def _user_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "InvalidUserId", "must be a non-empty string", field=field)
    if len(value) > MAX_LENGTH["userId"] or _CONTROL.search(value) or value != value.strip():
        raise ApiError(
            400,
            "InvalidUserId",
            f"must be at most {MAX_LENGTH['userId']} characters, without control characters or outer spaces",
            field=field,
        )
    return value


def _record_error(error: RecordError) -> ApiError:
    first = error.problems[0]
    return ApiError(
        400,
        "InvalidUser",
        f"{first.field} {first.reason}",
        field=first.field,
        details={"problems": [{"field": p.field, "reason": p.reason} for p in error.problems]},
    )


def _batch_of(payload: Any, name: str, limit: int) -> list[Any]:
    """``{name: [...]}`` or a bare list, within the batch limit."""
    items = payload.get(name) if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ApiError(400, "InvalidRequest", f'send {{"{name}": [...]}} or a JSON list', field=name)
    if not items:
        raise ApiError(400, "InvalidRequest", "the list is empty", field=name)
    if len(items) > limit:
        raise ApiError(413, "TooManyRecords", f"{len(items)} records; at most {limit} per request", field=name)
    return items


def _batch_answer(results: list[dict[str, Any]]) -> Response:
    counts = {status: 0 for status in (UPSERTED, DELETED, REJECTED, SUPERSEDED, FAILED)}
    for result in results:
        counts[result["status"]] += 1
    summary = {"received": len(results), **{k: v for k, v in counts.items() if v or k in (REJECTED, FAILED)}}
    status = 207 if counts[REJECTED] or counts[FAILED] else 200
    return Response(status, {"summary": summary, "results": results})


# -- users ------------------------------------------------------------------------------------------------------


def get_user(request: Request, deps: Dependencies) -> Response:
    user_id = _user_id(request.params["id"], "id")
    try:
        info = deps.call(lambda cvc: cvc.get_user(user_id, deadline=deps.invocation.deadline))
    except CvcBusinessError as error:
        # CVC publishes no "no such user" code: a GetUser it understood and declined means the user is not there.
        raise ApiError(
            404, "NoSuchUser", f"CVC holds no user {user_id!r}", field="id", details={"cvc": cvc_summary(error)}
        ) from None
    except CvcError as error:
        raise from_cvc_error(error) from error
    return Response(200, {"user": user_from_cvc(info)})


def put_user(request: Request, deps: Dependencies) -> Response:
    user_id = _user_id(request.params["id"], "id")
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidUser", "the body must be a JSON object of the user's fields", field="(body)")
    for name in ("userId", "UserId"):
        if name in body and body[name] != user_id:
            raise ApiError(400, "InvalidUser", "must be left out or equal the id in the path", field="userId")
    try:
        user = parse_user({**body, "userId": user_id}, defaults=deps.sync_settings.defaults)
    except RecordError as error:
        raise _record_error(error) from None
    try:
        result = deps.call(lambda cvc: cvc.create_batch([user.to_cvc()], deadline=deps.invocation.deadline))
    except CvcError as error:
        raise from_cvc_error(error) from error
    answer: dict[str, Any] = {"user": user.to_cvc(), "status": UPSERTED, "cvcRequestId": result.request_id}
    if user.notices:
        answer["notices"] = list(user.notices)
    return Response(200, answer)


def upsert_users(request: Request, deps: Dependencies) -> Response:
    items = _batch_of(request.json(), "users", deps.settings.max_batch)
    defaults = deps.sync_settings.defaults
    results: list[dict[str, Any]] = []
    latest: dict[str, int] = {}
    users: dict[int, User] = {}
    for index, raw in enumerate(items):
        try:
            user = parse_user(raw, defaults=defaults)
        except RecordError as error:
            results.append(
                {
                    "index": index,
                    "userId": error.user_id,
                    "status": REJECTED,
                    "errors": [{"field": p.field, "reason": p.reason} for p in error.problems],
                }
            )
            continue
        results.append({"index": index, "userId": user.user_id, "status": UPSERTED})
        if user.user_id in latest:
            earlier = latest[user.user_id]
            results[earlier].update(status=SUPERSEDED, supersededBy=index)
            del users[earlier]
        latest[user.user_id] = index
        users[index] = user
        if user.notices:
            results[-1]["notices"] = list(user.notices)
    if users:
        order = list(users)
        records = (users[i].to_cvc() for i in order)
        deps.send_batches(deps.cvc().iter_create(records, deadline=deps.invocation.deadline), results, order)
    return _batch_answer(results)


def delete_user(request: Request, deps: Dependencies) -> Response:
    user_id = _user_id(request.params["id"], "id")
    try:
        result = deps.call(lambda cvc: cvc.delete_batch([user_id], deadline=deps.invocation.deadline))
    except CvcError as error:
        raise from_cvc_error(error) from error
    return Response(200, {"userId": user_id, "status": DELETED, "cvcRequestId": result.request_id})


def delete_users(request: Request, deps: Dependencies) -> Response:
    items = _batch_of(request.json(), "userIds", deps.settings.max_batch)
    results: list[dict[str, Any]] = []
    latest: dict[str, int] = {}
    for index, raw in enumerate(items):
        try:
            user_id = _user_id(raw, f"userIds[{index}]")
        except ApiError as error:
            results.append(
                {"index": index, "status": REJECTED, "errors": [{"field": error.field, "reason": error.message}]}
            )
            continue
        results.append({"index": index, "userId": user_id, "status": DELETED})
        if user_id in latest:
            results[latest[user_id]].update(status=SUPERSEDED, supersededBy=index)
        latest[user_id] = index
    order = sorted(latest.values())
    if order:
        ids = [str(results[i]["userId"]) for i in order]
        deps.send_batches(deps.cvc().iter_delete(ids, deadline=deps.invocation.deadline), results, order)
    return _batch_answer(results)


# -- sync and runs ----------------------------------------------------------------------------------------------


def _sync_key(value: Any, settings: SyncSettings) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "InvalidRequest", "the object's key is required, as a string", field="key")
    if len(value) > MAX_KEY_LENGTH or value.startswith("/") or ".." in value or _CONTROL.search(value):
        raise ApiError(
            400,
            "InvalidKey",
            f"must be a relative key of at most {MAX_KEY_LENGTH} characters, without '..' or control characters",
            field="key",
        )
    if not value.startswith((settings.full_prefix, settings.delta_prefix)) or value.endswith("/"):
        raise ApiError(
            403,
            "KeyNotAllowed",
            f"only objects under {settings.full_prefix} or {settings.delta_prefix} are synced",
            field="key",
        )
    return value


def _not_configured(what: str) -> ApiError:
    return ApiError(503, "NotConfigured", f"{what} is not configured for this function", field="bucket")


def sync(request: Request, deps: Dependencies) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequest", 'send {"key": "...", "bucket"?: "...", "dryRun"?: true}', field="(body)")
    settings = deps.settings
    key = _sync_key(body.get("key"), deps.sync_settings)
    bucket = body.get("bucket")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "InvalidRequest", "must be true or false", field="dryRun")
    if bucket is None:
        bucket = settings.default_bucket
        if bucket is None:
            raise _not_configured("a bucket to sync from (CVCSYNC_HTTP_SYNC_BUCKET or CVCSYNC_STATE_BUCKET)")
    elif not isinstance(bucket, str) or not bucket:
        raise ApiError(400, "InvalidRequest", "must be a bucket name", field="bucket")
    elif bucket not in settings.sync_buckets:
        raise ApiError(403, "BucketNotAllowed", "this bucket is not one this function syncs from", field="bucket")
    deps.check_circuit()
    try:
        ctx = services.build_context(deps.invocation, bucket, inline=None, env=deps.env)
        info = ctx.store.head(bucket, key)
        if info is None:
            raise ApiError(404, "NoSuchObject", f"no object {key!r} in the bucket", field="key")
        upload = ObjectUploaded(
            bucket=bucket,
            key=key,
            size=info.size,
            etag=info.etag,
            event_name="http:POST /sync",
            source="s3",
            event_time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            region=None,
        )
        from ..sync import sync_upload  # only this route plans and applies a file: kept off the cold start

        report = sync_upload(upload, ctx, dry_run=dry_run).to_dict()
    except ObjectStoreError as error:
        raise from_store_error(error) from error
    except CvcError as error:
        raise from_cvc_error(error) from error
    except InvalidInputError as error:
        raise ApiError(400, error.code, error.message, field="key") from error
    except CvcSyncError as error:
        if error.code != "NoContinuation":
            raise
        raise ApiError(
            503,
            "RunNotFinished",
            "the deadline came before the run finished; it was saved: sync a smaller file here, or upload it to "
            "the upload function's bucket",
        ) from error
    answer: dict[str, Any] = {"report": report}
    if dry_run:
        plan_key = ctx.settings.key("plans", key, f"{report['runId']}.plan.json")
        answer["plan"] = {"bucket": ctx.output_bucket, "key": plan_key}
    return Response(200, answer)


def get_run(request: Request, deps: Dependencies) -> Response:
    run_id = request.params["id"]
    if not RUN_ID.fullmatch(run_id):
        raise ApiError(400, "InvalidRunId", "must be a run id (letters, digits, - and _)", field="id")
    bucket = deps.settings.reports_bucket
    if bucket is None:
        raise _not_configured("a bucket for run reports (CVCSYNC_STATE_BUCKET or CVCSYNC_HTTP_SYNC_BUCKET)")
    store = services.object_store(deps.invocation, deps.env)
    try:
        for name in ("report.json", "run.json"):  # run.json: a checkpointed or fanned-out run, not finished yet
            raw = store.get_bytes(bucket, deps.sync_settings.key("runs", run_id, name))
            if raw is not None:
                return Response(200, {"report": orjson.loads(raw)})
    except ObjectStoreError as error:
        raise from_store_error(error) from error
    raise ApiError(404, "NoSuchRun", f"no run {run_id!r} has been reported", field="id")


# -- health and the document ------------------------------------------------------------------------------------


def _deep_checks(deps: Dependencies, bucket: str | None) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    started = time.monotonic()
    try:
        deps.call(lambda cvc: cvc.get_account_info(deadline=time.monotonic() + 5))
        checks["cvc"] = {"ok": True, "latencyMs": round((time.monotonic() - started) * 1000, 1)}
    except CvcError as error:
        checks["cvc"] = {"ok": False, "code": error.code, "cvcRequestId": error.request_id}
    except ApiError as error:
        checks["cvc"] = {"ok": False, "code": error.code}
    if bucket is not None:
        try:
            services.object_store(deps.invocation, deps.env).head(bucket, deps.sync_settings.key("state/manifest.json"))
            checks["objectStore"] = {"ok": True}
        except ObjectStoreError as error:
            checks["objectStore"] = {"ok": False, "code": error.code}
    return checks


def healthz(request: Request, deps: Dependencies) -> Response:
    deep = request.query.get("deep", "0")
    if deep not in ("0", "1", "true", "false"):
        raise ApiError(400, "InvalidRequest", "deep must be 1, 0, true or false", field="deep")
    from ..credentials import default_credentials

    try:
        default_credentials(fc_context=deps.invocation.fc_context, env=deps.env)
        credentials = True
    except CvcSyncError:
        credentials = False
    settings = deps.settings
    bucket = settings.default_bucket
    answer: dict[str, Any] = {
        "status": "ok",
        "cvc": {"credentials": credentials},
        "objectStore": {"configured": bucket is not None},
        "auth": {"hmac": bool(settings.keys), "bearer": bool(settings.tokens)},
        "circuit": {"open": deps.state.circuit.retry_after(settings.circuit_cooldown) is not None},
    }
    status = 200
    if not credentials or not settings.auth_configured:
        answer["status"], status = "unconfigured", 503
    elif deep in ("1", "true"):
        cached = deps.state.cache.get("health")
        if cached is None or time.monotonic() - cached[0] > HEALTH_CACHE_SECONDS:
            cached = (time.monotonic(), _deep_checks(deps, bucket))
            deps.state.cache["health"] = cached
        answer["checks"] = cached[1]
        if not all(check["ok"] for check in cached[1].values()):
            answer["status"], status = "failing", 503
    elif answer["circuit"]["open"]:
        answer["status"] = "degraded"
    return Response(status, answer)


def openapi(request: Request, deps: Dependencies) -> Response:
    return Response(200, openapi_document())


def _json(run: Callable[[Request, Dependencies], Response]) -> Operation:
    return Operation(run, takes_json=True)


def _plain(run: Callable[[Request, Dependencies], Response]) -> Operation:
    return Operation(run)


ROUTES: Sequence[Route] = (
    Route("/healthz", {"GET": _plain(healthz)}, public=True),
    Route("/openapi.json", {"GET": _plain(openapi)}, public=True),
    Route("/users", {"POST": _json(upsert_users)}),
    Route("/users:delete", {"POST": _json(delete_users)}),
    Route("/users/{id}", {"GET": _plain(get_user), "PUT": _json(put_user), "DELETE": _plain(delete_user)}),
    Route("/sync", {"POST": _json(sync)}),
    Route("/runs/{id}", {"GET": _plain(get_run)}),
)
