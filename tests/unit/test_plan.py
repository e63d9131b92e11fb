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

from cvcsync.engine.outcomes import check_accounting
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, FULL, PlanInput, SyncPlan
from cvcsync.inputs import columns
from cvcsync.inputs.readers import SourceRow, read_records
from cvcsync.inputs.records import parse_user

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


def test_duplicates_last_row_wins_and_earlier_ones_are_rejected(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_of(state, tmp_path, rows(user("a", "first"), user("b"), user("a", "second")))
    creates = [op for op in plan.operations() if op["op"] == "create"]
    assert [(op["userId"], op["new"]["userName"]) for op in creates] == [("b", "张三"), ("a", "second")]
    [duplicate] = list(plan.problems())
    assert duplicate.code == "DuplicateUserId" and duplicate.line == 2
    assert "appears again on line 4" in duplicate.message


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
    plan = plan_of(state, tmp_path, rows(user("a", departName="y"), user("b"), {"userId": "c"}))
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
            wanted = {i["userId"] for i in items if isinstance(i, dict) and i["userName"]}
            if mode == FULL:
                mentioned = {i["userId"] for i in items if isinstance(i, dict)}
                assert plan.implied_deletions() == len(set(known) - mentioned)
            assert counts["create"] + counts["update"] + counts["unchanged"] == len(wanted)
            plan.close()
        finally:
            shadow.close()


def _mixed_export(n: int) -> bytes:
    """Plain rows with, every few rows, one the full path must handle: a mobile to clean, a blank name, a delete,
    a repeated user id, a row with a cell missing."""
    lines = ["userId,userName,groupId,groupName,userMobile,op"]
    for i in range(n):
        name, mobile, op = f"用户{i}", f"138{i:08d}", ""
        if i % 7 == 3:
            mobile = f"+86 138 {i:08d}"
        if i % 11 == 5:
            name = ""
        if i % 13 == 6:
            op = "delete"
        uid = f"u{i - 150 if i % 17 == 9 and i >= 150 else i}"
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
    assert plans[0].notices == plans[2].notices


class _NeverPlain:
    def __init__(self, *args: Any) -> None:
        raise ValueError("the full path for every row")
