"""The task lease on the memory store: exclusion, release, safe takeover of an expired lease, races, pruning."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.schedule.lease import (
    KEEP,
    LOCAL_DURATION,
    SLACK,
    Lease,
    LeaseHeld,
    TaskLease,
    holding,
    lease_duration,
)
from support.schedule import Clock

BUCKET = "state"
PREFIX = "cvc-sync/leases/redrive/"


def lease(store: MemoryObjectStore, clock: Clock) -> TaskLease:
    return TaskLease(store, BUCKET, PREFIX, "redrive", now=clock)


def test_a_second_run_finds_the_lease_held_and_gets_it_after_release() -> None:
    store, clock = MemoryObjectStore(), Clock()
    first = lease(store, clock).acquire("req-a", 300)
    body = orjson.loads(store.get_bytes(BUCKET, f"{PREFIX}0000000001.json") or b"")
    assert body["holder"] == "req-a" and body["state"] == "held"
    assert body["acquiredAt"] == "2024-05-01T02:00:00.000Z" and body["expiresAt"] == "2024-05-01T02:05:00.000Z"
    with pytest.raises(LeaseHeld) as held:
        lease(store, clock).acquire("req-b", 300)
    assert held.value.lease.holder == "req-a" and held.value.code == "LeaseHeld"
    assert lease(store, clock).release(first)
    second = lease(store, clock).acquire("req-b", 300)
    assert (second.holder, second.generation) == ("req-b", 3)  # 2 is req-a's release


def test_an_expired_lease_is_taken_over_and_the_late_holder_learns_it() -> None:
    store, clock = MemoryObjectStore(), Clock()
    crashed = lease(store, clock).acquire("req-crashed", 60)
    clock.advance(seconds=61)
    taken = lease(store, clock).acquire("req-new", 60)
    assert taken.generation == crashed.generation + 1 and taken.holder == "req-new"
    assert not lease(store, clock).release(crashed)  # its release finds the next generation taken
    with pytest.raises(LeaseHeld):
        lease(store, clock).acquire("req-third", 60)


def test_racing_runs_for_an_expired_lease_exactly_one_wins() -> None:
    store, clock = MemoryObjectStore(), Clock()
    lease(store, clock).acquire("req-crashed", 1)
    clock.advance(seconds=2)
    barrier = threading.Barrier(8)
    winners: list[str] = []
    held: list[str] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            winners.append(lease(store, clock).acquire(f"req-{n}", 60).holder)
        except LeaseHeld as exc:
            held.append(exc.lease.holder)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(held) == 7
    assert set(held) <= {winners[0], "req-crashed"}


class StaleView(TaskLease):
    """A run that read the chain before anyone held the task, and writes only now."""

    def current(self) -> Lease | None:
        return None


def test_a_stale_reader_writing_into_a_pruned_gap_loses() -> None:
    store, clock = MemoryObjectStore(), Clock()
    task = lease(store, clock)
    for n in range(KEEP):
        task.release(task.acquire(f"req-{n}", 60))
    live = task.acquire("req-live", 600)
    assert store.get_bytes(BUCKET, f"{PREFIX}0000000001.json") is None  # pruned: generation 1 is free again
    with pytest.raises(LeaseHeld) as held:
        StaleView(store, BUCKET, PREFIX, "redrive", now=clock).acquire("req-stale", 60)
    assert held.value.lease.holder == "req-live" and held.value.lease.generation == live.generation
    newest = task.current()
    assert newest is not None and newest.holder == "req-live"


def test_unreadable_generation_is_treated_as_expired() -> None:
    store, clock = MemoryObjectStore(), Clock()
    store.put_bytes(BUCKET, f"{PREFIX}0000000004.json", b"not json")
    taken = lease(store, clock).acquire("req-a", 60)
    assert taken.generation == 5


def test_holding_releases_even_when_the_task_fails() -> None:
    store, clock = MemoryObjectStore(), Clock()
    with pytest.raises(RuntimeError), holding(lease(store, clock), "req-a", 60):
        raise RuntimeError("task failed")
    current = lease(store, clock).current()
    assert current is not None and current.state == "released"
    assert lease(store, clock).acquire("req-b", 60).holder == "req-b"


def test_lease_duration_outlives_the_invocation() -> None:
    assert lease_duration(120.0) == 120.0 + SLACK
    assert lease_duration(None) == LOCAL_DURATION + SLACK
    assert lease_duration(-3.0) == SLACK
    assert timedelta(seconds=SLACK) >= timedelta(seconds=30)  # covers clock skew between invocations
