"""What one SCIM write and one queue change cost the object store, request by request (S3 bills each and waits
10-30 ms for it): the counts are pinned by kind, so a redundant request coming back fails here.

Every request goes through a ``RecordingStore`` in front of the memory store, which notes each call in order as the
request S3 would get (``GET``, ``PUT``, ``HEAD``, ``LIST``, ``DELETE``: a ranged read is a GET, a delete of several
keys one request). SCIM requests go through the HTTP function's WSGI app and the queue's changes through
``sync_changes``, with CVC in this process (``support.inprocess_cvc``), as ``tests/fuzz/test_http_fuzz.py`` does.
A failing count prints the calls, so the request that came back can be seen. ``bench/bench_scim.py`` measures the
same against moto behind a counting proxy.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest

from cvcsync.adapters.objects import MemoryObjectStore, ObjectInfo, ObjectStore
from cvcsync.engine.shadow import ShadowState
from cvcsync.engine.state import StateStore
from cvcsync.http_api.app import HttpApi
from cvcsync.http_api.scim.deletions import DeletionLimit
from cvcsync.http_api.scim.store import Document, ResourceStore
from cvcsync.inputs.events.queue import QueueBatch, QueueMessage
from cvcsync.inputs.records import User, content_hash
from cvcsync.platform import services
from cvcsync.runs.changes import sync_changes
from support.inprocess_cvc import ENDPOINT, KEY, InProcessCvc, inprocess_cvc, memory_context
from support.scim_api import ENTERPRISE, SCIM_ENV, STATE_BUCKET, patch, scim, user

STATE_PREFIX = "cvc-sync/state/"
SEEDED = 300  # users in the state before the measured requests (one generation, as an export leaves it)
ENV = {
    **SCIM_ENV,
    "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY.id,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY.secret,
    "CVC_ENDPOINT": ENDPOINT,
}


class RecordingStore:
    """An ``ObjectStore`` in front of another that records each call in order: (the request S3 gets, the method,
    the key; the keys of a delete of several)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()  # the state's reads and writes go out in parallel

    def _note(self, kind: str, method: str, key: str) -> None:
        with self._lock:
            self.calls.append((kind, method, key))

    def take(self) -> list[tuple[str, str, str]]:
        """The calls since the last ``take``."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def open(self, bucket: str, key: str) -> BinaryIO:
        self._note("GET", "open", key)
        return self.inner.open(bucket, key)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        self._note("GET", "get_bytes", key)
        return self.inner.get_bytes(bucket, key)

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> bool:
        self._note("PUT", "put_bytes", key)
        return self.inner.put_bytes(bucket, key, data, content_type=content_type, if_absent=if_absent)

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> bool:
        self._note("PUT", "put_file", key)
        return self.inner.put_file(bucket, key, path, content_type=content_type, if_absent=if_absent)

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        self._note("GET", "download_file", key)
        return self.inner.download_file(bucket, key, path)

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        self._note("GET", "read_range", key)
        return self.inner.read_range(bucket, key, start, end)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self._note("HEAD", "head", key)
        return self.inner.head(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        self._note("LIST", "list_keys", prefix)  # one page: every listing here is far below 1,000 keys
        return self.inner.list_keys(bucket, prefix)

    def delete(self, bucket: str, key: str) -> None:
        self._note("DELETE", "delete", key)
        self.inner.delete(bucket, key)

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self._note("DELETE", "delete_many", ",".join(keys))  # one DeleteObjects request up to 1,000 keys
        self.inner.delete_many(bucket, keys)


def kinds(calls: list[tuple[str, str, str]]) -> dict[str, int]:
    return dict(sorted(Counter(kind for kind, _, _ in calls).items()))


def areas(calls: list[tuple[str, str, str]]) -> dict[str, int]:
    """Requests by area of the key, as ``bench_scim.Meter`` counts them (``scim/users``, ``state``, ``reports``...)."""
    found: Counter[str] = Counter()
    for _, _, key in calls:
        parts = key.removeprefix("cvc-sync/").split("/")
        found["/".join(parts[:2]) if parts[0] == "scim" else {"runs": "reports"}.get(parts[0], parts[0])] += 1
    return dict(sorted(found.items()))


def shown(calls: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"  {kind:<6} {method:<13} {key}" for kind, method, key in calls)


def seed(store: ObjectStore, bucket: str, n: int) -> None:
    """A state of ``n`` users, as a full export leaves it."""
    rows = []
    for i in range(n):
        person = User(f"s{i:05d}", f"员工{i}", "88", "示例科技")
        payload = person.to_json()
        rows.append((person.user_id, content_hash(payload), payload.decode()))

    def changes(state: ShadowState) -> None:
        state.upsert(rows)
        state.record_changes([(uid, "2030-01-01T00:00:00.000000Z", "upsert") for uid, _, _ in rows])

    StateStore(store, bucket, STATE_PREFIX).commit(changes, run_id="export-seed", snapshot_rows=n)


@pytest.fixture(scope="module")
def cvc() -> InProcessCvc:
    return inprocess_cvc(max_attempts=1)


# -- SCIM ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def recording(cvc: InProcessCvc, monkeypatch: pytest.MonkeyPatch) -> RecordingStore:
    store = RecordingStore(MemoryObjectStore())
    seed(store.inner, STATE_BUCKET, SEEDED)
    monkeypatch.setattr(services, "cvc_client", lambda invocation, env: cvc.client)
    monkeypatch.setattr(services, "object_store", lambda invocation, env: store)
    return store


def entra_user(n: int) -> dict[str, Any]:
    """A user as Entra ID creates it: userName and externalId (both indexed), an e-mail, a department."""
    return user(
        f"chen.jing{n}@example.com",
        display=f"陈静{n}",
        externalId=f"0a21f0f2-0000-4000-8000-{n:012d}",
        emails=[{"value": f"chen.jing{n}@example.com", "type": "work", "primary": True}],
        **{ENTERPRISE: {"department": "研发部"}},
    )


def probe_query(n: int) -> str:
    return f"filter=userName%20eq%20%22chen.jing{n}%40example.com%22"


def test_scim_requests_cost_what_is_pinned(recording: RecordingStore) -> None:
    api = HttpApi(ENV)
    warm = scim(api, "POST", "/Users", entra_user(0))  # the first request reads the manifest and the header
    assert warm.status == 201, warm.body
    recording.take()

    assert scim(api, "GET", "/Users", query=probe_query(1)).json()["totalResults"] == 0
    probe_nobody = recording.take()
    created = scim(api, "POST", "/Users", entra_user(1))
    assert created.status == 201, created.body
    create = recording.take()
    at = f"/Users/{created.json()['id']}"
    updated = scim(api, "PATCH", at, patch({"op": "replace", "path": "displayName", "value": "陈静 (研发)"}))
    assert updated.status == 200 and updated.headers["ETag"] == 'W/"2"', updated.body
    update = recording.take()
    deactivated = scim(api, "PATCH", at, patch({"op": "replace", "path": "active", "value": False}))
    assert deactivated.status == 200 and deactivated.json()["active"] is False, deactivated.body
    deactivate = recording.take()
    assert scim(api, "GET", "/Users", query=probe_query(1)).json()["totalResults"] == 1
    probe_found = recording.take()

    assert kinds(probe_nobody) == {"GET": 1}, shown(probe_nobody)
    assert kinds(probe_found) == {"GET": 2}, shown(probe_found)
    # Before: 22 (DELETE 1, GET 5, HEAD 4, LIST 3, PUT 9). The lock of the id the create just made up is one
    # create-only PUT (no read of a document that cannot exist, before or after); letting go is one DELETE (no
    # LIST of the user's locks); the plan starts from the generation last seen (no HEAD before its read); the
    # user's row is one ranged GET of its block (the generation's offset table was read by the first request).
    assert kinds(create) == {"DELETE": 1, "GET": 2, "HEAD": 3, "LIST": 2, "PUT": 9}, shown(create)
    assert areas(create) == {"reports": 2, "scim/index": 2, "scim/locks": 2, "scim/users": 1, "state": 10}
    # Before: 21 (DELETE 1, GET 6, HEAD 4, LIST 3, PUT 7): no LIST of the locks, no HEAD before the plan's read.
    assert kinds(update) == {"DELETE": 1, "GET": 5, "HEAD": 3, "LIST": 2, "PUT": 7}, shown(update)
    # Before: 24 (DELETE 1, GET 6, HEAD 4, LIST 5, PUT 8); the deletion limit's two LISTs are the first in this
    # container's five-minute bucket (``test_the_deletion_limit_lists_the_finished_buckets_once_per_bucket``).
    assert kinds(deactivate) == {"DELETE": 1, "GET": 5, "HEAD": 3, "LIST": 4, "PUT": 8}, shown(deactivate)
    assert not [c for c in create + update + deactivate if c[0] == "LIST" and "/scim/locks/" in c[2]]
    assert not [c for c in create if "/scim/users/" in c[2] and c[0] == "GET"]
    assert list(recording.inner.list_keys(STATE_BUCKET, "cvc-sync/scim/locks/")) == []  # every lock let go


def test_a_lock_releases_without_a_listing_and_leaves_none_behind() -> None:
    """Letting go is one DELETE of the locks that can be left: the holder's own, the expired one it stepped over,
    the one of a holder killed after writing the document it found. A removal still lists them all."""
    now = [1000.0]
    store = RecordingStore(MemoryObjectStore())
    resources = ResourceStore(store, "b", "cvc-sync/", clock=lambda: now[0], sleep=lambda s: None)
    locks = "cvc-sync/scim/locks/"
    created = resources.lock("u1", expires_at=1100.0, wait_until=1000.0, fresh=True)
    assert kinds(store.take()) == {"PUT": 1}  # an id nobody can name yet: no document to read
    resources.write(created, Document("u1", 0, "t0", "t0", {"userName": "a"}))  # killed before letting go
    second = resources.lock("u1", expires_at=1200.0, wait_until=1000.0)
    assert second.version == 2 and second.found is not None and second.found.version == 1
    resources.write(second, Document("u1", 0, "t0", "t0", {"userName": "b"}))
    store.take()
    resources.release(second)
    assert kinds(store.take()) == {"DELETE": 1} and list(store.inner.list_keys("b", locks)) == []
    killed = resources.lock("u1", expires_at=1300.0, wait_until=1000.0)  # version 3: killed before writing
    now[0] = 1301.0
    fourth = resources.lock("u1", expires_at=1500.0, wait_until=1301.0)
    assert (fourth.version, fourth.stepped_over) == (4, (killed.version,))
    resources.write(fourth, Document("u1", 0, "t0", "t0", {"userName": "c"}))
    store.take()
    resources.release(fourth)
    assert kinds(store.take()) == {"DELETE": 1} and list(store.inner.list_keys("b", locks)) == []
    gone = resources.lock("u1", expires_at=1500.0, wait_until=1301.0)
    store.inner.put_bytes("b", f"{locks}u1/0000000001", b"{}")  # left by a request killed long ago
    resources.remove(gone)  # the versions start again: every lock of the user goes
    resources.release(gone)
    assert list(store.inner.list_keys("b", locks)) == []


def test_the_deletion_limit_lists_the_finished_buckets_once_per_bucket() -> None:
    """The window's finished buckets take no more slots: a warm container lists them once per five-minute bucket
    (two LISTs), then only the current bucket (one), once the bucket is old enough for clocks to agree."""
    now = [datetime(2030, 3, 1, 10, 5, 10, tzinfo=timezone.utc).timestamp()]
    store = RecordingStore(MemoryObjectStore())
    limit = DeletionLimit(store, "b", "cvc-sync/", 8, clock=lambda: now[0])
    listings = []
    for moment in ("10:05:10", "10:05:20", "10:05:40", "10:06:00", "10:09:59", "10:10:31", "10:10:45"):
        now[0] = datetime.fromisoformat(f"2030-03-01T{moment}+00:00").timestamp()
        assert limit.take({"userId": moment})
        listings.append(sum(1 for kind, _, _ in store.take() if kind == "LIST"))
    # 10:05:10 and :20 are within SKEW_SECONDS of the bucket's start (a late removal may still land before it);
    # from :40 the finished buckets are known; 10:10 is a new bucket.
    assert listings == [2, 2, 2, 1, 1, 2, 1]
    again = DeletionLimit(store, "b", "cvc-sync/", 8, clock=lambda: now[0])  # a new request, the same container
    assert again.take({}) and sum(1 for kind, _, _ in store.take() if kind == "LIST") == 1
    # The count still holds: the eighth removal of the window is the last one, cached or not.
    assert not again.take({}) and not DeletionLimit(MemoryObjectStore(), "b", "cvc-sync/", 0).take({})


# -- the queue ----------------------------------------------------------------------------------------------------


def message(n: int, user_id: str) -> QueueBatch:
    body = {
        "type": "upsert",
        "eventId": f"hr-7f3a-{n:04d}",
        "occurredAt": f"2030-01-02T10:00:{n:02d}+08:00",
        "user": {"userId": user_id, "userName": f"王芳{n}", "groupId": "88", "groupName": "示例科技"},
    }
    return QueueBatch("sqs", [QueueMessage(f"m-{n}", orjson.dumps(body).decode())])


@pytest.mark.parametrize(
    ("users", "first", "then"),
    [
        # Before: the first change 14, then 12 (HEAD 4, LIST 2, GET 1, PUT 5).
        (0, {"GET": 2, "HEAD": 4, "LIST": 3, "PUT": 5}, {"GET": 1, "HEAD": 3, "LIST": 2, "PUT": 5}),
        # Before: the first change 17, then 14 (HEAD 4, LIST 2, GET 3, PUT 5). The first change trusts the manifest
        # it reads (no HEAD of its generation, none of the next): the HEAD after its read proves it.
        # Every next change reads its user's block alone: the generation's offset table was read by the first.
        (SEEDED, {"GET": 5, "HEAD": 3, "LIST": 2, "PUT": 5}, {"GET": 2, "HEAD": 3, "LIST": 2, "PUT": 5}),
    ],
)
def test_a_single_user_queue_change_costs_what_is_pinned(
    cvc: InProcessCvc, users: int, first: dict[str, int], then: dict[str, int]
) -> None:
    """The first change of a container reads the manifest and the generation's header; every next one: HEAD x3
    (no generation published during the plan's read, after the intent, after the commit), LIST x2 (the user's
    entries, batch runs' in-flight lists), GET x2 (the user's block of the index, none on an empty state; the
    manifest), PUT x5 (intent, write, manifest; the report under two keys)."""
    store = RecordingStore(MemoryObjectStore())
    if users:
        seed(store.inner, "state", users)
    ctx = memory_context(store, cvc, "state")
    counts = []
    for n in range(3):
        result = sync_changes(message(n, f"q-{users}-{n}"), ctx)
        assert result.report.outcomes["created"] == 1
        calls = store.take()
        counts.append(kinds(calls))
        assert not [c for c in calls if c[1] in ("open", "download_file", "put_file")]  # never the snapshot
    assert counts == [first, then, then], "\n".join(str(c) for c in counts)
    again = sync_changes(message(9, f"q-{users}-1"), ctx)  # a user changed before: its checkpoint is read
    assert again.report.outcomes["updated"] == 1
    calls = store.take()
    assert kinds(calls) == {**then, "GET": then["GET"] + 1}, shown(calls)
    assert [c for c in calls if c[0] == "GET" and "/journal/" in c[2]]
