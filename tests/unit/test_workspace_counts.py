"""The workspace's counts (``engine.workspace``): read from two partial indexes SQLite keeps exact, so that a count
costs the rows that changed rather than the roster, and no path (planning, outcomes, a guard's skips, fan-out
chunks, a saved plan rebuilt, a run reloaded) can leave one stale. Each count is checked against a full scan."""

from __future__ import annotations

import gzip
import io
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.engine.guards import GROUP, GuardFacts, GuardSettings, evaluate
from cvcsync.engine.outcomes import RunReport
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELETE, FULL, OF_NOTE, PlanInput, SyncPlan
from cvcsync.inputs.readers import SourceRow
from cvcsync.inputs.records import parse_user
from cvcsync.runs import lifecycle
from cvcsync.runs.export import sync_source, write_plan_artefact
from support.schedule import world

GROUP_88 = {"groupId": "88", "groupName": "示例科技"}
LATER = "2024-05-01T03:00:00.000000Z"
AS_OF = "2024-05-01T02:00:00.000000Z"


def user(uid: str, name: str = "张三", **extra: str) -> dict[str, str]:
    return {"userId": uid, "userName": name, **GROUP_88, **extra}


def rows(*items: dict[str, Any] | str) -> list[SourceRow]:
    return [
        SourceRow(line, error=item) if isinstance(item, str) else SourceRow(line, dict(item))
        for line, item in enumerate(items, start=2)
    ]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite", generation=3)
    yield shadow
    shadow.close()


def remember(state: ShadowState, *users: dict[str, str]) -> None:
    parsed = [parse_user(u) for u in users]
    state.upsert([(u.user_id, u.content_hash(), u.to_json().decode()) for u in parsed])


def scanned(plan: SyncPlan, query: str, *args: Any) -> list[Any]:
    """A query read by a scan of every row (``NOT INDEXED``): what the counts were before, and the truth here."""
    return plan.db.execute(query.replace("FROM rows", "FROM rows NOT INDEXED"), args).fetchall()


def assert_exact(plan: SyncPlan) -> None:
    """Every count the plan answers equals the same count read by a full scan."""
    ops = dict(scanned(plan, "SELECT op, COUNT(*) FROM rows GROUP BY op"))
    assert {k: v for k, v in plan.op_counts().items() if v} == ops
    outcomes = dict(scanned(plan, "SELECT outcome, COUNT(*) FROM rows WHERE outcome IS NOT NULL GROUP BY 1"))
    assert {k: v for k, v in plan.outcome_counts().items() if v} == outcomes
    [(read,)] = scanned(plan, "SELECT COUNT(*) FROM rows WHERE kind != 'implied'")
    [(implied,)] = scanned(plan, "SELECT COUNT(*) FROM rows WHERE kind = 'implied'")
    [(valid,)] = scanned(plan, "SELECT COUNT(*) FROM rows WHERE op IN ('create', 'update', 'unchanged')")
    [(pending,)] = scanned(plan, "SELECT COUNT(*) FROM rows WHERE outcome IS NULL")
    [(problems,)] = scanned(plan, "SELECT COUNT(*) FROM rows WHERE outcome IN ('rejected', 'deadLettered')")
    assert (plan.rows_read(), plan.implied_deletions(), plan.valid_users()) == (read, implied, valid)
    assert (plan.pending_count(), plan.problem_count()) == (pending, problems)
    for chunk, n in scanned(plan, "SELECT chunk, COUNT(*) FROM rows WHERE outcome IS NULL GROUP BY chunk"):
        assert chunk is None or plan.pending_count(chunk) == n
    lines = scanned(plan, "SELECT line FROM rows WHERE outcome IN ('rejected', 'deadLettered') ORDER BY seq")
    assert [p.line for p in plan.problems()] == [line for (line,) in lines]
    upserts, deletes = plan.changes_for_state()
    expected = scanned(
        plan, "SELECT user_id, hash, record FROM rows WHERE outcome IN ('created', 'updated') ORDER BY seq"
    )
    assert list(upserts) == expected
    assert sorted(deletes) == sorted(
        uid for (uid,) in scanned(plan, "SELECT user_id FROM rows WHERE outcome = 'deleted'")
    )


def every_kind_of_row(state: ShadowState, tmp_path: Path) -> SyncPlan:
    """A full snapshot with one row of each kind: unchanged, update, create, duplicate, conflict, invalid, unreadable,
    departed (synced: a delete; never synced: an absence), stale, and an implied deletion."""
    remember(state, user("same"), user("moved", departName="研发部"), user("left"), user("gone"), user("late"))
    remember(state, user("twice", departName="研发部"), user("E001", "甲"))
    state.record_changes([("late", LATER, "upsert")])
    items = rows(
        user("same"),
        user("moved", departName="财务部"),
        user("new"),
        user("twice", departName="财务部"),
        user("twice", departName="行政部"),
        user("E001", "甲"),
        user("E001", "乙"),
        {"userId": "bad", "userName": ""},
        "has 1 cells but the header has 2",
        {**user("left"), "状态": "离职"},
        {**user("never"), "状态": "离职"},
        user("late", departName="财务部"),
    )
    return build_plan(PlanInput(items, FULL, source={"key": "users.csv"}, as_of=AS_OF), state, tmp_path)


def test_every_count_is_exact_after_planning(state: ShadowState, tmp_path: Path) -> None:
    plan = every_kind_of_row(state, tmp_path)
    ops = {op["userId"]: op["op"] for op in plan.operations() if op.get("userId")}
    assert ops == {
        "same": "unchanged",
        "moved": "update",
        "new": "create",
        "twice": "update",
        "E001": "reject",
        "bad": "reject",
        "left": "delete",
        "never": "absent",
        "late": "stale",
        "gone": "delete",
    }
    assert_exact(plan)
    # A duplicate or a refused row keeps no ``old``, though both rows of "twice" and one of "E001" went in as updates.
    assert scanned(plan, "SELECT user_id FROM rows WHERE old IS NOT NULL AND op IN ('duplicate', 'reject')") == []


def test_counts_stay_exact_as_outcomes_are_recorded_skipped_and_chunked(state: ShadowState, tmp_path: Path) -> None:
    plan = every_kind_of_row(state, tmp_path)
    writes = {uid: seq for seq, uid, _ in (*plan.pending("create"), *plan.pending("update"))}
    error = orjson.dumps({"code": "InvalidParameter", "message": "refused"}).decode()
    plan.record_outcomes([(writes["new"], "created", None), (writes["moved"], "deadLettered", error)])
    assert_exact(plan)
    assert plan.outcome_counts()["deadLettered"] == 1 and plan.problem_count() == 5
    assert plan.skip_pending([DELETE]) == 2
    assert_exact(plan)
    assert plan.assign_chunks(1) == 1  # "twice" is the one write left
    [(seq, uid, _)] = plan.pending("update", chunk=0)
    assert uid == "twice" and plan.pending_count(0) == 1
    plan.record_outcomes([(seq, "created", None)])
    assert_exact(plan)
    assert plan.pending_count() == plan.pending_count(0) == 0


def test_a_copied_workspace_and_a_saved_plan_rebuilt_count_the_same(state: ShadowState, tmp_path: Path) -> None:
    plan = every_kind_of_row(state, tmp_path)
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(plan.path, copy)
    resumed = SyncPlan(copy)
    assert_exact(resumed)
    assert resumed.op_counts() == plan.op_counts() and resumed.outcome_counts() == plan.outcome_counts()
    artefact = io.BytesIO()
    report = RunReport(run_id=plan.plan_id, mode=plan.mode, source=plan.source, started_at="2024-05-01T02:00:00Z")
    write_plan_artefact(plan, report, artefact)
    (tmp_path / "saved").mkdir()
    rebuilt = SyncPlan.from_artefact(orjson.loads(artefact.getvalue()), tmp_path / "saved")
    assert_exact(rebuilt)
    assert rebuilt.op_counts() == plan.op_counts() and rebuilt.pending_count() == plan.pending_count()


def test_a_run_saved_without_the_indexes_counts_exactly_and_gets_them_when_loaded(
    state: ShadowState, tmp_path: Path
) -> None:
    plan = every_kind_of_row(state, tmp_path)
    plan.db.executescript("DROP INDEX rows_of_note; DROP INDEX rows_pending;")
    assert_exact(plan)  # slower (a scan each), never wrong
    plan.close()
    w = world()
    ctx = w.ctx.sync
    ctx.store.put_bytes(
        ctx.output_bucket, lifecycle.run_key(ctx, "r1", "plan.sqlite.gz"), gzip.compress(plan.path.read_bytes())
    )
    ctx.put_json(lifecycle.run_key(ctx, "r1", "run.json"), RunReport(run_id="r1", mode=FULL).to_dict())
    (tmp_path / "loaded").mkdir()
    loaded, _ = lifecycle.load_run(ctx, "r1", tmp_path / "loaded")
    names = {name for (name,) in loaded.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"rows_of_note", "rows_pending"} <= names
    assert_exact(loaded)


def test_an_unchanged_roster_leaves_both_indexes_empty_and_the_counts_read_them(
    state: ShadowState, tmp_path: Path
) -> None:
    roster = [user(f"u{i:03d}") for i in range(300)]
    remember(state, *roster)
    plan = build_plan(PlanInput(rows(*roster), FULL), state, tmp_path)
    # INDEXED BY fails where the index cannot answer the query: this pins both the index and its use.
    assert plan.db.execute(f"SELECT COUNT(*) FROM rows INDEXED BY rows_of_note WHERE {OF_NOTE}").fetchone() == (0,)
    assert plan.db.execute("SELECT COUNT(*) FROM rows INDEXED BY rows_pending WHERE outcome IS NULL").fetchone() == (0,)
    tally = " ".join(r[3] for r in plan.db.execute(f"EXPLAIN QUERY PLAN SELECT op FROM rows WHERE {OF_NOTE}"))
    assert "rows_of_note" in tally
    apply_query = "SELECT seq FROM rows WHERE outcome IS NULL AND op IN ('create', 'update') AND seq > ? ORDER BY seq"
    assert "rows_pending" in " ".join(r[3] for r in plan.db.execute("EXPLAIN QUERY PLAN " + apply_query, (0,)))
    assert plan.op_counts()["unchanged"] == plan.valid_users() == plan.rows_read() == 300
    assert plan.implied_deletions() == plan.pending_count() == plan.problem_count() == 0
    assert_exact(plan)


def test_rows_go_in_in_input_order_whether_compared_as_they_go_in_or_later(state: ShadowState, tmp_path: Path) -> None:
    """Plain rows are compared with the state as they are inserted, the others by ``decide``: the order is the
    file's all the same (the artefact, apply and the problems files read in ``seq`` order)."""
    remember(state, user("a"), user("b", departName="研发部"))
    items = rows(user("c"), user("a"), {"userId": "x", "userName": ""}, user("b", departName="财务部"), user("d"))
    plan = build_plan(PlanInput(items, FULL), state, tmp_path)
    listed = [(op.get("line"), op["userId"], op["op"]) for op in plan.operations()]
    assert listed == [
        (2, "c", "create"),
        (3, "a", "unchanged"),
        (4, "x", "reject"),
        (5, "b", "update"),
        (6, "d", "create"),
    ]
    [update] = [op for op in plan.operations() if op["op"] == "update"]
    assert update["old"]["departName"] == "研发部" and update["changed"] == ["departName"]


def test_implied_deletions_are_found_unless_every_synced_user_is_named_unchanged(
    state: ShadowState, tmp_path: Path
) -> None:
    remember(state, user("a"), user("b"))
    named = build_plan(PlanInput(rows(user("a"), user("b"), user("c")), FULL), state, tmp_path)
    assert named.implied_deletions() == 0 and named.op_counts()["create"] == 1
    (tmp_path / "dup").mkdir()
    twice = build_plan(PlanInput(rows(user("a"), user("a")), FULL), state, tmp_path / "dup")  # one user, two rows
    assert [op["userId"] for op in twice.operations() if op["op"] == "delete"] == ["b"]
    assert_exact(twice)


def test_a_newer_snapshot_makes_every_write_stale_and_a_newer_change_only_its_user(
    state: ShadowState, tmp_path: Path
) -> None:
    remember(state, user("a"), user("b", departName="研发部"), user("c"))
    items = rows(user("a"), user("b", departName="财务部"), user("c", departName="财务部"), user("n"))
    state.record_changes([("c", LATER, "upsert")])
    plan = build_plan(PlanInput(items, FULL, as_of=AS_OF), state, tmp_path)
    assert {op["userId"]: op["op"] for op in plan.operations()} == {
        "a": "unchanged",
        "b": "update",
        "c": "stale",
        "n": "create",
    }
    state.set_meta("snapshot_at", LATER)
    (tmp_path / "later").mkdir()
    older = build_plan(PlanInput(items, FULL, as_of=AS_OF), state, tmp_path / "later")
    assert {op["userId"]: op["op"] for op in older.operations()} == {
        "a": "unchanged",
        "b": "stale",
        "c": "stale",
        "n": "stale",
    }
    assert_exact(older)


def test_the_group_gate_passes_unread_when_no_user_is_created_or_updated() -> None:
    facts = GuardFacts(
        mode=FULL, deletes=0, creates=0, valid_users=5, state_users=5, last_snapshot_users=5, only_unchanged=True
    )
    [group] = [r for r in evaluate(facts, GuardSettings()) if r.name == GROUP]
    assert group.passed and "no user is created or updated" in group.detail


def test_an_unchanged_re_upload_writes_nothing_and_reads_no_group() -> None:
    w = world()
    export = "userId,userName,groupId,groupName\n" + "".join(f"u{i},用户{i},88,示例科技\n" for i in range(50))

    def upload() -> RunReport:
        stream = io.BytesIO(export.encode())
        return sync_source(stream, name="users.csv", source={"key": "users.csv"}, mode=FULL, ctx=w.ctx.sync)

    first = upload()
    assert first.outcomes["created"] == 50
    [gate] = [g for g in first.guards if g.name == GROUP]
    assert "nothing to compare" in gate.detail  # a first sync: read, and nothing to compare
    w.ctx.sync.calls_baseline = Counter(w.cvc.client.calls)
    again = upload()
    assert {k: v for k, v in again.outcomes.items() if v} == {"unchanged": 50}
    assert again.status == "applied" and again.dead_letters == 0 and again.problem_count == 0
    assert again.state.get("metaOnly") is True and "inFlight" not in again.state
    assert not set(again.calls) - {"GetAccountInfo"}
    [gate] = [g for g in again.guards if g.name == GROUP]
    assert gate.passed and "no user is created or updated" in gate.detail
    assert {k: v for k, v in again.planned.items() if v} == {"unchanged": 50} and again.implied_deletions == 0
