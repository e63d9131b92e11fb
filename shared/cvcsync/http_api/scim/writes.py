"""SCIM writes (POST, PUT, PATCH, DELETE of a User): the user's lock, the CVC change through the one run lifecycle,
then the stored document.

Every change to CVC is a ``ChangeBatch`` through ``runs.changes.run_changes``, as the HTTP API's and the queue's
writes are: the shadow state is checked out and committed, the change is ordered by the one rule (it happened when
its request arrived), CVC's refusal is a dead letter, and the run leaves a report (``<output prefix>runs/<id>/``).
What CVC should hold follows from the resource: an active user is upserted (a new ``userId``, when the attribute
it comes from was renamed, deletes the old one in the same run); a user made inactive, or deleted while active, is
deleted from CVC, after taking a slot of the deletion limit (``deletions.py``). An inactive user's changes touch
only the stored document: CVC holds nothing of it, so no run.

The document is written after CVC took the change: what the IdP reads back is what CVC holds (or, for attributes
CVC has no field for, what cvc-sync keeps for it). A failure leaves the document as it was and tells the IdP
whether to retry (503) or that CVC refused (502, a dead letter the scheduled redrive applies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cvcsync import clock
from cvcsync.engine.outcomes import GuardResult, Outcome, Problem
from cvcsync.http_api.errors import ApiError, run_errors
from cvcsync.http_api.handlers import Dependencies
from cvcsync.http_api.scim.deletions import DeletionLimit
from cvcsync.http_api.scim.errors import ScimError, from_api_error, unavailable
from cvcsync.http_api.scim.mapping import index_key, is_active, normalise, to_cvc
from cvcsync.http_api.scim.patch import apply_patch, operations_of
from cvcsync.http_api.scim.settings import EXTERNAL_ID, USER_NAME, ScimSettings
from cvcsync.http_api.scim.store import LOCK_MARGIN, Document, Lock, ResourceStore, new_id
from cvcsync.http_api.users import RequestBreaker
from cvcsync.inputs.changes import DELETE, UPSERT, UserChange
from cvcsync.inputs.records import User
from cvcsync.platform import services
from cvcsync.runs.changes import ChangeBatch, ChangeEntry, ChangeRun, run_changes

log = logging.getLogger(__name__)

LOCK_WAIT = 10.0  # seconds a request waits for another request's lock on the same user
UNIQUE = (USER_NAME, EXTERNAL_ID)
_DONE = (Outcome.CREATED.value, Outcome.UPDATED.value, Outcome.UNCHANGED.value, Outcome.DELETED.value)
_NOT_NEEDED = (Outcome.SUPERSEDED.value, Outcome.STALE.value, Outcome.DUPLICATE.value)
DELETION_GUARD = "scimDeletionLimit"


@dataclass
class WriteContext:
    """What a write talks to, built per request by ``handlers``."""

    deps: Dependencies
    settings: ScimSettings
    store: ResourceStore
    deletions: DeletionLimit
    route: str
    caller: str
    deadline: float  # monotonic: the request's own deadline

    def lock(self, user: str, *, fresh: bool = False) -> Lock:
        """``user``'s write lock for the rest of the request (``fresh``: an id ``new_id`` just made up)."""
        remaining = max(0.0, self.deadline - time.monotonic())
        now = time.time()
        return self.store.lock(
            user,
            expires_at=now + remaining + LOCK_MARGIN,
            wait_until=now + min(LOCK_WAIT, remaining),
            fresh=fresh,
        )

    def wait_until(self) -> float:
        return time.time() + min(LOCK_WAIT, max(0.0, self.deadline - time.monotonic()))


def _source(ctx: WriteContext, scim_id: str) -> dict[str, Any]:
    return {
        "kind": "scim",
        "route": ctx.route,
        "requestId": ctx.deps.invocation.request_id,
        "caller": ctx.caller,
        "scimId": scim_id,
    }


def _run(
    ctx: WriteContext,
    scim_id: str,
    changes: list[UserChange],
    rejected: list[Problem],
    *,
    refused: GuardResult | None = None,
) -> ChangeRun:
    """``changes`` through the lifecycle as one run of the ``scim`` writer; its report is stored. ``refused``: the
    safety gate that refused the request's change (one record, ``skippedByGuard``; the run is ``refused``)."""
    deps = ctx.deps
    bucket = ctx.settings.bucket
    assert bucket is not None  # handlers refuse SCIM without one
    if changes:
        with _api_errors():
            deps.check_circuit()
    arrival = clock.now()  # a SCIM change has no time of its own: it happened when its request arrived
    source = _source(ctx, scim_id)
    entries = [ChangeEntry(change, arrival, {**source, "index": i}) for i, change in enumerate(changes)]
    batch = ChangeBatch(
        writer="scim",
        source=source,
        entries=entries,
        rejected=rejected,
        guards=[refused] if refused is not None else [],
        skipped=int(refused is not None),
    )
    breaker = RequestBreaker(deps.state.circuit)
    with _api_errors(), run_errors():
        run_ctx = services.build_context(deps.invocation, bucket, inline=None, env=deps.env, reads_files=False)
        run = run_changes(batch, run_ctx, breaker=breaker)
    for result in run.results:
        if result.outcome in _DONE:
            continue
        run_id = run.report.run_id
        if result.outcome in _NOT_NEEDED:
            raise ScimError(
                409,
                "a newer change to this user (an export, the queue) was applied already; nothing was sent "
                f"(run {run_id})",
                code="StaleChange",
            )
        error = result.error or {}
        if result.outcome == Outcome.DEAD_LETTERED.value:
            raise ScimError(
                502,
                f"CVC refused the change: {error.get('code')}: {error.get('message')}; it is kept as a dead letter "
                f"that the scheduled redrive applies (run {run_id})",
                code="CvcRefused",
                extra={"runId": run_id, "cvc": error, "deadLettered": True},
            )
        cause = breaker.cause
        raise unavailable(
            f"CVC could not take the change now ({error.get('code')}); nothing is lost: retry (run {run_id})",
            retry_after=cause.retry_after if cause is not None else None,
            extra={"runId": run_id, "cvc": error},
        )
    return run


@contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except ApiError as error:
        raise from_api_error(error.status, error.code, error.message, error.headers) from error


def _now() -> str:
    moment = clock.now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _check_version(found: Document, if_match: str | None) -> None:
    """``If-Match``: the version the client read must still be the current one (412 otherwise)."""
    if if_match is None:
        return
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",")}
    if "*" not in tags and str(found.version) not in tags:
        raise ScimError(412, f'the resource changed: its version is now W/"{found.version}"; read it again')


def _refuse_deletion(ctx: WriteContext, doc: Document) -> ScimError:
    limit = ctx.settings.max_deletes_per_hour
    detail = (
        f"refused: more than {limit} users were removed from CVC over SCIM within the last hour "
        "(CVCSYNC_SCIM_MAX_DELETES_PER_HOUR). If the IdP's scope changed on purpose, raise the limit or wait; "
        "nothing was sent to CVC"
    )
    # The alert a refused upload raises: the same ERROR line, which log-based alarms match on.
    log.error("sync refused by a safety gate", extra={"guard": DELETION_GUARD, "detail": detail, "scimId": doc.id})
    refused = GuardResult(DELETION_GUARD, passed=False, detail=detail)
    report = _run(ctx, doc.id, [], [], refused=refused).report
    return ScimError(403, detail, code="DeletionLimit", extra={"runId": report.run_id, "guard": DELETION_GUARD})


def _same(attribute: str, value: str, other: Any) -> bool:
    """Whether two values of a unique attribute are one index entry (``userName`` ignores case)."""
    return isinstance(other, str) and index_key(attribute, value) == index_key(attribute, other)


def _commit(ctx: WriteContext, lock: Lock, old: Document | None, new: dict[str, Any] | None) -> Document | None:
    """Bring CVC and the store from ``old`` to ``new`` (None: delete) under ``lock``; the new document."""
    user: User | None = None
    if new is not None:
        user = to_cvc(new, ctx.settings, ctx.deps.sync_settings.defaults)  # validated even while inactive
    wanted = user if new is not None and is_active(new) else None
    held = old.cvc_user_id if old is not None and old.in_cvc else None
    changes: list[UserChange] = []
    if held is not None and (wanted is None or wanted.user_id != held):
        changes.append(UserChange(DELETE, held, None, None, None, "scim", ctx.route))
    if wanted is not None:
        changes.append(UserChange(UPSERT, wanted.user_id, wanted, None, None, "scim", ctx.route))
    doc_id = lock.id
    if held is not None and wanted is None:  # a removal from CVC (not a rename): the deletion limit
        assert old is not None
        if not ctx.deletions.take({"scimId": doc_id, "userId": held, "route": ctx.route}):
            raise _refuse_deletion(ctx, old)
    claimed: list[tuple[str, str]] = []
    before = old.resource if old is not None else {}
    try:
        for attribute in UNIQUE:
            value = (new or {}).get(attribute)
            if isinstance(value, str) and not _same(attribute, value, before.get(attribute)):
                ctx.store.claim(lock, attribute, value, wait_until=ctx.wait_until())
                claimed.append((attribute, value))
        if changes:
            _run(ctx, doc_id, changes, [])
    except BaseException:
        for attribute, value in claimed:
            ctx.store.unclaim(lock, attribute, value)
        raise
    result: Document | None = None
    if new is None:
        ctx.store.remove(lock)
    else:
        now = _now()
        result = Document(
            id=doc_id,
            version=lock.version,
            created=old.created if old is not None else now,
            last_modified=now,
            resource=new,
            cvc_user_id=user.user_id if user is not None else None,
            in_cvc=wanted is not None,
        )
        ctx.store.write(lock, result)
    for attribute in UNIQUE:
        value = before.get(attribute)
        if isinstance(value, str) and (new is None or not _same(attribute, value, new.get(attribute))):
            ctx.store.unclaim(lock, attribute, value)
    return result


def create(ctx: WriteContext, body: Any) -> Document:
    resource = normalise(body)
    lock = ctx.lock(new_id(), fresh=True)  # nobody can name the id yet: no document to read (``ResourceStore.lock``)
    try:
        doc = _commit(ctx, lock, None, resource)
    finally:
        ctx.store.release(lock)
    assert doc is not None
    return doc


def _existing(ctx: WriteContext, scim_id: str, if_match: str | None) -> tuple[Lock, Document]:
    lock = ctx.lock(scim_id)
    found = lock.found
    if found is None:
        ctx.store.release(lock)
        raise ScimError(404, f"no User {scim_id!r}", code="NotFound")
    try:
        _check_version(found, if_match)
    except ScimError:
        ctx.store.release(lock)
        raise
    return lock, found


def replace_user(ctx: WriteContext, scim_id: str, body: Any, if_match: str | None) -> Document:
    if isinstance(body, dict) and body.get("id") not in (None, scim_id):
        raise ScimError(400, "id cannot be changed: leave it out or send this resource's id", scim_type="mutability")
    resource = normalise(body)
    lock, found = _existing(ctx, scim_id, if_match)
    try:
        doc = _commit(ctx, lock, found, resource)
    finally:
        ctx.store.release(lock)
    assert doc is not None
    return doc


def patch_user(ctx: WriteContext, scim_id: str, body: Any, if_match: str | None) -> Document:
    operations = operations_of(body)
    lock, found = _existing(ctx, scim_id, if_match)
    try:
        resource = normalise(apply_patch(found.resource, operations))
        doc = _commit(ctx, lock, found, resource)
    finally:
        ctx.store.release(lock)
    assert doc is not None
    return doc


def delete_user(ctx: WriteContext, scim_id: str, if_match: str | None) -> None:
    lock, found = _existing(ctx, scim_id, if_match)
    try:
        _commit(ctx, lock, found, None)
    finally:
        ctx.store.release(lock)
