"""The SCIM resource store's per-user lock and unique indexes, and the deletion limit, on the memory store (the
same create-only contract S3, OSS and the local store keep): threads race, a clock is moved by hand."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.http_api.scim.deletions import DeletionLimit
from cvcsync.http_api.scim.errors import ScimError
from cvcsync.http_api.scim.store import Document, ResourceStore

BUCKET = "state"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def doc(user: str, user_name: str, counter: int = 0) -> Document:
    return Document(user, 0, "t0", "t0", {"userName": user_name, "counter": counter})


# -- the lock -------------------------------------------------------------------------------------------------------


def test_threads_writing_one_user_lose_no_update() -> None:
    store = ResourceStore(MemoryObjectStore(), BUCKET, "cvc-sync/", sleep=lambda s: threading.Event().wait(s / 10))
    lock = store.lock("u1", expires_at=4e9, wait_until=4e9)
    store.write(lock, doc("u1", "a"))
    store.release(lock)

    def bump() -> None:
        for _ in range(5):
            held = store.lock("u1", expires_at=4e9, wait_until=4e9)
            assert held.found is not None
            current = held.found.resource["counter"]
            store.write(held, doc("u1", "a", current + 1))  # read, modify, write: safe only under the lock
            store.release(held)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get("u1")
    assert final is not None and final.resource["counter"] == 30 and final.version == 31
    assert list(store.store.list_keys(BUCKET, "cvc-sync/scim/locks/")) == []


def test_a_lock_left_by_a_killed_request_is_skipped_once_it_expires() -> None:
    clock = Clock(1000.0)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    store = ResourceStore(MemoryObjectStore(), BUCKET, "cvc-sync/", clock=clock, sleep=sleep)
    dead = store.lock("u1", expires_at=1060.0, wait_until=1000.0)  # never released: its holder was killed
    with pytest.raises(ScimError) as caught:
        store.lock("u1", expires_at=1100.0, wait_until=1010.0)  # waits 10 s for it, then tells the IdP to retry
    assert caught.value.status == 503 and caught.value.headers == [("Retry-After", "1")]
    assert 1009.0 < clock.now <= 1010.0
    clock.now = 1061.0
    taken = store.lock("u1", expires_at=1200.0, wait_until=1061.0)
    assert taken.version == dead.version + 1
    store.write(taken, doc("u1", "a"))
    clock.now = 1196.0  # the holder itself must not write once its lock may have expired
    with pytest.raises(ScimError):
        store.write(taken, doc("u1", "b"))
    store.release(taken)
    assert list(store.store.list_keys(BUCKET, "cvc-sync/scim/locks/")) == []


# -- unique attributes ----------------------------------------------------------------------------------------------


def test_a_value_is_claimed_once_and_a_left_over_claim_is_taken_back() -> None:
    store = ResourceStore(MemoryObjectStore(), BUCKET, "cvc-sync/", sleep=lambda s: None)
    first = store.lock("u1", expires_at=4e9, wait_until=4e9)
    store.claim(first, "userName", "Alice", wait_until=4e9)
    store.write(first, doc("u1", "Alice"))
    store.release(first)
    second = store.lock("u2", expires_at=4e9, wait_until=4e9)
    with pytest.raises(ScimError) as caught:
        store.claim(second, "userName", "alice", wait_until=4e9)  # userName ignores case
    assert caught.value.status == 409 and caught.value.scim_type == "uniqueness"
    # A request that claimed "bob" for u3 and died before writing u3: the claim is not confirmed, so it goes.
    dead = store.lock("u3", expires_at=0.0, wait_until=4e9)
    store.claim(dead, "userName", "bob", wait_until=4e9)
    assert store.find("userName", "bob") is None
    store.claim(second, "userName", "bob", wait_until=4e9)
    store.write(second, doc("u2", "bob"))
    found = store.find("userName", "BOB")
    assert found is not None and found.id == "u2"


# -- the deletion limit ---------------------------------------------------------------------------------------------


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_racing_threads_never_take_more_slots_than_the_limit() -> None:
    limit = DeletionLimit(MemoryObjectStore(), BUCKET, "cvc-sync/", 7, clock=Clock(at("2026-03-01T10:02:00")))
    taken: list[bool] = []
    start = threading.Barrier(20)

    def remove(n: int) -> None:
        start.wait()
        taken.append(limit.take({"userId": f"u{n}"}))

    threads = [threading.Thread(target=remove, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 7 and taken.count(False) == 13


def test_the_window_is_the_last_hour_in_five_minute_steps() -> None:
    clock = Clock(at("2026-03-01T10:58:00"))
    limit = DeletionLimit(MemoryObjectStore(), BUCKET, "cvc-sync/", 3, clock=clock)
    assert [limit.take({}) for _ in range(4)] == [True, True, True, False]
    clock.now = at("2026-03-01T11:30:00")  # within the hour: still full
    assert not limit.take({})
    clock.now = at("2026-03-01T11:55:00")  # 10:55's bucket has left the window
    assert [limit.take({}) for _ in range(4)] == [True, True, True, False]
    zero = DeletionLimit(MemoryObjectStore(), BUCKET, "cvc-sync/", 0, clock=clock)
    assert not zero.take({})


# -- cost -----------------------------------------------------------------------------------------------------------


class CountingStore(MemoryObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        self._count("get")
        return super().get_bytes(bucket, key)

    def put_bytes(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
        self._count("put")
        return super().put_bytes(bucket, key, data, **options)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        self._count("list")
        return super().list_keys(bucket, prefix)

    def delete(self, bucket: str, key: str) -> None:
        self._count("delete")
        super().delete(bucket, key)

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self._count("delete")  # one request (S3's DeleteObjects)
        for key in keys:
            super().delete(bucket, key)


def calls_of_one_user(directory: int) -> list[dict[str, int]]:
    """The object-store calls of a create, the IdPs' probe, an update and a deletion slot, with ``directory``
    other users stored."""
    counting = CountingStore()
    store = ResourceStore(counting, BUCKET, "cvc-sync/")
    for n in range(directory):
        lock = store.lock(f"other{n}", expires_at=4e9, wait_until=4e9)
        store.claim(lock, "userName", f"other{n}", wait_until=4e9)
        store.write(lock, doc(f"other{n}", f"other{n}"))
        store.release(lock)
    steps: list[dict[str, int]] = []
    counting.calls = {}
    lock = store.lock("new", expires_at=4e9, wait_until=4e9)
    store.claim(lock, "userName", "new", wait_until=4e9)
    store.write(lock, doc("new", "new"))
    store.release(lock)
    steps.append(counting.calls)
    counting.calls = {}
    assert store.find("userName", "NEW") is not None
    steps.append(counting.calls)
    counting.calls = {}
    lock = store.lock("new", expires_at=4e9, wait_until=4e9)
    store.write(lock, doc("new", "new", 1))
    store.release(lock)
    steps.append(counting.calls)
    counting.calls = {}
    assert DeletionLimit(counting, BUCKET, "cvc-sync/", 100).take({})
    steps.append(counting.calls)
    return steps


def test_a_request_costs_the_same_calls_whatever_the_directory_size() -> None:
    small, large = calls_of_one_user(3), calls_of_one_user(3000)
    assert small == large
    create, probe, update, slot = small
    # Letting go is one delete of the locks that can be left, without listing them first (was: "list": 1 more).
    assert create == {"get": 2, "put": 3, "delete": 1}  # lock, check, index claim, document, release
    assert probe == {"get": 2} and update == {"get": 2, "put": 2, "delete": 1}
    assert slot == {"list": 2, "put": 1}
