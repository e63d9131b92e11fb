"""The operations behind the routes: validate, call CVC or the sync engine, shape the answer.

The user routes are in ``users.py`` (every write a user change through the one run lifecycle); here are the
sync, the run reports, health and the document. Calls to CVC go through ``Dependencies.call``, which answers 429
while the container's circuit is open and feeds every outcome to it.

``POST /sync`` runs as the upload function's runs do, continuation included: a run that reaches its deadline is
checkpointed and continued by a new invocation of this function (FC or Lambda asynchronous invocation, which
``triggers.http`` accepts; ``cvcsync serve``: inline), and one large enough fans out into chunks. The request is
then answered 202 with the run id to poll at ``GET /runs/{id}``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import orjson

from cvcsync import clock
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.objects import ObjectStoreError
from cvcsync.config import SyncSettings
from cvcsync.engine.outcomes import RunStatus
from cvcsync.errors import CvcError, CvcSyncError
from cvcsync.http_api.app import Operation, Request, Response, Route, State, openapi_document
from cvcsync.http_api.errors import ApiError, from_store_error, run_errors
from cvcsync.http_api.settings import HttpSettings
from cvcsync.http_api.users import delete_user, delete_users, get_user, put_user, upsert_users
from cvcsync.inputs.events.types import ObjectUploaded
from cvcsync.platform import services
from cvcsync.platform.runtime import RUN_ID, Invocation

log = logging.getLogger(__name__)

T = TypeVar("T")
HEALTH_CACHE_SECONDS = 30.0
MAX_KEY_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNFINISHED = (RunStatus.CHECKPOINTED.value, RunStatus.FANNED_OUT.value)


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


def _continue_here(env: Mapping[str, str]) -> Callable[[dict[str, Any]], Any]:
    """Where a continuation goes when fan-out is ``inline`` (``cvcsync serve``, tests): this process runs it, as
    the function's own invocation would (``triggers.http`` hands it to the upload function's continuation)."""

    def run(event: dict[str, Any]) -> Any:
        from cvcsync.platform.triggers.upload import (
            handle,  # the one continuation entry for every function: kept off the cold start
        )

        return handle(event, None, env=env)

    return run


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
    with run_errors(input_field="key"):
        ctx = services.build_context(deps.invocation, bucket, inline=_continue_here(deps.env), env=deps.env)
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
            event_time=clock.stamp(clock.now()),
            region=None,
        )
        from cvcsync.runs.export import sync_upload  # only this route plans and applies a file: kept off the cold start

        report = sync_upload(upload, ctx, dry_run=dry_run).to_dict()
    answer: dict[str, Any] = {"report": report}
    if report["status"] in _UNFINISHED:
        # Saved and handed to new invocations (``triggers.http`` accepts them): the run finishes there.
        answer.update(runId=report["runId"], poll=f"/runs/{report['runId']}")
        return Response(202, answer)
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
    from cvcsync.adapters.credentials import default_credentials

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
        "circuit": {"open": not deps.state.circuit.closed},  # a look, not an admission: health admits no probe
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
