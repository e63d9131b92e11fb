"""The state's in-flight lists: a run's users are uncertain from before its first write until a commit settles them."""

from __future__ import annotations

from pathlib import Path

import orjson

from cvcsync.engine.state import UNCERTAIN, ShadowState, StateStore
from cvcsync.objects import MemoryObjectStore

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
