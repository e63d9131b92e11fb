"""The user routes. Reads go to CVC (GetUser); every write is a user change through the one run lifecycle
(``runs.changes.run_changes``), like a queue message's: the shadow state is checked out and committed, changes
are ordered by the one rule (``clock``: an HTTP change happened when the request arrived), CVC's refusals are
dead letters, and the run leaves a report (``GET /runs/{id}``). A write that bypassed the state would leave it
believing in users CVC no longer holds, and the next upload would call them ``unchanged`` for ever.

Batch answers (``POST /users``, ``POST /users:delete``) carry one result per input entry, in input order: 200 when
every entry succeeded, 207 when some were rejected or failed (the body says which, and why).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cvcsync import clock
from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.outcomes import Outcome, Problem
from cvcsync.errors import CvcBusinessError, CvcError
from cvcsync.http_api.app import Request, Response
from cvcsync.http_api.circuit import ContainerCircuit
from cvcsync.http_api.errors import ApiError, cvc_summary, from_cvc_error, from_cvc_summary, run_errors
from cvcsync.inputs.changes import DELETE, UPSERT, UserChange
from cvcsync.inputs.records import MAX_LENGTH, RecordError, User, normalise_keys, parse_user, user_from_cvc
from cvcsync.platform import services
from cvcsync.platform.context import SyncContext
from cvcsync.runs.changes import ChangeBatch, ChangeEntry, ChangeRun, EntryResult, run_changes

if TYPE_CHECKING:
    from cvcsync.http_api.handlers import Dependencies

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UPSERTED, DELETED, REJECTED, SUPERSEDED, FAILED = "upserted", "deleted", "rejected", "superseded", "failed"
_UPSERT_OUTCOMES = (Outcome.CREATED.value, Outcome.UPDATED.value, Outcome.UNCHANGED.value)
_NOT_NEEDED = (Outcome.SUPERSEDED.value, Outcome.STALE.value, Outcome.DUPLICATE.value)


# -- validation -------------------------------------------------------------------------------------------------


def user_id_of(value: Any, field: str) -> str:
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


def _path_user(body: dict[str, Any], user_id: str, defaults: dict[str, str]) -> User:
    """The user a ``PUT /users/{id}`` writes: always the path's. Every key the record parser reads as the user id
    (after its key normalisation: ``" UserId"`` is ``userId``) must be absent, null or that id; otherwise a body
    could name another user than the path, which the caller's authorisation may be scoped to."""
    record: dict[str, Any] = {}
    for key, value in body.items():
        if "userId" not in normalise_keys({key: None}):
            record[key] = value
        elif value is not None and not (isinstance(value, str) and value.strip() == user_id):
            raise ApiError(400, "InvalidUser", "must be left out or equal the id in the path", field="userId")
    try:
        user = parse_user({**record, "userId": user_id}, defaults=defaults)
    except RecordError as error:
        raise _record_error(error) from None
    if user.user_id != user_id:  # by construction; kept as the guard it is
        raise ApiError(400, "InvalidUser", "must be left out or equal the id in the path", field="userId")
    return user


# -- one write run ----------------------------------------------------------------------------------------------


class RequestBreaker(CircuitBreaker):
    """A request's run, breaking on the container's circuit: each call's outcome feeds the circuit that outlives
    the request, and once that circuit is no longer closed the run stops sending. ``cause``: the error that
    opened it in this run, which is the answer a single write gets."""

    def __init__(self, circuit: ContainerCircuit) -> None:
        super().__init__(circuit.threshold)
        self._circuit = circuit
        self.cause: CvcError | None = None

    def record(self, error: CvcError | None) -> None:
        self._circuit.record(error)
        with self._lock:
            if self.reason is None and not self._circuit.closed:
                self.reason = self._circuit.reason or "CVC is failing"
                self.cause = error


def _context(deps: Dependencies) -> tuple[SyncContext, bool]:
    """The run's context, and whether its store keeps what the run writes (state, report)."""
    bucket = deps.settings.reports_bucket
    if bucket is not None:  # the state POST /sync and the upload function plan against
        return services.build_context(deps.invocation, bucket, inline=None, env=deps.env, reads_files=False), True
    # No bucket, so no shadow state to keep in step: each request plans against an empty one in memory and every
    # write is sent as asked; dead letters go to the log.
    ctx = services.stateless_context(deps.invocation, deps.env)
    return replace(ctx, store=MemoryObjectStore(), state_store=None), False


def _run(
    request: Request, deps: Dependencies, route: str, changes: dict[int, UserChange], rejected: list[Problem]
) -> tuple[ChangeRun, RequestBreaker]:
    """``changes`` (by entry index) through the lifecycle, as one run."""
    if changes:
        deps.check_circuit()  # an open circuit: 429 before anything is read or sent
    arrival = clock.now()  # an HTTP change has no time of its own: it happened when it arrived
    origin = {"kind": "http", "route": route, "requestId": deps.invocation.request_id}  # a dead letter's source
    source = {**origin, "caller": request.caller.id} if request.caller is not None else dict(origin)
    entries = [ChangeEntry(change, arrival, {**origin, "index": i}) for i, change in changes.items()]
    batch = ChangeBatch(writer="http", source=source, entries=entries, rejected=rejected)
    breaker = RequestBreaker(deps.state.circuit)
    with run_errors():
        ctx, durable = _context(deps)
        return run_changes(batch, ctx, breaker=breaker, store_report=durable), breaker


def _upsert(user: User, position: str) -> UserChange:
    return UserChange(UPSERT, user.user_id, user, None, None, "http", position)


def _delete(user_id: str, position: str) -> UserChange:
    return UserChange(DELETE, user_id, None, None, None, "http", position)


def _failure(result: EntryResult, breaker: RequestBreaker, deps: Dependencies, run_id: str) -> ApiError:
    """A single write that did not go through, as an error answer."""
    details: dict[str, Any] = {"runId": run_id}
    if result.outcome in _NOT_NEEDED:
        stale = "a newer change to this user was applied already; nothing was sent"
        return ApiError(409, "StaleChange", stale, field="id", details=details)
    error = result.error or {}
    if error.get("code") == "CircuitOpen":
        if breaker.cause is not None:
            cause = breaker.cause
            return from_cvc_summary(cvc_summary(cause), retry_after=cause.retry_after, details=details)
        deps.check_circuit()  # opened by another request meanwhile: its 429
    if result.outcome == Outcome.DEAD_LETTERED.value:
        details["deadLettered"] = True  # kept for the scheduled redrive, as every refused change is
    return from_cvc_summary(error, details=details)


def _result(index: int, user_id: str, result: EntryResult, latest: dict[str, int]) -> dict[str, Any]:
    """One entry of a batch answer from how its change ended."""
    entry: dict[str, Any] = {"index": index, "userId": user_id, "outcome": result.outcome}
    if result.outcome in _UPSERT_OUTCOMES:
        entry["status"] = UPSERTED
    elif result.outcome == Outcome.DELETED.value:
        entry["status"] = DELETED
    elif result.outcome in _NOT_NEEDED:
        entry["status"] = SUPERSEDED
        if latest.get(user_id, index) != index:
            entry["supersededBy"] = latest[user_id]
    else:  # dead-lettered (CVC refused it) or retried (it may pass later: retry it)
        entry.update(status=FAILED, error=result.error or {})
    return entry


def _batch_answer(results: list[dict[str, Any]], run: ChangeRun) -> Response:
    counts = {status: 0 for status in (UPSERTED, DELETED, REJECTED, SUPERSEDED, FAILED)}
    for result in results:
        counts[result["status"]] += 1
    summary = {"received": len(results), **{k: v for k, v in counts.items() if v or k in (REJECTED, FAILED)}}
    status = 207 if counts[REJECTED] or counts[FAILED] else 200
    return Response(status, {"summary": summary, "results": results, "runId": run.report.run_id})


def _rejection(index: int, user_id: str | None, problems: list[dict[str, str]]) -> tuple[dict[str, Any], Problem]:
    first = problems[0]
    problem = Problem("InvalidUser", f"{first['field']} {first['reason']}", index, user_id)
    return {"index": index, "userId": user_id, "status": REJECTED, "errors": problems}, problem


# -- routes -----------------------------------------------------------------------------------------------------


def get_user(request: Request, deps: Dependencies) -> Response:
    user_id = user_id_of(request.params["id"], "id")
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
    user_id = user_id_of(request.params["id"], "id")
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidUser", "the body must be a JSON object of the user's fields", field="(body)")
    user = _path_user(body, user_id, deps.sync_settings.defaults)
    run, breaker = _run(request, deps, "PUT /users/{id}", {0: _upsert(user, "PUT /users/{id}")}, [])
    result = run.results[0]
    if result.outcome not in _UPSERT_OUTCOMES:
        raise _failure(result, breaker, deps, run.report.run_id)
    answer: dict[str, Any] = {
        "user": user.to_cvc(),
        "status": UPSERTED,
        "outcome": result.outcome,
        "runId": run.report.run_id,
    }
    if user.notices:
        answer["notices"] = list(user.notices)
    return Response(200, answer)


def upsert_users(request: Request, deps: Dependencies) -> Response:
    items = _batch_of(request.json(), "users", deps.settings.max_batch)
    defaults = deps.sync_settings.defaults
    answers: dict[int, dict[str, Any]] = {}
    users: dict[int, User] = {}
    rejected: list[Problem] = []
    for index, raw in enumerate(items):
        try:
            users[index] = parse_user(raw, defaults=defaults)
        except RecordError as error:
            problems = [{"field": p.field, "reason": p.reason} for p in error.problems]
            answers[index], problem = _rejection(index, error.user_id, problems)
            rejected.append(problem)
    changes = {i: _upsert(user, f"POST /users [{i}]") for i, user in users.items()}
    run, _ = _run(request, deps, "POST /users", changes, rejected)
    latest = {user.user_id: i for i, user in users.items()}
    for (index, user), result in zip(users.items(), run.results, strict=True):
        answers[index] = _result(index, user.user_id, result, latest)
        if user.notices:
            answers[index]["notices"] = list(user.notices)
    return _batch_answer([answers[i] for i in range(len(items))], run)


def delete_user(request: Request, deps: Dependencies) -> Response:
    user_id = user_id_of(request.params["id"], "id")
    run, breaker = _run(request, deps, "DELETE /users/{id}", {0: _delete(user_id, "DELETE /users/{id}")}, [])
    result = run.results[0]
    if result.outcome != Outcome.DELETED.value:
        raise _failure(result, breaker, deps, run.report.run_id)
    return Response(200, {"userId": user_id, "status": DELETED, "outcome": result.outcome, "runId": run.report.run_id})


def delete_users(request: Request, deps: Dependencies) -> Response:
    items = _batch_of(request.json(), "userIds", deps.settings.max_batch)
    answers: dict[int, dict[str, Any]] = {}
    ids: dict[int, str] = {}
    rejected: list[Problem] = []
    for index, raw in enumerate(items):
        try:
            ids[index] = user_id_of(raw, f"userIds[{index}]")
        except ApiError as error:
            answers[index], problem = _rejection(index, None, [{"field": str(error.field), "reason": error.message}])
            rejected.append(problem)
    changes = {i: _delete(user_id, f"POST /users:delete [{i}]") for i, user_id in ids.items()}
    run, _ = _run(request, deps, "POST /users:delete", changes, rejected)
    latest = {user_id: i for i, user_id in ids.items()}
    for (index, user_id), result in zip(ids.items(), run.results, strict=True):
        answers[index] = _result(index, user_id, result, latest)
    return _batch_answer([answers[i] for i in range(len(items))], run)
