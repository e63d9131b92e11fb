"""The state's in-flight lists: a run's users are uncertain from before its first write until a commit settles them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.engine.settle import UPSERT, Write, settle_writes
from cvcsync.engine.state import IN_FLIGHT_CHUNK, UNCERTAIN, ShadowState, StateStore

BUCKET = "b"


def commit_users(store: StateStore, users: dict[str, str]) -> None:
    def changes(state: ShadowState) -> None:
        state.upsert([(uid, digest, orjson.dumps({"userId": uid}).decode()) for uid, digest in users.items()])

    store.commit(changes, run_id="first")


def test_in_flight_users_are_uncertain_in_every_checkout_until_a_commit_settles_them(tmp_path: Path) -> None:
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "cvc-sync/state/")
    commit_users(store, {"kept": "h1", "changing": "h2", "leaving": "h3"})
    created = orjson.dumps({"userId": "new", "userName": "N"}).decode()
    assert store.mark_in_flight("run-1", iter([("changing", None), ("leaving", None), ("new", created)])) == 3

    state = store.checkout(tmp_path)
    assert state.get("kept") == ("h1", {"userId": "kept"})
    assert state.get("changing") == (UNCERTAIN, {"userId": "changing"})  # the old record stays for reference
    assert state.get("new") == (UNCERTAIN, {"userId": "new", "userName": "N"})
    assert state.uncertain_count() == 3 and state.in_flight_keys == ["cvc-sync/state/in-flight/run-1.ndjson.gz"]
    state.close()

    def settle(
        state: ShadowState,
    ) -> None:  # the run's commit: one write succeeded, one failed, the delete went through
        state.upsert([("changing", "h2b", "{}")])
        state.delete(["leaving"])

    store.commit(settle, run_id="run-1")
    assert list(objects.list_keys(BUCKET, "cvc-sync/state/in-flight/")) == []
    manifest = orjson.loads(objects.get_bytes(BUCKET, "cvc-sync/state/manifest.json") or b"{}")
    assert (manifest["users"], manifest["uncertain"]) == (2, 1)  # "new" failed: CVC may or may not hold it
    state = store.checkout(tmp_path)
    assert state.get("changing") == ("h2b", {}) and state.get("leaving") is None
    assert state.get("new") == (UNCERTAIN, {"userId": "new", "userName": "N"})
    state.close()


def test_an_empty_in_flight_list_writes_nothing(tmp_path: Path) -> None:
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "s/")
    assert store.mark_in_flight("run", iter([])) == 0
    assert list(objects.list_keys(BUCKET, "s/")) == []


def test_a_rebuild_keeps_in_flight_users_uncertain_and_its_commit_keeps_their_list(tmp_path: Path) -> None:
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "s/")
    commit_users(store, {"kept": "h1", "marked": "h2", "gone": "h3"})
    store.mark_in_flight("running", iter([("marked", None), ("created", '{"userId":"created"}')]))

    def rebuild(state: ShadowState) -> None:  # CVC was read to hold "kept", "marked" and "created"
        state.rebuild([[("kept", "c1", "{}"), ("marked", "c2", "{}"), ("created", "c3", "{}")]])

    store.commit(rebuild, run_id="reconcile-1", settles_in_flight=False)
    assert list(objects.list_keys(BUCKET, "s/in-flight/")) == ["s/in-flight/running.ndjson.gz"]
    state = store.checkout(tmp_path)
    try:
        assert [(uid, digest) for uid, digest, _ in state.users()] == [
            ("created", UNCERTAIN),
            ("kept", "c1"),
            ("marked", UNCERTAIN),
        ]
        # An in-flight user keeps the state's record (its last committed change's content), not CVC's: a run
        # that loses a race to that change re-applies it from there (engine.settle).
        records = {uid: orjson.loads(record) for uid, _, record in state.users()}
        assert records["marked"] == {"userId": "marked"} and records["created"] == {"userId": "created"}
    finally:
        state.close()


def test_change_times_are_stored_in_the_one_format_whatever_form_they_come_in(tmp_path: Path) -> None:
    store = StateStore(MemoryObjectStore(), BUCKET, "s/")

    def changes(state: ShadowState) -> None:
        state.record_changes([("a", "2024-05-01T10:00:00Z", "delete"), ("b", "2024-05-01T12:00:00+02:00", "upsert")])
        state.record_changes([("a", "2024-05-01T09:00:00.000000Z", "upsert")])  # older: never moves time back

    store.commit(changes, run_id="r")
    state = store.checkout(tmp_path)
    try:
        assert state.last_changes(["a", "b"]) == {
            "a": "2024-05-01T10:00:00.000000Z",
            "b": "2024-05-01T10:00:00.000000Z",
        }
    finally:
        state.close()


# -- the manifest never goes backwards ----------------------------------------------------------------------------


class RacingStore(MemoryObjectStore):
    """Runs ``meanwhile`` once, right after ``trigger`` is written (or, with ``before``, right before): another
    committer getting between two steps of this one."""

    def __init__(self, trigger: str, *, before: bool = False) -> None:
        super().__init__()
        self.trigger, self.before = trigger, before
        self.meanwhile: Callable[[], object] | None = None

    def _race(self, key: str) -> None:
        if key == self.trigger and self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()

    def put_bytes(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
        if self.before:
            self._race(key)
        written = super().put_bytes(bucket, key, data, **options)
        if not self.before:
            self._race(key)
        return written

    def put_file(self, bucket: str, key: str, path: Path, **options: Any) -> bool:
        written = super().put_file(bucket, key, path, **options)
        self._race(key)
        return written


def manifest_of(objects: MemoryObjectStore) -> dict[str, Any]:
    return dict(orjson.loads(objects.get_bytes(BUCKET, "s/manifest.json") or b"{}"))


@pytest.mark.parametrize(
    ("trigger", "before"),
    [
        ("s/gen-00000002.sqlite.gz", False),  # the newer commit publishes before the older one re-reads
        ("s/manifest.json", True),  # ... between the older one's re-read and its write (it overwrites the newer)
    ],
)
def test_a_slower_older_commit_never_leaves_the_manifest_behind(trigger: str, before: bool) -> None:
    objects = RacingStore(trigger, before=before)
    store = StateStore(objects, BUCKET, "s/")
    commit_users(store, {"a": "h1"})  # generation 1
    newer = StateStore(objects, BUCKET, "s/")

    def add_b(state: ShadowState) -> None:
        state.upsert([("b", "h2", "{}")])

    objects.meanwhile = lambda: newer.commit(add_b, run_id="newer")  # generation 3, inside generation 2's commit
    assert store.commit(lambda state: None, run_id="older") == 2
    manifest = manifest_of(objects)
    assert (manifest["generation"], manifest["runId"], manifest["users"]) == (3, "newer", 2)
    assert store.latest_generation() == 3


def test_the_manifest_follows_every_commit_in_order() -> None:
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "s/")
    for n in range(1, 6):
        assert store.commit(lambda state: None, run_id=f"run-{n}") == n
        assert manifest_of(objects)["generation"] == n


def test_a_checkout_between_a_commit_and_its_list_removal_does_not_fold_the_settled_list(tmp_path: Path) -> None:
    """A run commits (its generation settles its in-flight list) and removes the list just after. A checkout in
    between sees the new generation and the list still there: folding it again would leave the run's users
    uncertain for ever, since the run has committed already. The generation remembers which lists it settled."""
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "s/")
    store.mark_in_flight("run-a", iter([("u1", '{"userId":"u1"}')]))
    listed = objects.get_bytes(BUCKET, store.in_flight_key("run-a"))
    assert listed is not None

    def run_a(state: ShadowState) -> None:  # run-a wrote u1 and commits it
        state.upsert([("u1", "h1", '{"userId":"u1"}')])

    store.commit(run_a, run_id="run-a")
    objects.put_bytes(BUCKET, store.in_flight_key("run-a"), listed)  # as if the removal had not happened yet
    state = store.checkout(tmp_path)
    try:
        assert state.get("u1") == ("h1", {"userId": "u1"}) and state.in_flight_keys == []
    finally:
        state.close()


def test_a_long_in_flight_list_is_written_and_folded_a_chunk_at_a_time(tmp_path: Path) -> None:
    """A first sync of a million users folds its own list at its commit: read whole, it held ~500 MB of tuples."""
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "cvc-sync/state/")
    many = IN_FLIGHT_CHUNK * 2 + 7
    listed = [(f"u{i:06d}", orjson.dumps({"userId": f"u{i:06d}"}).decode() if i % 2 else None) for i in range(many)]
    assert store.mark_in_flight("big", iter(listed)) == many
    key = store.in_flight_lists()[0]

    chunks = store.in_flight_chunks(key, tmp_path)
    assert chunks is not None
    sizes = [len(chunk) for chunk in chunks]
    assert sizes == [IN_FLIGHT_CHUNK, IN_FLIGHT_CHUNK, 7]
    assert list(tmp_path.iterdir()) == []  # the downloaded list is removed once read
    assert store.read_in_flight(key, tmp_path) == listed

    state = store.checkout(tmp_path)
    assert state.uncertain_count() == many and state.in_flight_count() == many
    assert state.get("u000001") == (UNCERTAIN, {"userId": "u000001"})
    assert state.get("u000000") == (UNCERTAIN, {"userId": "u000000"})  # no record: the user id alone
    state.close()
    objects.delete(BUCKET, key)
    assert store.in_flight_chunks(key, tmp_path) is None  # a commit removed it meanwhile


@pytest.mark.parametrize("writes_settled", [True, False])
def test_a_commit_leaves_the_same_state_whether_it_folds_its_own_list_before_or_after_its_writes(
    tmp_path: Path, writes_settled: bool
) -> None:
    """After (``writes_settled``, what ``Run.commit`` does): only the users no write settled take the list's mark,
    which spares a first sync of a million users marking each uncertain just for its write to settle it again."""
    objects = MemoryObjectStore()
    store = StateStore(objects, BUCKET, "cvc-sync/state/")
    commit_users(store, {"kept": "h1", "changing": "h2", "failing": "h3", "in place": "h4"})
    new = orjson.dumps({"userId": "new", "userName": "N"}).decode()
    refused = orjson.dumps({"userId": "refused", "userName": "R"}).decode()
    mine = [("changing", None), ("failing", None), ("new", new), ("refused", refused), ("in place", None)]
    assert store.mark_in_flight("run-2", iter(mine)) == 5
    assert store.mark_in_flight("other", iter([("kept", None)])) == 1
    at = "2026-01-02T00:00:00Z"
    writes = [
        Write("changing", at, UPSERT, "h2b", '{"userId":"changing","v":2}'),
        Write("failing", at, UPSERT, "h3b", '{"userId":"failing","v":2}', landed=False),
        Write("new", at, UPSERT, "hn", new),
        Write("in place", at, UPSERT, "h4", '{"userId":"in place"}', changed=False),  # only its time is recorded
    ]  # "refused": CVC refused its create; no write, so its mark stays

    def settle(state: ShadowState) -> None:
        assert settle_writes(state, writes) == []  # no race: nobody else wrote these users

    store.commit(settle, run_id="run-2", writes_settled=writes_settled)

    state = store.checkout(tmp_path)
    assert state.get("changing") == ("h2b", {"userId": "changing", "v": 2})
    assert state.get("new") == ("hn", {"userId": "new", "userName": "N"})
    assert state.get("failing") == (UNCERTAIN, {"userId": "failing", "v": 2})  # the record it meant
    assert state.get("refused") == (UNCERTAIN, {"userId": "refused", "userName": "R"})
    assert state.get("in place") == (UNCERTAIN, {"userId": "in place"})  # marked; nothing sent settled it
    assert state.get("kept") == (UNCERTAIN, {"userId": "kept"})  # another run's list: its marks live on here
    assert store.in_flight_lists() == []  # both folded into the generation, and removed
    state.close()
