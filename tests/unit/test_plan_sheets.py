"""The planner on spreadsheets and titled tables: exactly the users a person sees are planned, with their fields,
and the report's notices name the rows that were skipped (title, notes, totals)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import FULL, PlanInput, SyncPlan
from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.readers import read_records
from cvcsync.inputs.records import parse_user
from support.exports import export_path

GROUP = {"groupId": "88", "groupName": "示例科技"}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite", generation=1)
    yield shadow
    shadow.close()


def plan_sample(state: ShadowState, tmp_path: Path, name: str, mapper: ColumnMap | None = None) -> SyncPlan:
    with export_path(name).open("rb") as stream:
        item = PlanInput(read_records(stream, name=name), FULL, GROUP, mapper, {"key": name})
        return build_plan(item, state, tmp_path)


def created(plan: SyncPlan) -> dict[str, tuple[int, dict[str, Any]]]:
    return {op["userId"]: (op["line"], op["new"]) for op in plan.operations() if op["op"] == "create"}


def test_the_dingtalk_workbook_plans_its_three_users_and_names_the_skipped_rows(
    state: ShadowState, tmp_path: Path
) -> None:
    plan = plan_sample(state, tmp_path, "sheet-dingtalk-contacts.xlsx")
    assert created(plan) == {
        "000123": (5, {**GROUP, "userId": "000123", "userName": "张伟", "departName": "研发部",
                       "userEmail": "zhangwei@example.com", "userMobile": "13800138001"}),
        "000124": (6, {**GROUP, "userId": "000124", "userName": "王芳", "departName": "财务部",
                       "userMobile": "13800138043"}),
        "000125": (7, {**GROUP, "userId": "000125", "userName": "李娜", "departName": "市场部",
                       "userEmail": "lina@example.com", "userMobile": "13800138005"}),
    }  # fmt: skip
    assert plan.rows_read() == 3 and list(plan.problems()) == []
    first = plan.notices["first"]
    assert first[:2] == [
        "line 1: skipped above the header: '钉钉通讯录导出（导出时间：2026-11-30 10:00）'",
        "line 2: skipped above the header: '说明：1. 带*为必填项；2. 手机号请勿加空格；3. 部门层级以“/”分隔，如…'",
    ]
    assert "line 8: skipped a summary row, not a user: '合计, 3人'" in first


def test_the_wecom_workbook_plans_its_members_not_its_total(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_sample(state, tmp_path, "sheet-wecom-members.xlsx")
    got = created(plan)
    assert sorted(got) == ["chenjing", "sunyue", "tomli"] and "Total" not in got
    assert got["chenjing"] == (3, {**GROUP, "userId": "chenjing", "userName": "陈静", "departName": "产品部",
                                   "userEmail": "chenjing@corp.example.com", "userTel": "0571-88880011",
                                   "userMobile": "13800138011"})  # fmt: skip
    assert got["sunyue"][1]["userMobile"] == "13800138012" and got["sunyue"][1]["departName"] == "设计部"
    assert "line 6: skipped a summary row, not a user: 'Total, 3'" in plan.notices["first"]


def test_the_titled_csv_plans_its_users_not_its_record_count(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_sample(state, tmp_path, "sheet-hr-titled.csv")
    got = created(plan)
    assert {uid: line for uid, (line, _) in got.items()} == {"E1001": 5, "E1002": 6, "E1003": 7}
    assert got["E1002"][1] == {**GROUP, "userId": "E1002", "userName": "钱进", "departName": "销售部",
                               "userMobile": "13800138022"}  # fmt: skip
    assert plan.rows_read() == 3
    assert "line 8: skipped a summary row, not a user: '共 3 条记录'" in plan.notices["first"]
    assert "line 1: skipped above the header: '员工花名册'" in plan.notices["first"]


def test_a_workbook_plans_the_same_by_cells_and_by_records(state: ShadowState, tmp_path: Path) -> None:
    """The fast path (cell lists, plain rows) and the full path (a dict per row) agree on a sheet too."""
    name = "sheet-wecom-members.xlsx"
    by_cells = plan_sample(state, tmp_path, name)
    with export_path(name).open("rb") as stream:
        records = list(read_records(stream, name=name))
    by_records = build_plan(PlanInput(records, FULL, GROUP, None, {"key": name}), state, tmp_path)
    assert list(by_cells.operations()) == list(by_records.operations())


def test_the_header_is_found_by_the_runs_own_column_map(state: ShadowState, tmp_path: Path) -> None:
    """Columns only the configuration names: the planner's recogniser finds the header under the title."""
    data = "人事系统导出 2026-11-30\n人员编码,人员姓名,联系电话\nP1,赵敏,13800138031\nP2,钱进,\n共 2 人,,\n".encode()
    mapper = ColumnMap("none", {"人员编码": "userId", "人员姓名": "userName", "联系电话": "userMobile"})
    item = PlanInput(read_records(io.BytesIO(data), name="hr.csv"), FULL, GROUP, mapper)
    plan = build_plan(item, state, tmp_path)
    assert {uid: new for uid, (_, new) in created(plan).items()} == {
        "P1": {**GROUP, "userId": "P1", "userName": "赵敏", "userMobile": "13800138031"},
        "P2": {**GROUP, "userId": "P2", "userName": "钱进"},
    }
    assert plan.notices["first"][0] == "line 1: skipped above the header: '人事系统导出 2026-11-30'"
    assert "line 5: skipped a summary row, not a user: '共 2 人'" in plan.notices["first"]


def test_a_full_workbook_snapshot_deletes_only_users_it_no_longer_lists(state: ShadowState, tmp_path: Path) -> None:
    user = parse_user({"userId": "000123", "userName": "张伟", "departName": "研发部", **GROUP,
                       "userEmail": "zhangwei@example.com", "userMobile": "13800138001"})  # fmt: skip
    gone = parse_user({"userId": "000999", "userName": "离开的人", **GROUP})
    state.upsert([(u.user_id, u.content_hash(), u.to_json().decode()) for u in (user, gone)])
    plan = plan_sample(state, tmp_path, "sheet-dingtalk-contacts.xlsx")
    ops = {op["userId"]: op["op"] for op in plan.operations()}
    assert ops == {"000123": "unchanged", "000124": "create", "000125": "create", "000999": "delete"}
