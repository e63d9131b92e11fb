"""Apply a plan: batched CreateUser/DeleteUser calls, bounded concurrency, deadline-aware.

Deletions go first (they free licensed capacity), then creates and updates in input order. A batch that CVC
refuses as a whole for a reason that will not pass (one invalid user makes the whole CreateUser fail) is split in
halves until the culprit stands alone, so one bad record costs itself and not its 99 neighbours. A batch that
fails after the client's retries is dead-lettered record by record. When the invocation's deadline draws near,
no new batch is started: what is in flight finishes, the rest stays pending, and the run is checkpointed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import orjson

from ..cvc import CvcClient
from ..errors import CvcBusinessError, CvcError
from .circuit import AUTH_CODES, CircuitBreaker
from .outcomes import Outcome
from .plan import CREATE, DELETE, UPDATE, SyncPlan

log = logging.getLogger(__name__)

DONE, CHECKPOINTED = "done", "checkpointed"
_SUCCESS = {CREATE: Outcome.CREATED.value, UPDATE: Outcome.UPDATED.value, DELETE: Outcome.DELETED.value}

Item = tuple[int, str, str, str | None]  # seq, user_id, op, record JSON
Result = tuple[int, str, str | None]  # seq, outcome, error JSON


@dataclass(frozen=True)
class ApplySettings:
    batch_size: int = 100
    concurrency: int = 4
    deadline: float | None = None  # time.monotonic() instant the invocation ends
    margin: float = 10.0  # seconds kept free before the deadline: no new batch starts inside it


@dataclass
class ApplyResult:
    status: str
    applied: int
    dead_lettered: int
    pending: int


def _error_json(error: CvcError) -> str:
    return orjson.dumps(error.to_dict()).decode()


class Applier:
    def __init__(
        self,
        client: CvcClient,
        settings: ApplySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[int], None] | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.settings = settings
        self._clock = clock
        self._on_progress = on_progress

    def _time_is_short(self) -> bool:
        deadline = self.settings.deadline
        return deadline is not None and self._clock() >= deadline - self.settings.margin

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
        """Send one batch; split it on a whole-batch refusal; results for every item except deadline leftovers."""
        deadline = self.settings.deadline
        if self.breaker is not None and self.breaker.open:
            return []  # left pending: the platform retries once CVC is back
        try:
            if action == "DeleteUser":
                self.client.delete_batch([uid for _, uid, _, _ in items], deadline=deadline)
            else:
                self.client.create_batch_json([record or "{}" for _, _, _, record in items], deadline=deadline)
        except CvcError as error:
            if self.breaker is not None:
                self.breaker.record(error)
                if self.breaker.open and (error.retryable or error.code in AUTH_CODES):
                    return []  # systemic, not this batch's fault: leave it pending
            if error.code == "DeadlineExceeded":
                return []  # left pending: the continuation sends it
            if isinstance(error, CvcBusinessError) and len(items) > 1:
                half = len(items) // 2
                return self._send(action, items[:half]) + self._send(action, items[half:])
            detail = _error_json(error)
            return [(seq, Outcome.DEAD_LETTERED.value, detail) for seq, _, _, _ in items]
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
                dead += sum(1 for _, outcome, _ in results if outcome == Outcome.DEAD_LETTERED.value)
                applied += len(results)
                if self._on_progress:
                    self._on_progress(len(results))

        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="cvc-apply") as pool:
            for action, items in self._batches(plan, chunk):
                if self.breaker is not None and self.breaker.open:
                    stopped = True
                    break
                if self._time_is_short():
                    stopped = True
                    break
                while len(in_flight) >= self.settings.concurrency:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                in_flight.add(pool.submit(self._send, action, items))
            done, _ = wait(in_flight)
            collect(done)
        pending = plan.pending_count(chunk)
        status = CHECKPOINTED if (stopped or pending) else DONE
        if status == CHECKPOINTED:
            log.warning("deadline near: checkpointing", extra={"pending": pending, "applied": applied})
        return ApplyResult(status, applied, dead, pending)
