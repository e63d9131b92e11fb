"""The planner: one named test per rule (see the rules in cvcsync.engine.plan)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.engine.outcomes import RunReport, check_accounting
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, FULL, PlanInput, SyncPlan
from cvcsync.inputs import columns
from cvcsync.inputs.readers import SourceRow, read_records
from cvcsync.inputs.records import parse_user
from cvcsync.runs.export import sync_source
from support.exports import export_path
from support.schedule import World, world

GROUP = {"groupId": "88", "groupName": "示例科技"}


def user(uid: str, name: str = "张三", **extra: str) -> dict[str, str]:
    return {"userId": uid, "userName": name, **GROUP, **extra}


def rows(*items: dict[str, Any] | str) -> list[SourceRow]:
    out = []
    for line, item in enumerate(items, start=2):
        out.append(SourceRow(line, error=item) if isinstance(item, str) else SourceRow(line, dict(item)))
    return out


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite", generation=3)
    yield shadow
    shadow.close()


def remember(state: ShadowState, *users: dict[str, str]) -> None:
    parsed = [parse_user(u) for u in users]
    state.upsert([(u.user_id, u.content_hash(), u.to_json().decode()) for u in parsed])


def plan_of(state: ShadowState, tmp_path: Path, items: list[SourceRow], mode: str = FULL) -> SyncPlan:
    return build_plan(PlanInput(items, mode, source={"key": "users.csv"}), state, tmp_path)


def ops(plan: SyncPlan) -> dict[str, str]:
    return {op["userId"]: op["op"] for op in plan.operations() if op.get("userId")}


def test_new_users_are_created(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_of(state, tmp_path, rows(user("a"), user("b")))
    assert ops(plan) == {"a": "create", "b": "create"}
    assert plan.state_generation == 3


def test_unchanged_users_cost_nothing(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"))
    plan = plan_of(state, tmp_path, rows(user("a")))
    assert ops(plan) == {"a": "unchanged"}
    assert plan.pending_count() == 0


def test_changed_users_are_updates_with_old_and_new(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a", departName="研发部"))
    plan = plan_of(state, tmp_path, rows(user("a", departName="财务部")))
    [operation] = list(plan.operations())
    assert operation["op"] == "update"
    assert operation["old"]["departName"] == "研发部" and operation["new"]["departName"] == "财务部"
    assert operation["changed"] == ["departName"]


def test_full_snapshot_deletes_users_absent_from_it(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"), user("gone"))
    plan = plan_of(state, tmp_path, rows(user("a")))
    assert ops(plan) == {"a": "unchanged", "gone": "delete"}
    assert plan.implied_deletions() == 1 and plan.rows_read() == 1


def test_delta_file_never_implies_deletions(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"), user("b"))
    plan = plan_of(state, tmp_path, rows(user("c")), mode=DELTA)
    assert ops(plan) == {"c": "create"}


def test_delta_delete_rows_are_planned_even_for_users_the_state_never_saw(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"))
    plan = plan_of(state, tmp_path, rows({"userId": "a", "op": "delete"}, {"userId": "x", "op": "delete"}), DELTA)
    assert ops(plan) == {"a": "delete", "x": "delete"}
    old = {op["userId"]: op.get("old") for op in plan.operations()}
    assert old["a"]["userName"] == "张三" and old["x"] is None


def test_a_full_snapshots_departed_row_deletes_a_synced_user_and_is_an_absence_for_one_never_synced(
    state: ShadowState, tmp_path: Path
) -> None:
    """Issue 12: a departed row in a full snapshot is an absence. The synced leaver is deleted (a planned delete the
    gates count); the one the state never held needs nothing, so a roster that keeps its leavers plans no write."""
    remember(state, user("a"), user("left"))
    departed = [{**user(uid), "状态": "离职"} for uid in ("left", "never")]
    plan = plan_of(state, tmp_path, rows(user("a"), *departed))
    assert ops(plan) == {"a": "unchanged", "left": "delete", "never": "absent"}
    assert plan.op_counts()["delete"] == 1 and plan.pending_count() == 1
    assert plan.outcome_counts()["unchanged"] == 2 and plan.valid_users() == 1
    (tmp_path / "delta").mkdir()
    delta = plan_of(state, tmp_path / "delta", rows(*departed), mode=DELTA)
    assert ops(delta) == {"left": "delete", "never": "delete"}  # a delta's delete is an instruction


def test_invalid_rows_are_rejected_with_line_field_and_reason(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_of(
        state, tmp_path, rows(user("a"), {"userId": "b", "userName": ""}, "has 1 cells but the header has 2")
    )
    problems = list(plan.problems())
    assert [(p.line, p.code) for p in problems] == [(3, "InvalidRecord"), (4, "UnreadableRecord")]
    assert "line 3: user 'b': userName: is required and empty" in problems[0].message
    assert ops(plan)["a"] == "create"


def test_a_rejected_row_protects_its_user_from_deletion(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"), user("b"))
    plan = plan_of(state, tmp_path, rows(user("a"), {"userId": "b", "userName": "李四", "userEmail": "bad"}))
    assert "b" not in {op["userId"] for op in plan.operations() if op["op"] == "delete"}


def test_duplicates_of_one_person_last_row_wins_and_earlier_ones_are_duplicates(
    state: ShadowState, tmp_path: Path
) -> None:
    items = rows(
        user("a", departName="研发部"), user("b"), user("a", departName="财务部"), user("a", departName="行政部")
    )
    plan = plan_of(state, tmp_path, items)
    operations = list(plan.operations())
    assert [(op["userId"], op["op"], op.get("outcome")) for op in operations] == [
        ("a", "duplicate", "duplicate"),
        ("b", "create", None),
        ("a", "duplicate", "duplicate"),
        ("a", "create", None),
    ]
    assert operations[3]["new"]["departName"] == "行政部"
    assert operations[0]["notice"]["message"] == "line 2: user 'a' appears again on line 5, which wins"
    assert list(plan.problems()) == [] and plan.problem_count() == 0  # a notice, not a problem
    assert plan.notices["first"][-2:] == [
        "line 2: user 'a' appears again on line 5, which wins",
        "line 4: user 'a' appears again on line 5, which wins",
    ]
    assert [uid for _, uid, _ in plan.pending("create")] == ["b", "a"]  # a duplicate is never sent
    assert plan.op_counts()["duplicate"] == plan.outcome_counts()["duplicate"] == 2
    assert plan.outcome_counts()["rejected"] == 0


def test_a_delete_and_an_upsert_of_one_user_are_duplicates_not_a_conflict(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"), user("b"))
    items = rows(user("a"), {"userId": "a", "op": "delete"}, {"userId": "b", "op": "delete"}, user("b", "张三"))
    plan = plan_of(state, tmp_path, items, mode=DELTA)
    assert [(op["userId"], op["op"]) for op in plan.operations()] == [
        ("a", "duplicate"),
        ("a", "delete"),
        ("b", "duplicate"),
        ("b", "unchanged"),
    ]
    assert plan.problem_count() == 0


def test_a_user_id_shared_by_two_people_is_refused_on_every_line(state: ShadowState, tmp_path: Path) -> None:
    items = rows(user("b"), user("E001", "张三"), user("c"), user("d"), user("e"), user("E001", "李四"))
    plan = plan_of(state, tmp_path, items)
    problems = list(plan.problems())
    assert [(p.line, p.user_id, p.code) for p in problems] == [
        (3, "E001", "ConflictingUserId"),
        (7, "E001", "ConflictingUserId"),
    ]
    assert problems[1].message == (
        "line 7: two people share user id 'E001' (lines 3, 7: '张三', '李四'): fix the export; neither is synced"
    )
    assert problems[0].message.startswith("line 3: two people share user id 'E001' (lines 3, 7: ")
    assert ops(plan) == {"b": "create", "c": "create", "d": "create", "e": "create", "E001": "reject"}
    assert plan.op_counts()["reject"] == plan.outcome_counts()["rejected"] == plan.problem_count() == 2
    assert plan.valid_users() == 4 and "E001" not in {uid for _, uid, _ in plan.pending("create")}


def test_a_conflict_names_a_few_lines_and_people_and_counts_the_rest(state: ShadowState, tmp_path: Path) -> None:
    names = ["甲", "乙", "甲", "O'Neil", "甲", "乙", "甲", "甲"]
    plan = plan_of(state, tmp_path, rows(*(user("E001", name) for name in names)))
    problems = list(plan.problems())
    assert [p.line for p in problems] == list(range(2, 10))
    assert problems[0].message == (
        "line 2: 3 people share user id 'E001' (lines 2, 3, 4, 5, 6 and 3 more: '甲', '乙', 'O''Neil'): "
        "fix the export; none of them is synced"
    )


def test_a_conflicting_user_is_not_deleted_by_a_full_snapshot(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a"), user("E001", "张三"), user("gone"))
    plan = plan_of(state, tmp_path, rows(user("a"), user("E001", "张三"), user("E001", "李四")))
    assert ops(plan) == {"a": "unchanged", "E001": "reject", "gone": "delete"}
    assert plan.implied_deletions() == 1 and plan.op_counts()["delete"] == 1
    refused = plan.db.execute("SELECT user_id FROM rows WHERE op = 'reject'").fetchall()
    assert refused == [("E001",), ("E001",)]  # rejected rows keep their user id: the implied-deletion query sees them
    assert plan.users_named(["E001"]) == {"E001": None}  # protected from a later snapshot's repair too


def test_the_wecom_sample_with_a_duplicate_and_a_conflict(state: ShadowState, tmp_path: Path) -> None:
    """events/exports/engine-conflicts.csv: 钱进 twice (a new title and team: a duplicate), 李强 and 李倩 under one
    account (a conflict)."""
    remember(state, user("liqiang", "李强"), user("gone"))
    with export_path("engine-conflicts.csv").open("rb") as stream:
        item = PlanInput(read_records(stream, name="engine-conflicts.csv"), FULL, GROUP)
        plan = build_plan(item, state, tmp_path)
    assert ops(plan) == {
        "zhaomin": "create",
        "qianjin": "create",
        "sunyue": "create",
        "liqiang": "reject",
        "zhoujie": "create",
        "wufang": "create",
        "gone": "delete",
    }
    [winner] = [op for op in plan.operations() if op["userId"] == "qianjin" and op["op"] == "create"]
    assert winner["line"] == 7 and winner["new"]["departName"] == "平台组"
    assert [(p.line, p.code) for p in plan.problems()] == [(5, "ConflictingUserId"), (9, "ConflictingUserId")]
    assert "(lines 5, 9: '李强', '李倩')" in next(plan.problems()).message
    assert "line 3: user 'qianjin' appears again on line 7, which wins" in plan.notices["first"]
    counts = plan.op_counts()
    check_accounting(plan.rows_read() + plan.implied_deletions(), counts)
    assert (counts["duplicate"], counts["reject"], counts["create"], plan.rows_read()) == (1, 2, 5, 8)


def test_unknown_operation_is_rejected(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_of(state, tmp_path, rows({**user("a"), "op": "explode"}), mode=DELTA)
    [problem] = list(plan.problems())
    assert problem.code == "InvalidRecord" and "op: 'explode' is not an operation" in problem.message


def test_group_defaults_fill_rows_without_enterprise(state: ShadowState, tmp_path: Path) -> None:
    plan = build_plan(PlanInput(rows({"userId": "a", "userName": "王五"}), FULL, GROUP), state, tmp_path)
    [operation] = list(plan.operations())
    assert operation["new"]["groupName"] == "示例科技"


def test_artefact_round_trip_rebuilds_the_same_plan(state: ShadowState, tmp_path: Path) -> None:
    remember(state, user("a", departName="x"), user("gone"))
    items = rows(user("a", departName="y"), user("b"), {"userId": "c"}, user("d", "甲"), user("b"), user("d", "乙"))
    plan = plan_of(state, tmp_path, items)
    saved = {
        "planId": plan.plan_id,
        "mode": plan.mode,
        "stateGeneration": 3,
        "source": plan.source,
        "operations": list(plan.operations()),
    }
    rebuilt = SyncPlan.from_artefact(orjson.loads(orjson.dumps(saved)), tmp_path / "..")
    assert list(rebuilt.operations()) == saved["operations"]
    assert rebuilt.op_counts() == plan.op_counts() and rebuilt.pending_count() == plan.pending_count() == 3
    assert rebuilt.outcome_counts() == plan.outcome_counts() and rebuilt.outcome_counts()["duplicate"] == 1
    assert list(rebuilt.problems()) == list(plan.problems()) and len(list(plan.problems())) == 3


user_ids = st.sampled_from([f"u{i}" for i in range(8)])
row_strategy = st.one_of(
    st.builds(lambda uid, name: user(uid, name), user_ids, st.sampled_from(["甲", "乙", "丙"])),
    st.builds(lambda uid: {"userId": uid, "userName": ""}, user_ids),
    st.just("unreadable"),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, max_size=20), st.lists(user_ids, max_size=6, unique=True), st.sampled_from([FULL, DELTA]))
def test_every_row_gets_exactly_one_operation(items: list[Any], known: list[str], mode: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shadow = ShadowState(Path(tmp) / "state.sqlite")
        try:
            remember(shadow, *(user(uid, "甲") for uid in known))
            plan = build_plan(PlanInput(rows(*items), mode), shadow, Path(tmp))
            counts = plan.op_counts()
            check_accounting(plan.rows_read() + plan.implied_deletions(), counts)
            assert plan.rows_read() == len(items)
            names: dict[str, list[str]] = {}
            for i in items:
                if isinstance(i, dict) and i["userName"]:
                    names.setdefault(i["userId"], []).append(i["userName"])
            wanted = {uid for uid, named in names.items() if len(set(named)) == 1}
            conflicting = sum(len(named) for named in names.values() if len(set(named)) > 1)
            if mode == FULL:
                mentioned = {i["userId"] for i in items if isinstance(i, dict)}
                assert plan.implied_deletions() == len(set(known) - mentioned)
            assert counts["create"] + counts["update"] + counts["unchanged"] == len(wanted)
            assert counts["duplicate"] == sum(len(names[uid]) - 1 for uid in wanted)
            assert counts["reject"] == len(items) - sum(len(named) for named in names.values()) + conflicting
            assert plan.outcome_counts()["duplicate"] == counts["duplicate"]
            plan.close()
        finally:
            shadow.close()


def _mixed_export(n: int) -> bytes:
    """Plain rows with, every few rows, one the full path must handle: a mobile to clean, a blank name, a delete,
    a repeated user id (the same person again, or another one), a row with a cell missing."""
    lines = ["userId,userName,groupId,groupName,userMobile,op"]
    for i in range(n):
        name, mobile, op = f"用户{i}", f"138{i:08d}", ""
        if i % 7 == 3:
            mobile = f"+86 138 {i:08d}"
        if i % 11 == 5:
            name = ""
        if i % 13 == 6:
            op = "delete"
        uid = f"u{i}"
        if i % 17 == 9 and i >= 150:  # a user id again: the same person (a duplicate) or, every other time, another
            uid = f"u{i - 150}"
            name = name and (f"用户{i - 150}" if i % 2 else name)
        lines.append(f"{uid},{name},88,示例科技,{mobile},{op}" + ("" if i % 19 != 4 else ",extra"))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("mode", [FULL, DELTA])
def test_a_csv_read_as_cells_plans_exactly_as_its_records_do(
    state: ShadowState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The planner's fast path (cell lists, plain rows, batched inserts) against the full path for every row."""
    remember(state, user("u1", "用户1", userMobile="13800000001"), user("u2", "旧名"), user("gone"))
    data = _mixed_export(700)
    plans = [
        build_plan(PlanInput(read_records(io.BytesIO(data), name="u.csv"), mode), state, tmp_path),
        build_plan(PlanInput(list(read_records(io.BytesIO(data), name="u.csv")), mode), state, tmp_path),
    ]
    monkeypatch.setattr(columns, "PlainRows", _NeverPlain)
    plans.append(build_plan(PlanInput(read_records(io.BytesIO(data), name="u.csv"), mode), state, tmp_path))
    got = [list(plan.operations()) for plan in plans]
    assert got[0] == got[1] == got[2]
    counts = plans[0].op_counts()
    assert counts["unchanged"] == 1 and counts["update"] == 1 and counts["duplicate"] > 10 and counts["reject"] > 50
    assert sum(p.code == "ConflictingUserId" for p in plans[0].problems()) > 10
    assert plans[0].notices == plans[2].notices


class _NeverPlain:
    def __init__(self, *args: Any) -> None:
        raise ValueError("the full path for every row")


def _sync(w: World, export: str, mode: str = FULL) -> RunReport:
    return sync_source(
        io.BytesIO(export.encode()), name="users.csv", source={"key": "users.csv"}, mode=mode, ctx=w.ctx.sync
    )


def test_a_run_whose_only_unwritten_rows_are_duplicates_is_applied() -> None:
    w = world()
    w.cvc.app.journal.switch(True)
    report = _sync(w, "userId,userName,groupId,groupName,departName\na,甲,88,G,研发部\nb,乙,88,G,\na,甲,88,G,财务部\n")
    assert report.status == "applied"
    assert (report.outcomes["created"], report.outcomes["duplicate"], report.outcomes["rejected"]) == (2, 1, 0)
    assert report.planned["duplicate"] == 1 and report.problem_count == 0 and report.problems == []
    assert "line 2: user 'a' appears again on line 4, which wins" in report.messages
    assert sorted(uid for entry in w.cvc.app.journal.entries() for uid in entry["userIds"]) == ["a", "b"]
    assert w.cvc.users()["a"]["departName"] == "财务部"


def test_a_duplicate_is_never_dead_lettered_and_a_conflict_is_a_problem() -> None:
    w = world()
    w.cvc.refuse.add("a")
    export = "userId,userName,groupId,groupName\na,甲,88,G\nc,丙,88,G\na,甲,88,G\ne,张三,88,G\ne,李四,88,G\n"
    report = _sync(w, export)
    letters = [stored.letter for page in w.sink.pages() for stored in page]
    assert [(letter.source["line"], letter.source["userId"]) for letter in letters] == [(4, "a")]
    assert report.status == "partial"
    assert {k: v for k, v in report.outcomes.items() if v} == {
        "created": 1,
        "deadLettered": 1,
        "duplicate": 1,
        "rejected": 2,
    }
    assert report.planned["reject"] == report.outcomes["rejected"] == 2 and report.planned["duplicate"] == 1
    assert report.problem_count == report.outcomes["rejected"] + report.dead_letters == 3
    assert [(p.line, p.code) for p in report.problems][1:] == [(5, "ConflictingUserId"), (6, "ConflictingUserId")]
    assert set(w.cvc.users()) == {"c"}
