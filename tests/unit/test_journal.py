"""The change path's state (``engine.views``, ``engine.journal``): one change costs the same at any directory size,
writers of different users never meet, writers of one user resolve by the one rule, and the batch path sees every
change the change path committed. On the memory store, with CVC in this process."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.engine import state as state_module
from cvcsync.engine.journal import INTENT, WRITE, Entry
from cvcsync.engine.settle import DELETE, UPSERT, Seen, Write
from cvcsync.engine.shadow import UNCERTAIN, ShadowState, UserRow
from cvcsync.engine.state import StateStore
from cvcsync.engine.views import ChangeSession, read_users
from cvcsync.inputs.changes import UserChange
from cvcsync.inputs.records import User, content_hash
from cvcsync.platform.context import SyncContext
from cvcsync.runs.changes import ChangeBatch, ChangeEntry, ChangeRun, run_changes
from support.inprocess_cvc import InProcessCvc, inprocess_cvc, memory_context

BUCKET, PREFIX = "state", "cvc-sync/state/"
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


class CountingStore(MemoryObjectStore):
    """The memory store, counting each operation and the bytes it moved (``since`` a mark)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.bytes_in = self.bytes_out = 0
        self.whole_reads: list[str] = []

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        data = super().get_bytes(bucket, key)
        self.calls["get"] += 1
        self.bytes_in += len(data or b"")
        return data

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        data = super().read_range(bucket, key, start, end)
        self.calls["range"] += 1
        self.bytes_in += len(data or b"")
        return data

    def open(self, bucket: str, key: str) -> Any:
        self.calls["open"] += 1
        self.whole_reads.append(key)
        return super().open(bucket, key)

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        self.calls["download"] += 1
        self.whole_reads.append(key)
        return super().download_file(bucket, key, path)

    def put_bytes(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
        self.calls["put"] += 1
        self.bytes_out += len(data)
        return super().put_bytes(bucket, key, data, **options)

    def put_file(self, bucket: str, key: str, path: Path, **options: Any) -> bool:
        self.calls["put_file"] += 1
        self.bytes_out += path.stat().st_size
        return super().put_file(bucket, key, path, **options)

    def head(self, bucket: str, key: str) -> Any:
        self.calls["head"] += 1
        return super().head(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        self.calls["list"] += 1
        return super().list_keys(bucket, prefix)

    def reset(self) -> None:
        self.calls.clear()
        self.bytes_in = self.bytes_out = 0
        self.whole_reads.clear()


@pytest.fixture(scope="module")
def cvc() -> InProcessCvc:
    return inprocess_cvc()


def context(store: MemoryObjectStore, cvc: InProcessCvc) -> SyncContext:
    return memory_context(store, cvc, BUCKET)


def person(uid: str, name: str) -> User:
    return User(uid, name, "88", "示例科技")


def upsert(uid: str, name: str, at: datetime, event_id: str | None = None) -> ChangeEntry:
    change = UserChange("upsert", uid, person(uid, name), event_id, at, "test", f"change of {uid}")
    return ChangeEntry(change, at, {"kind": "test"})


def delete(uid: str, at: datetime) -> ChangeEntry:
    return ChangeEntry(UserChange("delete", uid, None, None, at, "test", f"delete of {uid}"), at, {"kind": "test"})


def run(ctx: SyncContext, *entries: ChangeEntry) -> ChangeRun:
    return run_changes(ChangeBatch(writer="queue", source={"kind": "test"}, entries=list(entries)), ctx)


def record(uid: str, name: str) -> tuple[str, str]:
    payload = person(uid, name).to_json()
    return content_hash(payload), payload.decode()


def seed(store: MemoryObjectStore, n: int) -> StateStore:
    """A state of ``n`` users, as a full export at T0 leaves it."""
    rows = [(f"s{i:06d}", *record(f"s{i:06d}", f"员工{i}")) for i in range(n)]

    def changes(state: ShadowState) -> None:
        state.upsert(rows)
        state.record_changes([(uid, T0.isoformat(), "upsert") for uid, _, _ in rows])
        state.set_meta("snapshot_at", "2030-01-01T00:00:00.000000Z")

    states = StateStore(store, BUCKET, PREFIX)
    states.commit(changes, run_id="export-t0", snapshot_rows=n)
    return states


def checkout(states: StateStore, tmp_path: Path, name: str = "look") -> ShadowState:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    return states.checkout(workdir, compact=False)


def journal_keys(store: MemoryObjectStore) -> list[str]:
    return list(store.list_keys(BUCKET, PREFIX + "journal/"))


# -- what one change costs -------------------------------------------------------------------------------------------


def cost_of_changes(n: int, cvc: InProcessCvc, changes: int = 6) -> tuple[Counter[str], int, int, list[str]]:
    store = CountingStore()
    seed(store, n)
    ctx = context(store, cvc)
    run(ctx, upsert("warm", "热身", T0 + timedelta(hours=1)))  # the first read of a generation caches its header
    store.reset()
    for i in range(changes):
        assert run(ctx, upsert(f"q{n}-{i}", f"新{i}", T0 + timedelta(hours=2))).report.outcomes["created"] == 1
    return store.calls, store.bytes_in // changes, store.bytes_out // changes, list(store.whole_reads)


def test_one_change_costs_the_same_requests_and_bytes_at_100_and_at_20000_users(cvc: InProcessCvc) -> None:
    small, small_in, small_out, _ = cost_of_changes(100, cvc)
    large, large_in, large_out, whole = cost_of_changes(20_000, cvc)
    state_calls = ("get", "range", "put", "head", "list", "open", "download", "put_file")
    assert {k: small[k] for k in state_calls} == {k: large[k] for k in state_calls}
    # Bytes: a block of the index (tens of users), a few entries and the reports, never the snapshot (megabytes).
    assert large_in < small_in + 8_000 and large_out < small_out + 2_000, (small_in, large_in, small_out, large_out)
    assert large_in < 40_000
    assert whole == [] and large["put_file"] == 0  # no generation read or written whole


def test_the_batch_path_sees_every_change_and_its_commit_folds_and_removes_them(
    cvc: InProcessCvc, tmp_path: Path
) -> None:
    store = MemoryObjectStore()
    states = seed(store, 50)
    ctx = context(store, cvc)
    assert run(ctx, upsert("s000001", "改名", T0 + timedelta(hours=1))).report.outcomes["updated"] == 1
    assert run(ctx, delete("s000002", T0 + timedelta(hours=1))).report.outcomes["deleted"] == 1
    assert run(ctx, upsert("new-1", "新人", T0 + timedelta(hours=1))).report.outcomes["created"] == 1
    assert len(journal_keys(store)) == 6  # an intent and a write per change

    state = checkout(states, tmp_path)
    try:
        assert state.generation == 1 and len(state.journal_pending) == 6
        assert state.get("s000001") == (record("s000001", "改名")[0], orjson.loads(record("s000001", "改名")[1]))
        assert state.get("s000002") is None and state.get("new-1") is not None and state.count() == 50
        assert state.last_changes(["s000002"]) == {"s000002": "2030-01-01T01:00:00.000000Z"}  # the tombstone
    finally:
        state.close()

    assert states.commit(lambda state: None, run_id="export-2") == 2
    assert journal_keys(store) == []  # folded into generation 2, then removed
    state = checkout(states, tmp_path, "after")
    try:
        assert state.journal_pending == [] and state.get("s000001") is not None and state.count() == 50
        assert {uid: row.hw for uid, row in state.rows(["s000001", "s000002", "new-1"]).items()} == {
            "s000001": 2,
            "s000002": 2,
            "new-1": 2,
        }
    finally:
        state.close()
    # The next change of a user takes the number after the generation's mark: no number is ever used twice.
    run(ctx, upsert("s000001", "又改", T0 + timedelta(hours=2)))
    assert [k.rsplit("/", 1)[-1] for k in journal_keys(store) if "/" in k] == ["000000000003.json", "000000000004.json"]


def test_an_entry_left_behind_by_a_commit_is_skipped_and_removed_later(cvc: InProcessCvc, tmp_path: Path) -> None:
    store = MemoryObjectStore()
    states = seed(store, 10)
    ctx = context(store, cvc)
    run(ctx, upsert("s000001", "改名", T0 + timedelta(hours=1)))
    left = {key: store.get_bytes(BUCKET, key) for key in journal_keys(store)}
    states.commit(lambda state: None, run_id="export-2")
    for key, body in left.items():  # as if the commit had died before removing what it folded
        store.put_bytes(BUCKET, key, body or b"")
    state = checkout(states, tmp_path)
    try:
        assert state.journal_pending == [] and sorted(state.journal_done) == sorted(left)
    finally:
        state.close()
    states.commit(lambda state: None, run_id="export-3")
    assert journal_keys(store) == []


# -- writers at once ---------------------------------------------------------------------------------------------


def session(states: StateStore, tmp_path: Path, name: str) -> ChangeSession:
    workdir = tmp_path / name
    workdir.mkdir()
    return ChangeSession(states, workdir, run_id=name)


def write(uid: str, name: str, at: datetime) -> Write:
    digest, body = record(uid, name)
    return Write(uid, at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), UPSERT, digest, body)


def test_writers_of_different_users_never_meet(tmp_path: Path) -> None:
    store = CountingStore()
    states = seed(store, 20)
    one, two = session(states, tmp_path, "one"), session(states, tmp_path, "two")
    one.checkout(["s000001"], {}).close()
    two.checkout(["s000002"], {}).close()
    one.mark_in_flight("one", [("s000001", None)])
    two.mark_in_flight("two", [("s000002", None)])
    created_before = store.calls["put"]
    two.commit([write("s000002", "乙", T0 + timedelta(hours=1))], None)
    one.commit([write("s000001", "甲", T0 + timedelta(hours=1))], None)
    # Each wrote exactly its entry (and the manifest): no number was taken twice, nothing was read again.
    assert store.calls["put"] - created_before == 4
    assert one.entries == two.entries == 2


@pytest.mark.parametrize("older_commits_first", [True, False])
def test_writers_of_one_user_resolve_by_event_time_never_by_who_wrote_last(
    tmp_path: Path, older_commits_first: bool
) -> None:
    """Two runs planned the same user at once and both wrote CVC, in an order nobody knows. Whichever commits
    last takes the next number, and its replay says what the old design's second commit said: the user is
    uncertain, holding the newer change, and a repair applies the newer change again."""
    store = MemoryObjectStore()
    states = seed(store, 5)
    older, newer = session(states, tmp_path, "older"), session(states, tmp_path, "newer")
    for run_ in (older, newer):
        run_.checkout(["s000001"], {}).close()
        run_.mark_in_flight(run_.run_id, [("s000001", None)])
    old_write = write("s000001", "旧", T0 + timedelta(hours=1))
    new_write = write("s000001", "新", T0 + timedelta(hours=2))
    first, second = (older, old_write), (newer, new_write)
    if not older_commits_first:
        first, second = second, first
    _, first_repairs = first[0].commit([first[1]], None)
    _, second_repairs = second[0].commit([second[1]], None)
    assert first_repairs == []
    [repair] = second_repairs
    assert (repair.op, repair.at, repair.record) == (UPSERT, new_write.at, orjson.loads(new_write.record or ""))
    state = checkout(states, tmp_path)
    try:
        digest, held = state.get("s000001") or ("?", {})
        assert digest == UNCERTAIN and held["userName"] == "新"
        assert state.last_changes(["s000001"]) == {"s000001": new_write.at}
    finally:
        state.close()


def test_an_entry_that_landed_on_a_number_a_generation_had_folded_is_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A slow writer read the user on generation 1 (entry 1 pending). Another writer then wrote entry 2, and a
    commit folded both into generation 2 and removed them. The slow writer, which knows only of entry 1, takes
    number 2 and finds it free: a dead entry every reader skips (under generation 2's mark, and not one it
    folded). The writer finds out (a generation was published after its read) and writes it again past the mark;
    its change raced with entry 2, which it never saw, and is repaired as the rule says."""
    store = MemoryObjectStore()
    states = seed(store, 5)
    first = session(states, tmp_path, "first")
    first.checkout(["s000001"], {}).close()
    first.mark_in_flight("first", [("s000001", None)])  # entry 1
    slow = session(states, tmp_path, "slow")
    slow.checkout(["s000001"], {}).close()  # it reads entry 1
    first.commit([write("s000001", "甲", T0 + timedelta(hours=1))], None)  # entry 2
    states.commit(lambda state: None, run_id="export-2")  # folds 1 and 2 into generation 2, then removes them
    assert journal_keys(store) == []
    _, repairs = slow.commit([write("s000001", "乙", T0 + timedelta(hours=2))], None)
    numbers = [key.rsplit("/", 1)[-1] for key in journal_keys(store)]
    assert numbers == ["000000000002.json", "000000000003.json"]  # the dead one, and the one written again
    assert "landed on folded numbers" in caplog.text
    assert [(r.op, r.at) for r in repairs] == [(UPSERT, "2030-01-01T02:00:00.000000Z")]
    state = checkout(states, tmp_path)
    try:
        assert [e.seq for e in state.journal_pending] == [3] and state.journal_done
        digest, held = state.get("s000001") or ("?", {})
        assert digest == UNCERTAIN and held["userName"] == "乙"
        assert state.last_changes(["s000001"]) == {"s000001": "2030-01-01T02:00:00.000000Z"}
    finally:
        state.close()


# -- in flight -------------------------------------------------------------------------------------------------------


def test_a_change_run_killed_after_cvc_leaves_its_user_uncertain_and_in_flight(tmp_path: Path) -> None:
    store = MemoryObjectStore()
    states = seed(store, 5)
    killed = session(states, tmp_path, "killed")
    killed.checkout(["s000001", "brand-new"], {}).close()
    killed.mark_in_flight("killed", [("s000001", None), ("brand-new", '{"userId":"brand-new","userName":"N"}')])
    # ... CVC was called, and the run died before its commit.
    state = checkout(states, tmp_path)
    try:
        assert state.get("s000001") == (UNCERTAIN, orjson.loads(record("s000001", "员工1")[1]))
        assert state.get("brand-new") == (UNCERTAIN, {"userId": "brand-new", "userName": "N"})
        assert state.in_flight_count() == 2
    finally:
        state.close()
    # A compaction settles no run: the marks stay in the journal (a heal-state keeps those users uncertain) ...
    states.compact()
    assert len(journal_keys(store)) == 2
    state = checkout(states, tmp_path, "after-compaction")
    try:
        assert state.in_flight_count() == 2 and state.generation == 2
    finally:
        state.close()
    # ... and a run's commit settles them, as it settles in-flight lists: uncertain, no longer in flight.
    states.commit(lambda state: None, run_id="export-3")
    assert journal_keys(store) == []
    state = checkout(states, tmp_path, "after-commit")
    try:
        assert state.in_flight_count() == 0 and state.get("s000001")[0] == UNCERTAIN  # type: ignore[index]
    finally:
        state.close()


def test_a_change_handed_back_after_cvc_was_called_is_the_users_latest_intent(
    cvc: InProcessCvc, tmp_path: Path
) -> None:
    """CVC failed for a reason that may pass (here: a 5xx on every call): the change is handed back to be
    retried, but CVC may hold it (an answer lost after the action). The state records its time and its user as
    uncertain holding it; the redelivery, at the same time, is applied (not stale)."""
    store = MemoryObjectStore()
    states = seed(store, 5)
    ctx = context(store, cvc)
    cvc.set_faults(error_rate=1.0, seed=1)
    try:
        first = run(ctx, upsert("s000001", "改", T0 + timedelta(hours=1), "e-1"))
    finally:
        cvc.set_faults()
    assert first.results[0].outcome == "retried"
    state = checkout(states, tmp_path)
    try:
        assert state.get("s000001") == (UNCERTAIN, orjson.loads(record("s000001", "改")[1]))
        assert state.last_changes(["s000001"]) == {"s000001": "2030-01-01T01:00:00.000000Z"}
        assert state.in_flight_count() == 0 and state.seen_events(["e-1"]) == set()
    finally:
        state.close()
    again = run(ctx, upsert("s000001", "改", T0 + timedelta(hours=1), "e-1"))
    assert again.report.outcomes["updated"] == 1
    state = checkout(states, tmp_path, "again")
    try:
        assert state.get("s000001") == (record("s000001", "改")[0], orjson.loads(record("s000001", "改")[1]))
    finally:
        state.close()


def test_a_small_in_flight_list_is_folded_by_a_change_run_unless_its_run_settled_it_first(
    cvc: InProcessCvc, tmp_path: Path
) -> None:
    store = MemoryObjectStore()
    states = seed(store, 5)
    states.mark_in_flight("an-export", iter([("s000003", None)]))
    run(context(store, cvc), upsert("other", "别人", T0 + timedelta(hours=1)))
    assert list(store.list_keys(BUCKET, PREFIX + "in-flight/")) == []  # folded in, as a commit folds it
    state = checkout(states, tmp_path)
    try:
        assert state.get("s000003")[0] == UNCERTAIN and state.in_flight_count() == 0  # type: ignore[index]
    finally:
        state.close()
    # A mark written after the list's own run committed (and settled it) says nothing: it is void.
    states.mark_in_flight("late-export", iter([("s000004", None)]))
    key = states.in_flight_key("late-export")
    states.commit(lambda state: state.upsert([("s000004", *record("s000004", "新"))]), run_id="late-export")
    late = session(states, tmp_path, "late")
    late.checkout(["s000004"], {}).close()
    late._append([Entry("s000004", 0, "uncertain", "late-export", source=key)], late.plan_generation)
    state = checkout(states, tmp_path, "void")
    try:
        assert state.get("s000004") == (record("s000004", "新")[0], orjson.loads(record("s000004", "新")[1]))
    finally:
        state.close()


# -- event ids ------------------------------------------------------------------------------------------------------


def test_a_redelivered_event_is_a_duplicate_before_and_after_its_id_is_folded(cvc: InProcessCvc) -> None:
    store = CountingStore()
    states = seed(store, 5)
    ctx = context(store, cvc)
    assert run(ctx, upsert("n-1", "新", T0 + timedelta(hours=1), "evt-1")).report.outcomes["created"] == 1
    assert list(store.list_keys(BUCKET, PREFIX + "events/")) == []  # it rides on its user's entry
    assert run(ctx, upsert("n-1", "新", T0 + timedelta(hours=1), "evt-1")).report.outcomes["duplicate"] == 1
    states.compact()  # folded into the generation's events (and its index)
    assert run(ctx, upsert("n-1", "新", T0 + timedelta(hours=1), "evt-1")).report.outcomes["duplicate"] == 1
    # A stale change's event id is settled too, and one its user's newer change hides is looked up in the index.
    assert run(ctx, upsert("n-1", "旧", T0, "evt-0")).report.outcomes["stale"] == 1
    assert run(ctx, upsert("n-1", "旧", T0, "evt-0")).report.outcomes["duplicate"] == 1
    store.reset()
    # A change newer than its user's last one cannot have been applied: its event id is not looked up at all.
    assert run(ctx, upsert("n-1", "更新", T0 + timedelta(hours=2), "evt-2")).report.outcomes["updated"] == 1
    assert store.calls["range"] == 1  # the user's row: its block (the offset table was read before); no event lookup


def test_an_event_id_of_no_user_of_the_run_gets_a_marker(cvc: InProcessCvc) -> None:
    store = MemoryObjectStore()
    seed(store, 5)
    ctx = context(store, cvc)

    def also(state: ShadowState) -> None:  # as the redrive records its letters' event ids
        state.record_events(["letter-evt"], now="2030-01-01T00:00:00.000000Z", forget_before="2029")

    batch = ChangeBatch(
        writer="redrive", source={}, entries=[upsert("n-2", "新", T0 + timedelta(hours=1))], on_commit=also
    )
    run_changes(batch, ctx)
    assert len(list(store.list_keys(BUCKET, PREFIX + "events/"))) == 1
    # Its redelivery names a user whose last change is not older than it: the marker is found.
    assert run(ctx, upsert("n-2", "新", T0 + timedelta(hours=1), "letter-evt")).report.outcomes["duplicate"] == 1


# -- the journal kept small ----------------------------------------------------------------------------------------


def test_a_long_journal_is_folded_into_a_generation_by_the_next_checkout(cvc: InProcessCvc, tmp_path: Path) -> None:
    store = MemoryObjectStore()
    states = seed(store, 5)
    ctx = context(store, cvc)
    runs = [run(ctx, upsert(f"n-{i}", "新", T0 + timedelta(hours=1))) for i in range(4)]
    states.compact_pending = 6
    state = states.checkout(tmp_path)
    try:
        assert state.generation == 2 and state.journal_pending == [] and state.count() == 9
    finally:
        state.close()
    assert journal_keys(store) == []
    manifest = orjson.loads(store.get_bytes(BUCKET, PREFIX + "manifest.json") or b"{}")
    # Counts are exact again, and the newest commit named is the last run's, not the compaction's (the heartbeat).
    assert manifest["users"] == 9 and manifest["runId"] == runs[-1].report.run_id


@pytest.mark.parametrize(("users", "inline"), [(50, True), (20_001, False)])
def test_a_process_compacts_its_own_entries_only_while_a_compaction_is_cheap(
    cvc: InProcessCvc, users: int, inline: bool
) -> None:
    """Past ``INLINE_COMPACT_KEYS`` no change run pays for a whole generation: the scheduled redrive compacts."""
    from cvcsync.engine import views

    store = MemoryObjectStore()
    states = seed(store, users)
    ctx = context(store, cvc)
    ctx.state.compact_pending = 4
    views._appended.clear()  # this process's count so far (other tests')
    for i in range(3):  # six entries: past the limit of four
        run(ctx, upsert(f"n-{i}", "新", T0 + timedelta(hours=1)))
    assert (ctx.state.latest_generation() == 2) is inline and (journal_keys(store) == []) is inline
    assert states.latest_generation() == (2 if inline else 1)


def test_the_manifest_names_the_newest_commit_and_moves_its_counts(cvc: InProcessCvc) -> None:
    store = MemoryObjectStore()
    seed(store, 5)
    ctx = context(store, cvc)
    changed = run(ctx, upsert("n-1", "新", T0 + timedelta(hours=1)), delete("s000001", T0 + timedelta(hours=1)))
    manifest = orjson.loads(store.get_bytes(BUCKET, PREFIX + "manifest.json") or b"{}")
    assert manifest["runId"] == changed.report.run_id and manifest["generation"] == 1
    assert (manifest["users"], manifest["uncertain"]) == (5, 0)  # one created, one deleted


def test_a_generation_of_the_old_format_is_written_again_with_its_index_once(cvc: InProcessCvc, tmp_path: Path) -> None:
    store = MemoryObjectStore()
    old = ShadowState(tmp_path / "old.sqlite")
    old.upsert([("s000001", *record("s000001", "老"))])
    old.record_changes([("s000001", T0.isoformat(), "upsert")])
    old.close()
    store.put_bytes(BUCKET, PREFIX + "gen-00000001.sqlite.gz", gzip.compress((tmp_path / "old.sqlite").read_bytes()))
    store.put_bytes(BUCKET, PREFIX + "manifest.json", orjson.dumps({"generation": 1}))
    ctx = context(store, cvc)
    assert run(ctx, upsert("s000001", "老", T0 + timedelta(hours=1))).report.outcomes["unchanged"] == 1
    assert (store.get_bytes(BUCKET, PREFIX + "gen-00000002.sqlite.gz") or b"")[:8] == b"CVCSTATE"
    assert run(ctx, upsert("s000001", "新", T0 + timedelta(hours=2))).report.outcomes["updated"] == 1
    assert store.head(BUCKET, PREFIX + "gen-00000003.sqlite.gz") is None  # once


# -- the batch path's races with the journal -----------------------------------------------------------------------


def test_an_entry_committed_while_a_generation_was_written_is_repaired_by_that_commit(tmp_path: Path) -> None:
    """An export writes a user while a change of that user, planned before the export's generation, commits
    after the export's checkout read the journal: neither saw the other. The export's commit finds it once its
    generation is published, and repairs the race (the newer change is applied again)."""
    store = MemoryObjectStore()
    states = seed(store, 5)
    change = session(states, tmp_path, "change")
    change.checkout(["s000001"], {}).close()
    change.mark_in_flight("change", [("s000001", None)])
    late: list[Any] = []
    newer = write("s000001", "队列", T0 + timedelta(hours=3))

    def export(state: ShadowState) -> None:
        state.upsert([("s000001", *record("s000001", "导出"))])
        state.record_changes([("s000001", "2030-01-01T02:00:00.000000Z", "upsert")])
        change.commit([newer], None)  # committed after this checkout read the journal

    states.commit(export, run_id="export-2", late_repairs=late)
    assert [(r.user_id, r.op, r.at) for r in late] == [("s000001", UPSERT, newer.at)]
    state = checkout(states, tmp_path)
    try:
        assert state.get("s000001")[0] == UNCERTAIN  # type: ignore[index]
    finally:
        state.close()


# -- the pieces -----------------------------------------------------------------------------------------------------


def test_an_entry_round_trips() -> None:
    entry = Entry(
        "u-1",
        7,
        WRITE,
        "run-1",
        writes=(Write("u-1", "2030-01-01T00:00:00.000000Z", DELETE, changed=True, landed=False),),
        seen=Seen(3, 6),
        generation=3,
        row=UserRow("u-1", occurred_at="2030-01-01T00:00:00.000000Z", op="delete", generation=4, entry_seq=7, hw=5),
        written_at="2030-01-01T00:00:01.000000Z",
    )
    assert Entry.from_bytes(entry.to_bytes()) == entry
    intent = Entry("u-2", 1, INTENT, "run-2", record='{"userId":"u-2"}', written_at="x")
    assert Entry.from_bytes(intent.to_bytes()) == intent


def test_seen_tells_a_change_committed_behind_a_writers_back() -> None:
    seen = Seen(generation=4, seq=2)
    assert not seen.behind(None)
    assert seen.behind((5, None)) and not seen.behind((4, None))  # a generation's own commit
    assert seen.behind((9, 3)) and not seen.behind((9, 2))  # a journal entry, whatever generation folded it


def test_the_index_answers_what_the_snapshot_holds(tmp_path: Path) -> None:
    store = MemoryObjectStore()
    states = seed(store, 300)

    def more(state: ShadowState) -> None:
        state.record_events([f"evt-{i}" for i in range(40)], now="2030-01-01T00:00:00.000000Z", forget_before="2029")
        state.mark_uncertain([("s000007", None)])
        state.record_changes([("gone", "2030-01-01T00:00:00.000000Z", "delete")])

    states.commit(more, run_id="more")
    reader = states.reader(2)
    header = reader.header()
    assert header is not None and header.keys == 301 + 40 and header.buckets >= 5
    found = reader.lookup(["u:s000007", "u:gone", "u:absent", "e:evt-3", "e:nope"], header)
    assert UserRow.from_json("s000007", found["u:s000007"]).hash == UNCERTAIN
    assert UserRow.from_json("gone", found["u:gone"]).op == "delete" and "u:absent" not in found
    assert found["e:evt-3"] == "2030-01-01T00:00:00.000000Z" and "e:nope" not in found
    state = checkout(states, tmp_path)
    try:
        for uid, row in state.rows([f"s{i:06d}" for i in range(0, 300, 7)]).items():
            assert UserRow.from_json(uid, reader.lookup([f"u:{uid}"], header)[f"u:{uid}"]) == row
    finally:
        state.close()


@pytest.mark.parametrize("kept", [True, False])
def test_a_generations_offset_table_is_read_once_then_each_lookup_reads_its_block(
    monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    """Generations never change: the offset table read whole on the first lookup (one GET, as its 16 bytes were)
    serves every later one. Past ``TABLE_KEPT_BUCKETS`` each lookup reads its 16 bytes as before."""
    from cvcsync.engine import generation

    store = CountingStore()
    states = seed(store, 300)
    if not kept:
        monkeypatch.setattr(generation, "TABLE_KEPT_BUCKETS", 2)
    reader = states.reader(1)
    header = reader.header()
    assert header is not None and header.buckets > 2
    users = [f"s{i:06d}" for i in range(0, 300, 37)]
    assert len(reader.buckets([f"u:{u}" for u in users], header)) > 1
    store.reset()
    for uid in users:
        assert reader.lookup([f"u:{uid}"], header)[f"u:{uid}"]["h"] == record(uid, f"员工{int(uid[1:])}")[0]
    blocks = len(users)
    assert store.calls["range"] == (blocks + 1 if kept else 2 * blocks)


def test_one_user_is_read_without_the_snapshot(cvc: InProcessCvc, tmp_path: Path) -> None:
    store = CountingStore()
    states = seed(store, 2000)
    run(context(store, cvc), upsert("s000009", "新名", T0 + timedelta(hours=1)))
    store.reset()
    rows = read_users(states, ["s000009", "s000010", "nobody"], tmp_path)
    assert rows["s000009"].record == record("s000009", "新名")[1] and rows["s000009"].hw == 0
    assert rows["s000010"].hash == record("s000010", "员工10")[0] and "nobody" not in rows
    assert store.whole_reads == [] and store.bytes_in < 20_000


@pytest.mark.parametrize("named", [5, 1])
def test_a_first_read_trusts_the_manifest_and_still_ends_on_the_newest_generation(tmp_path: Path, named: int) -> None:
    """A container's first read starts from the manifest's generation without checking it (two HEADs fewer); the
    HEAD after the read proves it the newest. A manifest that names a generation that is not there (5), or one
    behind the newest (1, when 2 exists), still ends on generation 2."""
    store = MemoryObjectStore()
    states = seed(store, 3)
    renamed = record("s000001", "改名")
    states.commit(lambda state: state.upsert([("s000001", *renamed)]), run_id="second")
    manifest = states.read_manifest()
    assert manifest["generation"] == 2
    assert states.put_manifest({**manifest, "generation": named})
    state_module._LATEST.pop(store, None)  # another container: it has seen no generation yet

    rows = read_users(states, ["s000001", "s000002"], tmp_path)
    assert rows["s000001"].hash == renamed[0] and rows["s000002"].hash == record("s000002", "员工2")[0]
    assert states.newest_generation(probe=False) == 2


def test_a_saved_plan_is_refused_once_a_change_run_committed_after_it(cvc: InProcessCvc) -> None:
    """A dry run's plan is applied only on the state it was made on: change runs move the state without a new
    generation, so the plan records which journal entries it saw too (``ShadowState.journal_fingerprint``)."""
    import io

    from cvcsync.engine.state import StateConflict
    from cvcsync.runs.export import apply_saved_plan, sync_source

    store = MemoryObjectStore()
    seed(store, 3)
    ctx = context(store, cvc)
    run(ctx, upsert("j1", "先来", T0 + timedelta(hours=1)))  # a pending entry the dry run folds in and sees

    def dry_run() -> bytes:
        plan = io.BytesIO()
        export = b"userId,userName,groupId,groupName\ns000000,Renamed,88,x\n"
        report = sync_source(
            io.BytesIO(export),
            name="x.csv",
            source={},
            mode="delta",
            ctx=ctx,
            dry_run=True,
            plan_out=plan,
            event_time=T0 + timedelta(hours=3),
        )
        assert report.status == "dry-run"
        return plan.getvalue()

    saved = dry_run()
    assert orjson.loads(saved)["stateJournal"] == ctx.state.journal_fingerprint() != ""
    run(ctx, upsert("j2", "后来", T0 + timedelta(hours=2)))  # committed after the plan: no new generation
    with pytest.raises(StateConflict, match="plan again"):
        apply_saved_plan(io.BytesIO(saved), ctx)
    report = apply_saved_plan(io.BytesIO(dry_run()), ctx)  # planned again: applied
    assert report.outcomes["updated"] == 1
