"""One run of a task at a time: a lease in the object store, taken with create-only writes alone.

A lease is a chain of generations, ``<output prefix>leases/<task>/<generation, 10 digits>.json``, each written
create-only (``put_bytes(if_absent=True)``) and never changed. The newest generation says who holds the task:

* ``{"state": "held", "holder", "acquiredAt", "expiresAt"}``: held until ``expiresAt``;
* ``{"state": "released", ...}``: free.

To acquire, read the newest generation N; if it is held and not expired, the task is busy (``LeaseHeld``);
otherwise write N+1 create-only. Of any number of runs racing for N+1 exactly one write succeeds, so an expired
lease is taken over safely without a delete: the object store's create-only write is the compare-and-swap. The
"delete the expired object and create it again" pattern is not safe on S3 or OSS (no conditional delete): two runs
that both saw it expired could each delete the other's fresh lease and both go on.

After winning N+1 the run lists again: a generation above N+1 means it wrote into a gap left by pruning and lost
(possible only for a run that read the chain long ago). Release writes N+2 as ``released``; if that generation
is taken, the lease had expired and another run took over, which is logged. Old generations are pruned.

A lease expires when the holder can no longer be running: its invocation's deadline plus ``SLACK`` seconds (FC
and Lambda stop an invocation at its timeout), so a takeover never overlaps a live run, and a crashed run blocks
the task only until then. Wall clocks of different invocations are compared; ``SLACK`` covers their skew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cvcsync.adapters.objects import ObjectStore
from cvcsync.errors import CvcSyncError

log = logging.getLogger(__name__)

SLACK = 60.0  # seconds after the holder's deadline before its lease may be taken over
LOCAL_DURATION = 900.0  # a run without a deadline (local, CLI) holds for this long
KEEP = 5  # generations kept for people reading who ran when
_DIGITS = 10
HELD, RELEASED = "held", "released"


class LeaseHeld(CvcSyncError):
    """Another run holds the task's lease: this run does nothing (not a failure)."""

    code = "LeaseHeld"

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"task {lease.task} is held by {lease.holder} until {lease.expires_at}")
        self.lease = lease


@dataclass(frozen=True)
class Lease:
    task: str
    generation: int
    holder: str
    acquired_at: str
    expires_at: str
    state: str = HELD

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "generation": self.generation,
            "state": self.state,
            "holder": self.holder,
            "acquiredAt": self.acquired_at,
            "expiresAt": self.expires_at,
        }

    def active(self, now: datetime) -> bool:
        return self.state == HELD and _parse(self.expires_at) > now


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)  # unreadable: treat as long expired
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TaskLease:
    """The lease of one task under ``prefix`` (``<output prefix>leases/<task>/``)."""

    def __init__(
        self, store: ObjectStore, bucket: str, prefix: str, task: str, *, now: Callable[[], datetime] = _now
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.task = task
        self._now = now

    def _key(self, generation: int) -> str:
        return f"{self.prefix}{generation:0{_DIGITS}d}.json"

    def _generations(self) -> list[int]:
        found = []
        for key in self.store.list_keys(self.bucket, self.prefix):
            name = key[len(self.prefix) :].removesuffix(".json")
            if name.isdigit() and len(name) == _DIGITS:
                found.append(int(name))
        return sorted(found)

    def _read(self, generation: int) -> Lease | None:
        raw = self.store.get_bytes(self.bucket, self._key(generation))
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return Lease(
                self.task,
                generation,
                str(data["holder"]),
                str(data["acquiredAt"]),
                str(data["expiresAt"]),
                str(data.get("state", HELD)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("unreadable lease generation: treated as expired", extra={"task": self.task, "gen": generation})
            return Lease(self.task, generation, "unknown", "", "", HELD)

    def current(self) -> Lease | None:
        """The newest generation (held, released or expired), or None when the task never ran."""
        generations = self._generations()
        return self._read(generations[-1]) if generations else None

    def _write(self, lease: Lease) -> bool:
        body = orjson.dumps(lease.to_dict())
        return self.store.put_bytes(
            self.bucket, self._key(lease.generation), body, content_type="application/json", if_absent=True
        )

    def acquire(self, holder: str, duration: float) -> Lease:
        """Take the lease for ``duration`` seconds or raise ``LeaseHeld`` with the holder's lease."""
        for _ in range(3):
            newest = self.current()
            now = self._now()
            if newest is not None and newest.active(now):
                raise LeaseHeld(newest)
            if newest is not None and newest.state == HELD:
                log.warning(
                    "taking over an expired lease",
                    extra={"task": self.task, "expiredHolder": newest.holder, "expiredAt": newest.expires_at},
                )
            lease = Lease(
                self.task,
                (newest.generation if newest else 0) + 1,
                holder,
                _iso(now),
                _iso(now + timedelta(seconds=duration)),
            )
            if self._write(lease):
                later = [g for g in self._generations() if g > lease.generation]
                if later:
                    winner = self._read(later[-1])
                    raise LeaseHeld(winner or lease)
                self._prune(lease.generation)
                return lease
            # Another run wrote that generation first: look again (it may be a release we can follow).
        newest = self.current()
        raise LeaseHeld(newest or Lease(self.task, 0, "unknown", "", ""))

    def release(self, lease: Lease) -> bool:
        """Free the task; ``False`` when the lease had expired and another run took over meanwhile."""
        released = Lease(self.task, lease.generation + 1, lease.holder, lease.acquired_at, _iso(self._now()), RELEASED)
        if self._write(released):
            return True
        log.warning(
            "the lease expired during the run and was taken over: runs may have overlapped",
            extra={"task": self.task, "holder": lease.holder, "expiresAt": lease.expires_at},
        )
        return False

    def _prune(self, newest: int) -> None:
        for generation in self._generations():
            if generation <= newest - KEEP:
                self.store.delete(self.bucket, self._key(generation))


def lease_duration(remaining: float | None) -> float:
    """How long a run holds its lease: its remaining time plus ``SLACK``; ``LOCAL_DURATION`` without a deadline."""
    return (max(remaining, 0.0) if remaining is not None else LOCAL_DURATION) + SLACK


@contextmanager
def holding(lease: TaskLease, holder: str, duration: float) -> Iterator[Lease]:
    """Hold the task's lease for the block (``LeaseHeld`` if another run has it); always released after."""
    taken = lease.acquire(holder, duration)
    try:
        yield taken
    finally:
        lease.release(taken)
