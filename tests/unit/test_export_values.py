"""Values and columns of real HR exports, end to end, with the samples in ``events/exports/values-*``.

Each sample is read as an upload is (``read_records``), mapped (``ColumnMap`` / ``HeaderMapping``) and validated
(``parse_user``), then planned (``engine.plan.build_plan``): exactly the right users with the right fields are
planned, departed people are deleted, and every refusal names the line, the field and the fix. The samples are
made the way Beisen, Moka, SuccessFactors and Workday export a directory, one the way Excel damages a CSV, and one
the way a script turns a spreadsheet into NDJSON (numbers where text was meant).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.engine.outcomes import Problem
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, FULL, PlanInput, SyncPlan
from cvcsync.inputs.changes import MalformedMessage, parse_changes
from cvcsync.inputs.columns import ColumnMap, MappedRow
from cvcsync.inputs.readers import read_records
from cvcsync.inputs.records import RecordError, User, content_hash, parse_user
from support.exports import export_path

GROUP = {"groupId": "88", "groupName": "示例科技"}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite", generation=1)
    yield shadow
    shadow.close()


def remember(state: ShadowState, *users: dict[str, str]) -> None:
    parsed = [parse_user({**GROUP, **user}) for user in users]
    state.upsert([(u.user_id, u.content_hash(), u.to_json().decode()) for u in parsed])


def mapped(name: str) -> list[tuple[int, MappedRow | RecordError]]:
    """Each row of the sample as the mapping leaves it, or the mapping's refusal."""
    column_map = ColumnMap.from_env({})
    out: list[tuple[int, MappedRow | RecordError]] = []
    with export_path(name).open("rb") as stream:
        for row in read_records(stream, name=name):
            assert row.error is None, row
            try:
                out.append((row.line, column_map.apply(row.data, position=row.position)))
            except RecordError as exc:
                out.append((row.line, exc))
    return out


def plan_export(name: str, state: ShadowState, tmp_path: Path, mode: str = FULL) -> SyncPlan:
    with export_path(name).open("rb") as stream:
        return build_plan(
            PlanInput(read_records(stream, name=name), mode, GROUP, source={"key": name}), state, tmp_path
        )


def upserts(plan: SyncPlan) -> dict[str, dict[str, Any]]:
    """The users the plan creates or updates, with the CreateUser fields it sends."""
    return {op["userId"]: op["new"] for op in plan.operations() if op["op"] in ("create", "update")}


def deletes(plan: SyncPlan) -> list[str]:
    return [op["userId"] for op in plan.operations() if op["op"] == "delete"]


def absent(plan: SyncPlan) -> list[str]:
    """Departed rows of users the state does not hold: a full snapshot's absence, nothing to send."""
    return [op["userId"] for op in plan.operations() if op["op"] == "absent"]


def problems(plan: SyncPlan) -> list[Problem]:
    return list(plan.problems())


def notices(plan: SyncPlan) -> list[str]:
    return list(plan.notices["first"])


def user(user_id: str, name: str, **fields: str) -> dict[str, str]:
    return {"userId": user_id, "userName": name, **GROUP, **fields}


# --- Beisen (北森): 任职状态, 部门 with 部门全路径 filling in -------------------------------------------------------


def test_beisen_export_maps_status_and_department_path() -> None:
    header = tuple(next(iter(read_records(export_path("values-beisen.csv").open("rb"), name="b.csv"))).data)
    mapping = ColumnMap().for_header(header)
    assert mapping.preset == "beisen"
    assert (mapping.status_column, mapping.op_column) == ("任职状态", None)
    assert mapping.field_of["部门"] == "departName" and mapping.fallbacks["departName"] == ("部门全路径",)
    assert mapping.unmapped == ("性别", "入职日期")
    ops = {line: row.op for line, row in mapped("values-beisen.csv") if isinstance(row, MappedRow)}
    assert ops == {2: "upsert", 3: "upsert", 4: "delete", 5: "upsert", 7: "upsert"}


def test_beisen_export_plans_the_people_in_service_and_deletes_the_one_who_left(
    state: ShadowState, tmp_path: Path
) -> None:
    remember(state, user("BS1003", "陈静"), user("BS0999", "旧人"))
    plan = plan_export("values-beisen.csv", state, tmp_path)
    assert upserts(plan) == {
        "BS1001": user("BS1001", "郑雪", departName="平台部", userEmail="zhengxue@corp.example.com",
                       userMobile="13800138101"),
        "BS1002": user("BS1002", "冯涛", departName="数据部", userEmail="fengtao@corp.example.com",
                       userMobile="13800138102"),
        "BS1004": user("BS1004", "褚磊", departName="华东区", userEmail="chulei@corp.example.com",
                       userMobile="13800138104"),
        "BS1006": user("BS1006", "蒋鹏", departName="平台部", userEmail="jiangpeng@corp.example.com",
                       userMobile="13800138106"),
    }  # fmt: skip
    assert sorted(deletes(plan)) == ["BS0999", "BS1003"]  # 离职, and someone no longer in the snapshot
    [refused] = problems(plan)
    assert (refused.line, refused.user_id, refused.code) == (6, "BS1005", "InvalidRecord")
    assert refused.message.startswith("line 6: user 'BS1005': 任职状态: '待入职' is not a known employment status (")
    assert "CVCSYNC_STATUS_VALUES adds more" in refused.message
    assert "line 7: column '部门全路径' lists 2 departments; the first is used" in notices(plan)


# --- Moka: 员工状态, 部门路径, a department wrapped with Alt+Enter --------------------------------------------------


def test_moka_export(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_export("values-moka.csv", state, tmp_path)
    got = upserts(plan)
    assert sorted(got) == ["MK001", "MK002", "MK004"]
    assert got["MK001"] == user(
        "MK001", "秦川", departName="产品部", userEmail="qinchuan@corp.example.com", userMobile="13800138201"
    )
    assert got["MK004"]["departName"] == "研发中心"  # "研发\n中心": one space, then none between Han characters
    assert deletes(plan) == [] and absent(plan) == ["MK003"]  # 已离职: never synced, so nothing to delete
    assert problems(plan) == []
    assert "line 5: column '部门': a line break inside the cell was replaced by a space" in notices(plan)
    assert any(notice.startswith("column preset 'moka'") for notice in notices(plan))


# --- SuccessFactors: USERID, FIRSTNAME/LASTNAME, STATUS active/inactive ---------------------------------------------


def test_successfactors_export(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_export("values-successfactors.csv", state, tmp_path)
    assert upserts(plan) == {
        "100201": user("100201", "Julia Wagner", departName="Finance", userEmail="julia.wagner@corp.example.com",
                       userTel="+86 21 5555 0101", userMobile="13800138301"),
        "100202": user("100202", "Li Chen", departName="Corporate", userEmail="li.chen@corp.example.com",
                       userTel="+86 21 5555 0102", userMobile="13800138302"),
        "100204": user("100204", "张思远", departName="Engineering", userEmail="siyuan.zhang@corp.example.com",
                       userMobile="13800138304"),
    }  # fmt: skip
    assert deletes(plan) == [] and absent(plan) == ["100203"]  # inactive: never synced, so nothing to delete
    assert problems(plan) == []
    assert "column 'USERNAME' fills userId as preset 'successfactors' says, not userName" in notices(plan)


# --- Workday: Employee ID, Legal Name - First/Last, Preferred Name, Worker Status, Supervisory Organization -------


def test_workday_export(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_export("values-workday.csv", state, tmp_path)
    got = upserts(plan)
    assert {uid: new["userName"] for uid, new in got.items()} == {
        "21001": "Logan McNeil",  # no preferred name: the legal name, given first
        "21002": "May Lin",  # the preferred name has priority
        "21004": "刘伟",  # Chinese: family name first, no space
    }
    assert got["21001"] == user(
        "21001",
        "Logan McNeil",
        departName="Platform Services",
        userEmail="logan.mcneil@corp.example.com",
        userTel="+86 21 5555 0201",
        userMobile="13800138401",
    )
    assert got["21002"]["departName"] == "Platform Services"  # On Leave is in service
    assert deletes(plan) == [] and absent(plan) == ["21003"]  # Terminated: never synced, so nothing to delete
    assert problems(plan) == []


# --- Excel's damage ----------------------------------------------------------------------------------------------

EXCEL_LINES = {  # the physical line each row of values-excel-damage.csv starts on (E2004's cells hold line breaks)
    "dengchao": 2, "kongli": 3, "BS007": 4, "E2004": 5, "E2005": 8, "E2006": 9, "E2007": 10, "E2008": 11, "qianjin": 12,
}  # fmt: skip


def test_excel_damage_is_undone_where_the_value_survived(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_export("values-excel-damage.csv", state, tmp_path)
    assert upserts(plan) == {
        "BS007": user("BS007", "黄强", departName="研发部", userEmail="huangqiang@corp.example.com",
                      userMobile="13800138503"),  # full-width id, mobile and @; the ideographic space
        "E2004": user("E2004", "Anna Schmidt", departName="研发中心", userEmail="anna.schmidt@corp.example.com",
                      userMobile="13800138504"),  # line breaks inside cells
        "E2005": user("E2005", "严华", departName="市场部", userEmail="yanhua@corp.example.com",
                      userMobile="13800138051"),  # ="13800138051"
        "E2006": user("E2006", "施洋", departName="市场部", userEmail="shiyang@corp.example.com",
                      userMobile="13800138052"),  # '13800138052 and 'E2006
        "E2007": user("E2007", "Li Wei", departName="研发部", userEmail="li.wei@corp.example.com",
                      userMobile="13800138043"),  # two spaces; 86 in front of the mobile
    }  # fmt: skip
    line = EXCEL_LINES["E2004"]
    assert f"line {line}: column '姓名': a line break inside the cell was replaced by a space" in notices(plan)
    assert f"line {line}: column '部门': a line break inside the cell was replaced by a space" in notices(plan)
    assert not any("spreadsheet formula" in notice for notice in notices(plan))  # ="…" is Excel's text, no formula


def test_excel_damage_that_lost_digits_is_refused_never_merged(state: ShadowState, tmp_path: Path) -> None:
    merged = orjson.dumps(user("1.21235E+09", "孔莉"))  # what an older sync made of two people
    state.upsert([("1.21235E+09", content_hash(merged), merged.decode())])
    plan = plan_export("values-excel-damage.csv", state, tmp_path)
    refused = {problem.line: problem for problem in problems(plan)}
    assert sorted(refused) == [EXCEL_LINES[key] for key in ("dengchao", "kongli", "E2008", "qianjin")]
    fix = (
        "Excel turned this column into a number (1.21235E+09), which loses digits: "
        "format the column as Text, enter the ids again and export again"
    )
    for key in ("dengchao", "kongli"):
        problem = refused[EXCEL_LINES[key]]
        assert (problem.code, problem.user_id) == ("InvalidRecord", "1.21235E+09")  # not a duplicate: both refused
        assert problem.message == f"line {EXCEL_LINES[key]}: user '1.21235E+09': userId: {fix}"
    mobile = refused[EXCEL_LINES["E2008"]]
    assert mobile.message == (
        f"line {EXCEL_LINES['E2008']}: user 'E2008': userMobile: Excel turned this column into a number "
        "(masked: 1.38…E+10), which loses digits: format the column as Text, enter the ids again and export again"
    )
    assert refused[EXCEL_LINES["qianjin"]].message == (
        f"line {EXCEL_LINES['qianjin']}: user '1.21236E+09': userId: Excel turned this column into a number "
        "(1.21236E+09), which loses digits: format the column as Text, enter the ids again and export again"
    )  # a departed person with a damaged id: refused, not a delete of a made-up id
    assert "1.21235E+09" not in upserts(plan) and deletes(plan) == []  # its rows protect the old user
    assert plan.op_counts()["duplicate"] == 0


@pytest.mark.parametrize("name", ["values-excel-damage.csv", "values-json-numbers.ndjson", "values-beisen.csv"])
def test_every_refusal_names_the_line_the_field_and_the_fix(state: ShadowState, tmp_path: Path, name: str) -> None:
    plan = plan_export(name, state, tmp_path)
    assert problems(plan)
    for problem in problems(plan):
        detail = next(op["problem"] for op in plan.operations() if op.get("line") == problem.line)
        assert problem.message.startswith(f"line {problem.line}: ")
        for found in detail["problems"]:
            assert f"{found['field']}: " in problem.message
            assert any(word in found["reason"] for word in ("export again", "send it as text", "CVCSYNC_STATUS_VALUES"))


def test_the_same_file_as_a_delta_plans_the_same_users(state: ShadowState, tmp_path: Path) -> None:
    full = plan_export("values-excel-damage.csv", state, tmp_path)
    delta = plan_export("values-excel-damage.csv", state, tmp_path, mode=DELTA)
    assert upserts(delta) == upserts(full)


# --- numbers where text was meant (a spreadsheet turned into NDJSON by a script) --------------------------------


def test_numbers_become_exact_digits_and_full_width_text_ascii(state: ShadowState, tmp_path: Path) -> None:
    plan = plan_export("values-json-numbers.ndjson", state, tmp_path)
    got = upserts(plan)
    assert got == {
        "30001": user("30001", "孟凡", departName="研发部", userMobile="13800138601"),  # 13800138601.0
        "30002": user("30002", "白露", departName="研发部", userMobile="13800138602"),  # 30002.0, 8613800138602
        "30004": user("30004", "Tom Lee", departName="Research Lab", userEmail="tom.lee@corp.example.com"),
    }
    assert deletes(plan) == [] and absent(plan) == ["30005"]  # departed, never synced: nothing to delete
    [refused] = problems(plan)
    assert refused.message == (
        "line 3: userId: is a number too large to be exact ('1.2345678901234568e+17'): send it as text"
    )


# --- every path cleans values the same way ------------------------------------------------------------------------


def test_a_queue_message_and_a_file_row_with_the_same_values_give_the_same_user() -> None:
    values = {
        "userId": "ＢＳ００７",
        "userName": "黄　强",
        "departName": "研发\n中心",
        "userMobile": '="13800138503"',
        "userEmail": "huangqiang＠corp.example.com",
    }
    from_file = ColumnMap().apply(values)
    file_user = parse_user(from_file.fields, defaults=GROUP)
    [change] = parse_changes(orjson.dumps({"type": "upsert", "user": values}), defaults=GROUP)
    assert change.user == file_user
    assert isinstance(change.user, User) and change.user_id == "BS007"
    assert file_user.to_cvc() == user(
        "BS007", "黄强", departName="研发中心", userEmail="huangqiang@corp.example.com", userMobile="13800138503"
    )


def test_a_queue_message_with_excel_damage_is_refused_with_the_same_reason() -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_changes({"type": "upsert", "user": user("1.21235E+09", "邓超")}, message_id="m1")
    message = str(caught.value)
    assert (
        "userId: Excel turned this column into a number (1.21235E+09), which loses digits: "
        "format the column as Text, enter the ids again and export again" in message
    )
