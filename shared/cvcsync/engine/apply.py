"""Apply a plan: batched CreateUser/DeleteUser calls, bounded concurrency, deadline-aware.

Deletions go first (they free licensed capacity), then creates and updates in input order. A batch that CVC
refuses as a whole for a reason that will not pass (one invalid user makes the whole CreateUser fail) is split in
halves until the culprit stands alone, so one bad record costs itself and not its 99 neighbours. A batch that
fails after the client's retries is dead-lettered record by record.

Time is one ``TimeBudget`` (the deadline less the margin the run keeps to checkpoint and commit). It is checked
before every batch and every bisection step, and handed to the client, which clips each call's timeouts to it and
never waits for a retry past it. A call cut short by the budget leaves its batch pending, like the batches not
started: the run is checkpointed and the continuation sends them. A cut call may still have taken effect (its
users are in the run's in-flight list) and is sent again, so no batch is started that the budget cannot hold,
judged by the slowest call answered so far. An open circuit stops the run the same way.

How many batches are in flight is the ``ConcurrencyController``'s limit (``engine.concurrency``): it starts at
``concurrency`` and moves with what CVC answers, up to ``max_concurrency``; the pool has a thread for each call the
limit may reach, and no batch is started while the limit is full. The run's ``ApplyResult.concurrency`` says how
the limit moved (and one INFO line, ``concurrency over the run``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import orjson

from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import cut_short
from cvcsync.budget import TimeBudget
from cvcsync.engine.circuit import CircuitBreaker, is_systemic
from cvcsync.engine.concurrency import ConcurrencyController, ConcurrencyReport
from cvcsync.engine.outcomes import Outcome
from cvcsync.engine.workspace import CREATE, DELETE, UPDATE, SyncPlan
from cvcsync.errors import CvcBusinessError, CvcError

log = logging.getLogger(__name__)

DONE, CHECKPOINTED = "done", "checkpointed"
BUDGET_SPENT, CIRCUIT_OPEN = "budget-spent", "circuit-open"  # why a checkpointed run stopped
_SUCCESS = {CREATE: Outcome.CREATED.value, UPDATE: Outcome.UPDATED.value, DELETE: Outcome.DELETED.value}

Item = tuple[int, str, str, str | None]  # seq, user_id, op, record JSON
Result = tuple[int, str, str | None]  # seq, outcome, error JSON


@dataclass(frozen=True)
class ApplySettings:
    """How to apply. ``concurrency`` calls in flight to start with, adapting up to ``max_concurrency`` (None, or
    equal: a fixed concurrency, as before the limit adapted); ``budget`` bounds every call, retry wait and
    bisection step."""

    batch_size: int = 100
    concurrency: int = 4
    max_concurrency: int | None = None
    budget: TimeBudget = field(default_factory=TimeBudget.unlimited)


@dataclass
class ApplyResult:
    status: str
    applied: int  # records CVC accepted (created, updated, deleted)
    dead_lettered: int
    pending: int  # not sent, or cut short: the continuation sends them
    stopped_by: str | None = None  # BUDGET_SPENT or CIRCUIT_OPEN when status is CHECKPOINTED
    concurrency: ConcurrencyReport | None = None  # how the limit on calls in flight moved


def _error_json(error: CvcError) -> str:
    return orjson.dumps(error.to_dict()).decode()


class Applier:
    def __init__(
        self,
        client: CvcClient,
        settings: ApplySettings,
        *,
        on_progress: Callable[[int], None] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.settings = settings
        self.budget = settings.budget
        self._on_progress = on_progress
        self._slowest = 0.0  # seconds, the longest call answered so far
        self._slowest_lock = threading.Lock()
        self.concurrency = ConcurrencyController(settings.concurrency, settings.max_concurrency or settings.concurrency)

    def _must_stop(self) -> bool:
        """No new call: the budget cannot hold one more (or is spent), or the circuit is open. What is not sent
        stays pending."""
        remaining = self.budget.remaining()
        if remaining is not None and remaining <= self._slowest:
            return True
        return self.breaker is not None and self.breaker.open

    def _answered_in(self, latency: float) -> None:
        with self._slowest_lock:
            self._slowest = max(self._slowest, latency)

    def _batches(self, plan: SyncPlan, chunk: int | None) -> Iterator[tuple[str, list[Item]]]:
        """Pending operations in batches, read page by page (a million pending creates never sit in memory)."""
        page = self.settings.batch_size * 20
        where_chunk = "AND chunk = ?" if chunk is not None else ""
        for action, ops in (("DeleteUser", "'delete'"), ("CreateUser", "'create', 'update'")):
            query = (
                f"SELECT seq, user_id, op, record FROM rows WHERE outcome IS NULL AND op IN ({ops}) {where_chunk} "  # noqa: S608 - constant op lists  # nosec B608
                "AND seq > ? ORDER BY seq LIMIT ?"
            )
            last = -1
            while True:
                args: tuple[int, ...] = ((chunk,) if chunk is not None else ()) + (last, page)
                rows = plan.db.execute(query, args).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                for start in range(0, len(rows), self.settings.batch_size):
                    yield action, rows[start : start + self.settings.batch_size]

    def _send(self, action: str, items: list[Item]) -> list[Result]:
        """Send one batch; split it on a whole-batch refusal; results for every item except those left pending
        (budget spent before or during the call, circuit open)."""
        if self._must_stop():
            return []  # left pending: the continuation (or the platform's retry) sends it
        try:
            if action == "DeleteUser":
                answer = self.client.delete_batch(
                    [uid for _, uid, _, _ in items], budget=self.budget, pacer=self.concurrency
                )
            else:
                answer = self.client.create_batch_json(
                    [record or "{}" for _, _, _, record in items], budget=self.budget, pacer=self.concurrency
                )
        except CvcError as error:
            if self.breaker is not None:
                self.breaker.record(error)
                if self.breaker.open and is_systemic(error):
                    return []  # systemic, not this batch's fault: leave it pending
            if cut_short(error, self.client.retry_policy):
                return []  # the budget ended the call, not the error: the continuation sends it
            if isinstance(error, CvcBusinessError) and len(items) > 1:
                half = len(items) // 2
                return self._send(action, items[:half]) + self._send(action, items[half:])
            detail = _error_json(error)
            return [(seq, Outcome.DEAD_LETTERED.value, detail) for seq, _, _, _ in items]
        self._answered_in(answer.latency)
        if self.breaker is not None:
            self.breaker.record(None)
        return [(seq, _SUCCESS[op], None) for seq, _, op, _ in items]

    def run(self, plan: SyncPlan, *, chunk: int | None = None) -> ApplyResult:
        applied = dead = 0
        stopped = False
        in_flight: set[Future[list[Result]]] = set()

        def collect(done: set[Future[list[Result]]]) -> None:
            nonlocal applied, dead
            for future in done:
                results = future.result()
                plan.record_outcomes(results)
                failed = sum(1 for _, outcome, _ in results if outcome == Outcome.DEAD_LETTERED.value)
                dead += failed
                applied += len(results) - failed
                if self._on_progress:
                    self._on_progress(len(results))

        limit = self.concurrency
        with ThreadPoolExecutor(max_workers=limit.maximum, thread_name_prefix="cvc-apply") as pool:
            for action, items in self._batches(plan, chunk):
                if self._must_stop():
                    stopped = True
                    break
                while len(in_flight) >= limit.limit:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                # Each task runs in a copy of this context: the invocation's request id (a context variable) is on
                # the worker's log lines too, which a bare pool thread would not carry.
                task = contextvars.copy_context()
                in_flight.add(pool.submit(task.run, self._send, action, items))
            done, _ = wait(in_flight)
            collect(done)
        pending = plan.pending_count(chunk)
        moved = self.concurrency.finish()
        if not (stopped or pending):
            return ApplyResult(DONE, applied, dead, pending, concurrency=moved)
        counts = {"applied": applied, "deadLettered": dead, "notSent": pending}
        if self.breaker is not None and self.breaker.open:
            log.warning(
                "circuit open: stopped calling CVC; the records not sent stay pending",
                extra={**counts, "cause": self.breaker.reason},  # the one CircuitOpen line is the breaker's
            )
            return ApplyResult(CHECKPOINTED, applied, dead, pending, CIRCUIT_OPEN, moved)
        log.warning("time budget spent: checkpointing; the records not sent stay pending", extra=counts)
        return ApplyResult(CHECKPOINTED, applied, dead, pending, BUDGET_SPENT, moved)
