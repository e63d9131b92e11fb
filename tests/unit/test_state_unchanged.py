"""An upload that changes no user commits only its meta, as a reference generation (``StateStore.commit_unchanged``):
one small object instead of the whole snapshot down and up again, read by every reader as the generation it names
with the new meta; and the whole commit whenever the state moved since the plan. On the memory store, with CVC in
this process."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.engine.settle import SNAPSHOT_AT
from cvcsync.engine.shadow import ShadowState
from cvcsync.engine.state import StateStore
from cvcsync.engine.views import read_users
from cvcsync.inputs.changes import UserChange
from cvcsync.inputs.records import User
from cvcsync.platform.context import SyncContext
from cvcsync.runs.changes import ChangeBatch, ChangeEntry, run_changes
from cvcsync.runs.export import sync_source
from support.inprocess_cvc import InProcessCvc, inprocess_cvc, memory_context

BUCKET, PREFIX = "state", "cvc-sync/state/"
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
HEADER = b"userId,userName,groupId,groupName\n"


class PutCounter(MemoryObjectStore):
    """The memory store, keeping the size of every state object written."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[str, int] = {}

    def put_bytes(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
        if key.startswith(PREFIX + "gen-") and key.endswith(".sqlite.gz"):
            self.written[key] = len(data)
        return super().put_bytes(bucket, key, data, **options)

    def put_file(self, bucket: str, key: str, path: Path, **options: Any) -> bool:
        if key.startswith(PREFIX + "gen-") and key.endswith(".sqlite.gz"):
            self.written[key] = path.stat().st_size
        return super().put_file(bucket, key, path, **options)


@pytest.fixture(scope="module")
def cvc() -> InProcessCvc:
    return inprocess_cvc()


def context(store: MemoryObjectStore, cvc: InProcessCvc) -> SyncContext:
    return memory_context(store, cvc, BUCKET)


def export(n: int, renamed: int | None = None) -> bytes:
    rows = [f"u{i:04d},{'Renamed' if i == renamed else f'员工{i}'},88,示例科技\n" for i in range(n)]
    return HEADER + "".join(rows).encode("utf-8")


def upload(ctx: SyncContext, data: bytes, at: datetime) -> Any:
    return sync_source(io.BytesIO(data), name="all.csv", source={"key": "all.csv"}, mode="full", ctx=ctx, event_time=at)


def checkout(states: StateStore, tmp_path: Path) -> ShadowState:
    workdir = tmp_path / "look"
    workdir.mkdir(exist_ok=True)
    return states.checkout(workdir, compact=False)


def change(uid: str, at: datetime) -> ChangeBatch:
    entry = ChangeEntry(
        UserChange("upsert", uid, User(uid, "来自队列", "88", "示例科技"), None, at, "test", f"change of {uid}"),
        at,
        {"kind": "test"},
    )
    return ChangeBatch(writer="queue", source={"kind": "test"}, entries=[entry])


def test_an_unchanged_full_upload_commits_its_meta_alone_and_every_reader_sees_it(
    cvc: InProcessCvc, tmp_path: Path
) -> None:
    store = PutCounter()
    ctx = context(store, cvc)
    first = upload(ctx, export(300), T0)
    assert first.outcomes["created"] == 300
    full_size = store.written[PREFIX + "gen-00000001.sqlite.gz"]
    for n in range(1, 7):  # more unchanged uploads than generations are kept: the base outlives the pruning
        again = upload(ctx, export(300), T0 + timedelta(days=n))
        assert again.outcomes["unchanged"] == 300 and again.state["metaOnly"] is True
        assert again.state["generationAfter"] == 1 + n
        assert store.written[PREFIX + f"gen-{1 + n:08d}.sqlite.gz"] < full_size / 20
    states = StateStore(store, BUCKET, PREFIX)
    state = checkout(states, tmp_path)
    try:
        assert state.generation == 7 and state.count() == 300
        assert state.meta(SNAPSHOT_AT) == "2030-01-07T00:00:00.000000Z"  # the last upload's event time
        assert state.meta("run_id") == again.run_id and state.snapshot_rows == 300
    finally:
        state.close()
    assert read_users(states, ["u0007"], tmp_path)["u0007"].hash  # point reads through the reference's base
    assert states.read_manifest()["generation"] == 7 and states.read_manifest()["users"] == 300
    # A change run and a changed upload after it build on the reference like on any generation.
    assert run_changes(change("u0001", T0 + timedelta(days=8)), ctx).report.outcomes["updated"] == 1
    changed = upload(ctx, export(300, renamed=2), T0 + timedelta(days=9))
    assert changed.outcomes["updated"] == 2 and "metaOnly" not in changed.state  # u0001 back, u0002 renamed
    assert cvc.users()["u0002"]["userName"] == "Renamed" and cvc.users()["u0001"]["userName"] == "员工1"


def test_a_change_committed_after_the_plan_makes_it_a_whole_commit(cvc: InProcessCvc) -> None:
    store = PutCounter()
    ctx = context(store, cvc)
    upload(ctx, export(50), T0)
    planned = ctx.state.checkout  # the plan's checkout, then a change run before the commit
    changed: list[bool] = []

    def checkout_then_change(workdir: Path, *args: Any, **kwargs: Any) -> ShadowState:
        state = planned(workdir, *args, **kwargs)
        if not changed:
            changed.append(True)
            assert run_changes(change("q1", T0 + timedelta(hours=1)), ctx).report.outcomes["created"] == 1
        return state

    ctx.state.checkout = checkout_then_change  # type: ignore[method-assign]
    report = upload(ctx, export(50), T0 + timedelta(days=1))
    # The snapshot lacks q1, created by a change older than the snapshot: a whole commit, and its removal.
    assert report.state["metaOnly"] is False and report.outcomes["unchanged"] == 50
    assert store.written[PREFIX + "gen-00000002.sqlite.gz"] > 1000
    assert report.state.get("repairs") == 1 and [letter.record["type"] for letter in ctx.sink.letters] == ["delete"]


def test_a_change_committed_while_the_meta_was_written_is_repaired(cvc: InProcessCvc, tmp_path: Path) -> None:
    """A change run commits between the fingerprint and the reference's PUT: the snapshot (newer) lacks its user,
    so the commit finds the race on the new generation and returns the repair, as a whole commit would."""
    store = PutCounter()
    ctx = context(store, cvc)
    upload(ctx, export(20), T0)
    states = StateStore(store, BUCKET, PREFIX)
    late: list[Any] = []

    def changes(state: ShadowState) -> None:  # runs after the fingerprint was checked, before the PUT
        assert run_changes(change("late", T0 + timedelta(hours=1)), ctx).report.outcomes["created"] == 1
        state.set_meta(SNAPSHOT_AT, "2030-01-02T00:00:00.000000Z")

    workdir = tmp_path / "plan"
    workdir.mkdir()
    plan_state = states.checkout(workdir)
    journal, generation = plan_state.journal_fingerprint, plan_state.generation
    plan_state.close()
    committed = states.commit_unchanged(
        changes, run_id="r", snapshot_rows=20, planned_on=generation, journal=journal, late_repairs=late
    )
    assert committed == generation + 1
    assert [(r.user_id, r.op) for r in late] == [("late", "delete")]


def generations(store: MemoryObjectStore) -> list[int]:
    return sorted(
        int(k.rsplit("gen-", 1)[1][:8]) for k in store.list_keys(BUCKET, PREFIX + "gen-") if k.endswith(".gz")
    )


def test_references_leave_no_gap_for_a_container_that_last_saw_their_base(cvc: InProcessCvc) -> None:
    """Pruning keeps a reference chain whole (base and every generation after it): a container that last saw the
    base probes forward one number at a time and must reach the newest. A whole generation then prunes the chain."""
    from cvcsync.engine import state as state_module

    store = MemoryObjectStore()
    ctx = context(store, cvc)
    upload(ctx, export(30), T0)
    for n in range(1, 7):
        assert upload(ctx, export(30), T0 + timedelta(days=n)).state["metaOnly"] is True
        assert generations(store) == list(range(1, 2 + n))  # before: 2 .. n-2 were deleted, the base kept
    states = StateStore(store, BUCKET, PREFIX)
    state_module._LATEST.pop(store, None)
    states.remember_generation(1)  # a warm container that last saw the base
    assert states.newest_generation() == 7

    changed = upload(ctx, export(30, renamed=3), T0 + timedelta(days=8))
    assert changed.state["generationAfter"] == 8 and "metaOnly" not in changed.state
    assert generations(store) == [6, 7, 8]  # the last three; the chain's older references are gone too
    assert [k for k in store.list_keys(BUCKET, PREFIX + "gen-") if k.endswith(".manifest.json")] == [
        f"{PREFIX}gen-{g:08d}.manifest.json" for g in (6, 7, 8)
    ]
