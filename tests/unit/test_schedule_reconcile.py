"""The reconcile task on the memory store and the in-process CVC: drift, each healing direction, the deletion
guard of heal-cvc, and the GetUser sample where ListUsers is unavailable."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import CvcSettings, SyncSettings
from cvcsync.engine.state import UNCERTAIN, ShadowState
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events.queue import parse_queue_event
from cvcsync.inputs.records import parse_user
from cvcsync.runs.changes import sync_changes
from cvcsync.schedule import alerts
from cvcsync.schedule.context import LAST_SYNC_META, ScheduleSettings
from cvcsync.schedule.reconcile_task import Reconcile
from support.inprocess_cvc import ENDPOINT, KEY, WsgiAdapter
from support.schedule import World, user, world


def seed(w: World, state_ids: list[str], cvc: dict[str, str], *, snapshot: int | None = None) -> None:
    """The state remembers ``state_ids`` (name = "name-<id>"); CVC holds ``cvc`` (id -> name)."""
    rows = []
    for uid in state_ids:
        parsed = parse_user(user(uid))
        rows.append((uid, parsed.content_hash(), parsed.to_json().decode()))

    def changes(state: ShadowState) -> None:
        state.upsert(rows)

    w.ctx.sync.state.commit(changes, run_id="upload-run", snapshot_rows=snapshot)
    if cvc:
        w.cvc.client.create_batch([user(uid, name) for uid, name in cvc.items()])


def reconcile(w: World, **options: Any) -> dict[str, Any]:
    return Reconcile(w.ctx, options).run()


def state_names(w: World, tmp_path: Path) -> dict[str, str]:
    state = w.ctx.sync.state.checkout(tmp_path)
    try:
        return {uid: orjson.loads(record)["userName"] for uid, _, record in state.users()}
    finally:
        state.close()


def drifted(w: World) -> None:
    """State: a, b, c. CVC: a (same), b (renamed outside cvc-sync), d (added outside); c is missing from CVC."""
    seed(w, ["a", "b", "c"], {"a": "name-a", "b": "renamed", "d": "name-d"}, snapshot=3)


def test_report_mode_finds_each_kind_of_drift_and_changes_nothing(tmp_path: Path) -> None:
    w = world()
    drifted(w)
    result = reconcile(w)
    drift = result["drift"]
    assert result["status"] == "drift" and result["method"] == "list" and result["mode"] == "report"
    assert drift["counts"] == {"onlyInCvc": 1, "onlyInState": 1, "different": 1, "uncertain": 0}
    assert (drift["onlyInCvc"], drift["onlyInState"], drift["different"]) == (["d"], ["c"], ["b"])
    assert drift["snapshot"] == {"lastAcceptedUsers": 3, "cvcUsers": 3, "difference": 0}
    stored = orjson.loads(w.store.get_bytes("state", result["reportKey"]) or b"")
    assert result["reportKey"].startswith("cvc-sync/reports/reconcile/reconcile-") and stored["drift"] == drift
    assert set(w.cvc.users()) == {"a", "b", "d"} and set(state_names(w, tmp_path)) == {"a", "b", "c"}


def test_in_sync_says_so() -> None:
    w = world()
    seed(w, ["a", "b"], {"a": "name-a", "b": "name-b"})
    result = reconcile(w)
    assert result["status"] == "in-sync" and result["drift"]["inSync"]


def test_heal_state_makes_the_state_equal_to_cvc(tmp_path: Path) -> None:
    w = world(settings=ScheduleSettings(reconcile_mode="heal-state"))
    drifted(w)
    result = reconcile(w)
    assert result["status"] == "healed" and result["heal"]["direction"] == "heal-state"
    assert state_names(w, tmp_path) == {"a": "name-a", "b": "renamed", "d": "name-d"}
    assert reconcile(w)["status"] == "in-sync"
    (tmp_path / "again").mkdir()
    state = w.ctx.sync.state.checkout(tmp_path / "again")
    try:
        assert state.meta(LAST_SYNC_META) is not None  # the upload's commit time, carried past the heal
    finally:
        state.close()


def test_heal_cvc_pushes_the_state_back_and_deletes_what_it_does_not_know(tmp_path: Path) -> None:
    w = world()
    drifted(w)
    result = reconcile(w, mode="heal-cvc")
    assert result["status"] == "healed"
    assert {k: result["heal"][k] for k in ("pushed", "deleted", "failed", "pending")} == {
        "pushed": 2,
        "deleted": 1,
        "failed": 0,
        "pending": 0,
    }
    assert {uid: u["userName"] for uid, u in w.cvc.users().items()} == {"a": "name-a", "b": "name-b", "c": "name-c"}
    assert reconcile(w)["status"] == "in-sync"


def test_heal_cvc_refuses_deletions_past_the_threshold_and_alerts() -> None:
    w = world(sync_settings=SyncSettings(state_bucket="state", max_deletes=500, max_delete_percent=20.0))
    seed(
        w,
        [f"s{n}" for n in range(40)],
        {**{f"s{n}": f"name-s{n}" for n in range(39)}, **{f"x{n}": "x" for n in range(12)}},
    )
    result = reconcile(w, mode="heal-cvc")  # 12 deletions of 51 CVC users: 23.5% > 20%
    assert result["status"] == "refused" and "deletionThreshold" in result["heal"]["refused"]
    assert result["heal"]["deleted"] == 0 and result["heal"]["pushed"] == 0  # no upserts unless configured
    assert len(w.cvc.users()) == 51
    assert [a.code for a in w.alerter.raised] == [alerts.RECONCILE_REFUSED]


def test_heal_cvc_refused_still_pushes_upserts_when_configured() -> None:
    settings = SyncSettings(state_bucket="state", max_deletes=5, upserts_when_refused=True)
    w = world(sync_settings=settings)
    seed(w, ["a", "b"], {"a": "renamed", **{f"x{n}": "x" for n in range(6)}})
    result = reconcile(w, mode="heal-cvc")
    assert result["status"] == "refused" and result["heal"]["pushed"] == 2 and result["heal"]["deleted"] == 0
    assert w.cvc.users()["a"]["userName"] == "name-a" and "b" in w.cvc.users() and len(w.cvc.users()) == 8


def test_heal_cvc_with_an_override_deletes_past_the_threshold() -> None:
    w = world(sync_settings=SyncSettings(state_bucket="state", max_deletes=1, guard_override=True))
    seed(w, ["a"], {"a": "name-a", "x1": "x", "x2": "x"})
    result = reconcile(w, mode="heal-cvc")
    assert result["status"] == "healed" and result["heal"]["guard"]["overridden"]
    assert set(w.cvc.users()) == {"a"}


def test_heal_cvc_never_runs_from_a_state_that_was_never_committed() -> None:
    w = world()
    w.cvc.client.create_batch([user("a"), user("b")])
    result = reconcile(w, mode="heal-cvc")
    assert result["status"] == "refused" and "no shadow state" in result["heal"]["refused"]
    assert set(w.cvc.users()) == {"a", "b"}


def test_without_list_users_a_sample_is_checked_with_get_user(tmp_path: Path) -> None:
    w = world(unavailable=("ListUsers",), settings=ScheduleSettings(reconcile_sample=6))
    w.ctx.rng = random.Random(7)
    ids = [f"u{n:02d}" for n in range(20)]
    sample = sorted(random.Random(7).sample(ids, 6))  # what the task will draw from the same seed
    outside = sorted(set(ids) - set(sample))
    missing, renamed = sample[0], sample[1]
    cvc = {uid: f"name-{uid}" for uid in ids if uid not in (missing, outside[0])}
    cvc.update({renamed: "renamed", outside[1]: "renamed"})  # drift outside the sample goes unseen
    seed(w, ids, cvc)
    result = reconcile(w)
    drift = result["drift"]
    assert result["method"] == "sample" and drift["sampled"] == 6 and drift["unchecked"] == 0
    assert "InvalidApi.NotFound" in result["messages"][0]
    assert drift["onlyInCvc"] == [] and drift["counts"]["onlyInCvc"] == 0  # a sample cannot see additions
    assert (drift["onlyInState"], drift["different"]) == ([missing], [renamed])
    assert drift["cvcUsers"] == 5
    assert w.cvc.app.stats.snapshot(0)["calls"]["GetUser"] == 6


def test_the_sample_heals_cvc_for_what_it_saw() -> None:
    w = world(unavailable=("ListUsers",), settings=ScheduleSettings(reconcile_sample=50))
    seed(w, ["a", "b", "c"], {"a": "renamed", "b": "name-b"})
    result = reconcile(w, mode="heal-cvc")
    assert result["method"] == "sample" and result["heal"]["pushed"] == 2 and result["heal"]["deleted"] == 0
    assert {uid: u["userName"] for uid, u in w.cvc.users().items()} == {"a": "name-a", "b": "name-b", "c": "name-c"}


def test_the_sample_heals_the_state_for_what_it_saw(tmp_path: Path) -> None:
    w = world(unavailable=("ListUsers",))
    seed(w, ["a", "b", "c"], {"a": "renamed", "b": "name-b"})
    assert reconcile(w, mode="heal-state")["status"] == "healed"
    assert state_names(w, tmp_path) == {"a": "renamed", "b": "name-b"}


def test_bad_modes_and_options_are_refused() -> None:
    w = world()
    with pytest.raises(InvalidInputError, match="heal-state"):
        reconcile(w, mode="heal-everything")
    with pytest.raises(InvalidInputError, match="unknown option 'dryRun'"):
        reconcile(w, dryRun=True)


# -- uncertain users, a state read after CVC, running syncs (issue 11, defects 2 and 8) ---------------------------


def hashes(w: World, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "hashes").mkdir(exist_ok=True)
    state = w.ctx.sync.state.checkout(tmp_path / "hashes")
    try:
        return {uid: digest for uid, digest, _ in state.users()}
    finally:
        state.close()


def in_flight_lists(w: World) -> list[str]:
    return list(w.store.list_keys("state", "cvc-sync/state/in-flight/"))


def record(uid: str, name: str) -> str:
    return parse_user(user(uid, name)).to_json().decode()


def test_heal_cvc_neither_pushes_nor_deletes_uncertain_users_and_heal_state_settles_them(tmp_path: Path) -> None:
    """A run deleted x and renamed y in CVC, then lost its commit: the state holds both as uncertain (its in-flight
    list was folded in and removed by a later commit). Pushing the state's records would re-create x."""
    w = world()
    seed(w, ["a", "x", "y"], {"a": "name-a", "y": "renamed by the lost run"})
    w.ctx.sync.state.mark_in_flight("lost-run", iter([("x", None), ("y", record("y", "renamed by the lost run"))]))
    w.ctx.sync.state.commit(lambda state: None, run_id="a-later-run")  # folds the list in and removes it
    assert in_flight_lists(w) == [] and hashes(w, tmp_path)["x"] == UNCERTAIN

    healed = reconcile(w, mode="heal-cvc")
    assert {uid: u["userName"] for uid, u in w.cvc.users().items()} == {"a": "name-a", "y": "renamed by the lost run"}
    drift = healed["drift"]
    assert drift["counts"] == {"onlyInCvc": 0, "onlyInState": 0, "different": 0, "uncertain": 2}
    assert drift["uncertain"] == ["x", "y"]
    assert (healed["heal"]["uncertain"], healed["heal"]["pushed"], healed["heal"]["deleted"]) == (2, 0, 0)
    assert healed["status"] == "partly-healed" and "heal-state settles them" in healed["messages"][0]

    assert reconcile(w, mode="heal-state")["status"] == "healed"
    assert state_names(w, tmp_path) == {"a": "name-a", "y": "renamed by the lost run"}
    assert UNCERTAIN not in hashes(w, tmp_path).values() and reconcile(w)["status"] == "in-sync"


class QueueRunDuringListUsers:
    """CVC's gateway, but the first ListUsers lets a queue run create ``q`` (CVC, then its state commit) before it
    answers: a write committed while reconcile reads the directory."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.done = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.done and "Action=ListUsers" in environ.get("QUERY_STRING", ""):
            self.done = True
            change = {"type": "upsert", "eventId": "q-1", "occurredAt": "2024-05-01T01:00:00Z", "user": user("q")}
            body = {"messageId": "m-q", "body": orjson.dumps(change).decode(), "eventSource": "aws:sqs"}
            queue_ctx = dataclasses.replace(self.w.ctx.sync, cvc=self.w.cvc.client)  # its own client, same CVC
            assert sync_changes(parse_queue_event({"Records": [body]}), queue_ctx).report.outcomes["created"] == 1
        return self.w.cvc.gateway(environ, start_response)

    def client(self) -> CvcClient:
        session = requests.Session()
        session.mount(ENDPOINT, WsgiAdapter(self))
        settings = CvcSettings(endpoint=ENDPOINT, max_attempts=1)
        return CvcClient(Credentials(KEY.id, KEY.secret), settings=settings, session=session, sleep=lambda s: None)


@pytest.mark.parametrize("mode", ["heal-cvc", "heal-state"])
def test_a_user_created_while_cvc_is_read_is_neither_deleted_nor_forgotten(mode: str, tmp_path: Path) -> None:
    w = world()
    seed(w, ["a", "b"], {"a": "name-a", "b": "name-b", "outsider": "x"})
    w.ctx.sync.cvc = QueueRunDuringListUsers(w).client()
    result = reconcile(w, mode=mode)
    assert result["drift"]["onlyInCvc"] == ["outsider"] and result["drift"]["counts"]["onlyInCvc"] == 1
    assert "q" in w.cvc.users() and "q" in state_names(w, tmp_path)
    assert set(w.cvc.users()) == ({"a", "b", "q"} if mode == "heal-cvc" else {"a", "b", "q", "outsider"})


def test_heal_state_keeps_a_running_syncs_in_flight_marks(tmp_path: Path) -> None:
    """A sync marked b (an update) and n (a create) in flight and has created n in CVC, but not committed yet.
    Rebuilding the state from CVC must leave both uncertain and the sync's list in place for its own commit."""
    w = world(settings=ScheduleSettings(reconcile_mode="heal-state"))
    seed(w, ["a", "b"], {"a": "name-a", "b": "name-b", "outsider": "x"})
    store = w.ctx.sync.state
    store.mark_in_flight("running-sync", iter([("b", record("b", "new-b")), ("n", record("n", "name-n"))]))
    w.cvc.client.create_batch([user("n")])

    result = reconcile(w)
    after = hashes(w, tmp_path)
    assert (after["b"], after["n"]) == (UNCERTAIN, UNCERTAIN)
    assert in_flight_lists(w) == ["cvc-sync/state/in-flight/running-sync.ndjson.gz"]
    assert result["status"] == "healed" and result["heal"]["keptInFlight"] == 2
    assert after["a"] != UNCERTAIN and after["outsider"] != UNCERTAIN
    manifest = orjson.loads(w.store.get_bytes("state", "cvc-sync/state/manifest.json") or b"")
    assert (manifest["users"], manifest["uncertain"]) == (2, 2)

    def sync_commit(state: ShadowState) -> None:  # the running sync finishes: n written, b failed
        state.upsert([("n", parse_user(user("n")).content_hash(), record("n", "name-n"))])

    store.commit(sync_commit, run_id="running-sync")
    assert in_flight_lists(w) == []
    settled = hashes(w, tmp_path)
    assert settled["n"] != UNCERTAIN and settled["b"] == UNCERTAIN  # b may still differ in CVC: re-sent next time


def test_heal_state_asks_for_users_a_shifted_listing_skipped_before_forgetting_them(tmp_path: Path) -> None:
    """ListUsers is paged: writes while it is read shift the pages, and a user that exists can be skipped. A user
    the state holds and the listing lacked is asked for with GetUser before heal-state forgets it."""
    w = world(settings=ScheduleSettings(reconcile_mode="heal-state"))
    drifted(w)  # c is really missing from CVC; a, b and d are there
    listing = w.ctx.sync.cvc.list_users

    def shifted(**kwargs: Any) -> Any:  # a listing whose pages moved under it: "a" falls between two pages
        return (info for info in listing(**kwargs) if info.get("UserId") != "a")

    w.ctx.sync.cvc.list_users = shifted  # type: ignore[method-assign]
    result = reconcile(w)
    assert result["status"] == "healed"
    assert state_names(w, tmp_path) == {"a": "name-a", "b": "renamed", "d": "name-d"}  # "a" kept, "c" forgotten
    assert any("skipped were found with GetUser" in m for m in result["messages"])
