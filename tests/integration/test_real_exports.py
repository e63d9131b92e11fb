"""Real HR exports end to end: each of the six sources (DingTalk, WeCom, Beisen, Moka, SuccessFactors, Workday),
as .xlsx and as CSV, put in moto's S3 and synced by the object-upload function with an FC OSS event.

For every file: exactly the users CVC (the emulator) then holds, with exactly their fields; departed people absent;
the report's outcomes adding up to what it received; every refusal naming its line, the field and the fix; the
notices naming the title, notes and summary rows that were skipped. Then a source's next exports: a delta whose
status says a synced user left deletes exactly that user, and a full report whose status column marks a synced
user departed deletes them through the safety gates, which count the deletion; a leaver the state never held is an
absence, nothing to send (outcome ``unchanged``).

The expected users are written out per file, from reading the file, never computed from it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from cvcsync.platform.runtime import local_fc_context
from cvcsync.platform.triggers.upload import handle
from support.events import load_event
from support.exports import export_path

BUCKET = "cvc-user-uploads"
GROUP = {"groupId": "88", "groupName": "示例科技"}
STATUS_FIX = "CVCSYNC_STATUS_VALUES adds more"
EXCEL_FIX = "which loses digits: format the column as Text, enter the ids again and export again"


def user(user_id: str, name: str, depart: str, *, email: str = "", mobile: str = "", tel: str = "") -> dict[str, str]:
    """A user as CVC holds it: the group from CVCSYNC_GROUP_ID/NAME, empty fields left out."""
    fields = {"userId": user_id, "userName": name, **GROUP, "departName": depart}
    fields.update((k, v) for k, v in (("userEmail", email), ("userTel", tel), ("userMobile", mobile)) if v)
    return fields


@dataclass(frozen=True)
class Expected:
    """What syncing one sample export into an empty CVC must leave, and what its report must say."""

    name: str
    users: list[dict[str, str]]
    gone: list[str]  # departed people in the file: never in CVC
    outcomes: dict[str, int]  # the non-zero ones
    refused: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # line -> (userId, field, the fix)
    skipped: list[str] = field(default_factory=list)  # the notices naming rows that are not users


EXPECTED = [
    Expected(
        "sheet-dingtalk-contacts.xlsx",
        [
            user("000123", "张伟", "研发部", email="zhangwei@example.com", mobile="13800138001"),
            user("000124", "王芳", "财务部", mobile="13800138043"),
            user("000125", "李娜", "市场部", email="lina@example.com", mobile="13800138005"),
        ],
        gone=[],
        outcomes={"created": 3},
        skipped=[
            "line 1: skipped above the header: '钉钉通讯录导出（导出时间：2026-11-30 10:00）'",
            "line 2: skipped above the header: '说明：1. 带*为必填项；2. 手机号请勿加空格；3. 部门层级以“/”分隔，如…'",
            "line 8: skipped a summary row, not a user: '合计, 3人'",
        ],
    ),
    Expected(
        "dingtalk-contacts.csv",
        [
            user("D0001", "赵敏", "市场部", email="zhaomin@corp.example.com", tel="8011", mobile="13800000011"),
            user("D0002", "黄强", "研发部", email="huangqiang@corp.example.com", tel="8012", mobile="13800000012"),
            user("D0003", "周杰", "前端组", email="zhoujie@corp.example.com", mobile="13800000013"),
            user("D0004", "吴霞", "财务部", email="wuxia@corp.example.com", tel="8014", mobile="13800000014"),
            user("D0005", "孙涛", "海外事业部", email="suntao@corp.example.com", mobile="+1-415-555-0100"),
        ],
        gone=[],
        outcomes={"created": 5},
    ),
    Expected(
        "sheet-wecom-members.xlsx",
        [
            user("chenjing", "陈静", "产品部", email="chenjing@corp.example.com",
                 tel="0571-88880011", mobile="13800138011"),
            user("sunyue", "孙悦", "设计部", email="sunyue@example.com", mobile="13800138012"),
            user("tomli", "Tom Li", "研发部", email="tomli@corp.example.com", mobile="13800138013"),
        ],
        gone=[],
        outcomes={"created": 3},
        skipped=[
            "line 1: skipped above the header: '企业微信通讯录 · 成员导出（示例科技）'",
            "line 6: skipped a summary row, not a user: 'Total, 3'",
        ],
    ),
    Expected(
        "wecom-members.csv",
        [
            user("zhangwei", "张伟", "研发部", email="zhangwei@corp.example.com",
                 tel="0571-88880001", mobile="13800000001"),
            user("wangfang", "王芳", "产品部", email="wangfang@corp.example.com", mobile="13800000002"),
            user("lina", "李娜", "研发部", email="lina@example.com", mobile="13800000003"),
            user("liuyang", "刘洋", "销售部", email="liuyang@corp.example.com", mobile="13800000004"),
            user("chenjing", "陈静", "行政部", email="chenjing@corp.example.com",
                 tel="0571-88880005", mobile="13800000005"),
            user("yanglei", "杨磊", "运维组", email="yanglei@corp.example.com", mobile="13800000006"),
        ],
        gone=[],
        outcomes={"created": 6},
    ),
    Expected(
        "sheet-beisen.xlsx",
        [
            user("BS2001", "林晓", "平台部", email="linxiao@corp.example.com", mobile="13800138111"),
            user("BS2002", "高远", "数据部", email="gaoyuan@corp.example.com", mobile="13800138112"),
            user("BS2004", "宋佳", "品牌部", email="songjia@corp.example.com", mobile="13800138114"),
            user("BS2006", "韩雪", "人力资源部", email="hanxue@corp.example.com", mobile="13800138116"),
            user("BS2007", "唐亮", "平台部", email="tangliang@corp.example.com", mobile="13800138117"),
        ],
        gone=["BS2003"],  # 离职
        outcomes={"created": 5, "unchanged": 1, "rejected": 1},
        refused={7: ("BS2005", "任职状态", STATUS_FIX)},  # 待入职: not yet joined, deliberately neither
        skipped=["line 1: skipped above the header: '员工花名册（北森 iTalent 导出，2026-11-30 10:00）'"],
    ),
    Expected(
        "values-beisen.csv",
        [
            user("BS1001", "郑雪", "平台部", email="zhengxue@corp.example.com", mobile="13800138101"),
            user("BS1002", "冯涛", "数据部", email="fengtao@corp.example.com", mobile="13800138102"),
            user("BS1004", "褚磊", "华东区", email="chulei@corp.example.com", mobile="13800138104"),
            user("BS1006", "蒋鹏", "平台部", email="jiangpeng@corp.example.com", mobile="13800138106"),
        ],
        gone=["BS1003"],
        outcomes={"created": 4, "unchanged": 1, "rejected": 1},
        refused={6: ("BS1005", "任职状态", STATUS_FIX)},
    ),
    Expected(
        "sheet-moka.xlsx",
        [
            user("MK101", "袁野", "产品部", email="yuanye@corp.example.com", mobile="13800138211"),
            user("MK102", "苏晴", "设计部", email="suqing@corp.example.com", mobile="13800138212"),
            user("MK104", "夏雨", "测试部", email="xiayu@corp.example.com", mobile="13800138214"),
            user("MK105", "曾可", "研发中心", email="zengke@corp.example.com", mobile="13800138215"),
            user("MK106", "戴维", "销售部", email="daiwei@corp.example.com"),
        ],
        gone=["MK103"],  # 已离职
        outcomes={"created": 5, "unchanged": 1},
        skipped=["line 8: skipped a summary row, not a user: '合计：6人'"],
    ),
    Expected(
        "values-moka.csv",
        [
            user("MK001", "秦川", "产品部", email="qinchuan@corp.example.com", mobile="13800138201"),
            user("MK002", "尤佳", "设计部", email="youjia@corp.example.com", mobile="13800138202"),
            user("MK004", "何晴", "研发中心", email="heqing@corp.example.com", mobile="13800138204"),
        ],
        gone=["MK003"],
        outcomes={"created": 3, "unchanged": 1},
    ),
    Expected(
        "sheet-successfactors.xlsx",
        [
            user("100301", "Anna Koch", "Human Resources", email="anna.koch@corp.example.com",
                 tel="+86 21 5555 0311", mobile="13800138311"),
            user("100302", "Wei Zhou", "Corporate", email="wei.zhou@corp.example.com", mobile="13800138312"),
            user("100304", "刘雨桐", "Engineering", email="yutong.liu@corp.example.com", mobile="13800138314"),
            user("100305", "James Miller", "Engineering", email="james.miller@corp.example.com", tel="+65 6555 0105"),
        ],
        gone=["100303"],  # inactive
        outcomes={"created": 4, "unchanged": 1},
    ),
    Expected(
        "values-successfactors.csv",
        [
            user("100201", "Julia Wagner", "Finance", email="julia.wagner@corp.example.com",
                 tel="+86 21 5555 0101", mobile="13800138301"),
            user("100202", "Li Chen", "Corporate", email="li.chen@corp.example.com",
                 tel="+86 21 5555 0102", mobile="13800138302"),
            user("100204", "张思远", "Engineering", email="siyuan.zhang@corp.example.com", mobile="13800138304"),
        ],
        gone=["100203"],
        outcomes={"created": 3, "unchanged": 1},
    ),
    Expected(
        "sheet-workday.xlsx",
        [
            user("21101", "Aiden Brooks", "Platform Services", email="aiden.brooks@corp.example.com",
                 tel="+86 21 5555 0411", mobile="13800138411"),
            user("21102", "Kate Doyle", "Platform Services", email="kate.doyle@corp.example.com",
                 mobile="13800138412"),  # On Leave is in service; the preferred name goes first
            user("21104", "王芳", "Shanghai Finance", email="wang.fang@corp.example.com", mobile="13800138414"),
            user("21105", "Lucas Ferreira", "APAC Sales", email="lucas.ferreira@corp.example.com"),
            user("21106", "Nora Lindqvist", "Data", email="nora.lindqvist@corp.example.com", tel="+86 21 5555 0416"),
            user("21107", "Yuki Tanaka", "Platform Services", email="yuki.tanaka@corp.example.com",
                 mobile="13800138417"),
        ],
        gone=["21103"],  # Terminated
        outcomes={"created": 6, "unchanged": 1},
        skipped=[
            "line 1: skipped above the header: 'Workers by Supervisory Organization (as …'",
            "line 10: skipped a summary row, not a user: 'Total, 7'",
        ],
    ),
    Expected(
        "values-workday.csv",
        [
            user("21001", "Logan McNeil", "Platform Services", email="logan.mcneil@corp.example.com",
                 tel="+86 21 5555 0201", mobile="13800138401"),
            user("21002", "May Lin", "Platform Services", email="mei.lin@corp.example.com", mobile="13800138402"),
            user("21004", "刘伟", "Data", email="liu.wei@corp.example.com", mobile="13800138404"),
        ],
        gone=["21003"],
        outcomes={"created": 3, "unchanged": 1},
    ),
    Expected(  # an HR system's CSV after a round trip through Excel: what survived is synced, lost digits refused
        "values-excel-damage.csv",
        [
            user("BS007", "黄强", "研发部", email="huangqiang@corp.example.com", mobile="13800138503"),
            user("E2004", "Anna Schmidt", "研发中心", email="anna.schmidt@corp.example.com", mobile="13800138504"),
            user("E2005", "严华", "市场部", email="yanhua@corp.example.com", mobile="13800138051"),
            user("E2006", "施洋", "市场部", email="shiyang@corp.example.com", mobile="13800138052"),
            user("E2007", "Li Wei", "研发部", email="li.wei@corp.example.com", mobile="13800138043"),
        ],
        gone=[],
        outcomes={"created": 5, "rejected": 4},
        refused={
            2: ("1.21235E+09", "userId", EXCEL_FIX),
            3: ("1.21235E+09", "userId", EXCEL_FIX),
            11: ("E2008", "userMobile", EXCEL_FIX),
            12: ("1.21236E+09", "userId", EXCEL_FIX),
        },
    ),
]  # fmt: skip


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    moto.s3_client().create_bucket(Bucket=BUCKET)
    return {**function_env, "CVCSYNC_GROUP_ID": GROUP["groupId"], "CVCSYNC_GROUP_NAME": GROUP["groupName"]}


def upload(moto: Any, env: dict[str, str], name: str, *, folder: str = "uploads/full") -> dict[str, Any]:
    """Put the sample in the bucket, hand the upload function the FC OSS event for it; the run's full report."""
    body = export_path(name).read_bytes()
    key = f"{folder}/{name}"
    moto.s3_client().put_object(Bucket=BUCKET, Key=key, Body=body)
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"].update(key=key, size=len(body), deltaSize=len(body))
    context = local_fc_context("oss-sync", timeout=60, credentials={"access_key_id": "t", "access_key_secret": "t"})
    answer = orjson.loads(handle(orjson.dumps(event), context, env=env))
    [run] = answer["runs"]
    report_key = f"cvc-sync/reports/{key}/{run['runId']}.json"
    report = orjson.loads(moto.s3_client().get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert {k: report[k] for k in run} == run  # the function's answer is the report's summary
    return dict(report)


def in_cvc(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["userId"]: {k: v for k, v in u.items() if k != "createTime"} for u in emulator.users()}


def nonzero(outcomes: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in outcomes.items() if count}


@pytest.mark.parametrize("expected", EXPECTED, ids=[e.name for e in EXPECTED])
def test_a_real_export_syncs_exactly_its_people(
    env: dict[str, str], moto: Any, emulator: Any, expected: Expected
) -> None:
    report = upload(moto, env, expected.name)
    held = in_cvc(emulator)
    assert held == {u["userId"]: u for u in expected.users}
    assert not set(expected.gone) & set(held)
    assert nonzero(report["outcomes"]) == expected.outcomes
    assert report["received"] == sum(report["outcomes"].values()) == report["rowsRead"] + report["impliedDeletions"]
    assert report["status"] == ("partial" if expected.refused else "applied") and not report["refused"]
    refused = {p["line"]: p for p in report["problems"]}
    assert sorted(refused) == sorted(expected.refused)
    for line, (user_id, column, fix) in expected.refused.items():
        problem = refused[line]
        assert problem["userId"] == user_id and problem["code"] == "InvalidRecord"
        assert problem["message"].startswith(f"line {line}: user {user_id!r}: {column}: ") and fix in problem["message"]
    if expected.refused:  # the same problems, row by row, in the file an HR admin opens in Excel
        listed = problems_file(moto, report)
        assert {int(row["line"]): row["message"] for row in listed} == {
            p["line"]: p["message"] for p in refused.values()
        }
    assert [m for m in report["messages"] if "skipped" in m] == expected.skipped


def problems_file(moto: Any, report: dict[str, Any]) -> list[dict[str, str]]:
    key = f"cvc-sync/reports/{report['source']['key']}/{report['runId']}.problems.csv"
    text = moto.s3_client().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_a_delta_whose_status_says_a_synced_user_left_deletes_exactly_that_user(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """北森's weekly change list, uploaded as a delta: 林晓 离职 is deleted, 高远's move is an update, nobody else is
    touched (a delta is no snapshot: the five others it does not list stay)."""
    upload(moto, env, "sheet-beisen.xlsx")
    before = in_cvc(emulator)
    assert sorted(before) == ["BS2001", "BS2002", "BS2004", "BS2006", "BS2007"]
    calls = emulator.stats()["calls"]
    report = upload(moto, env, "sheet-beisen-changes.xlsx", folder="uploads/delta")
    assert report["mode"] == "delta" and report["status"] == "applied"
    assert nonzero(report["outcomes"]) == {"deleted": 1, "updated": 1} and report["received"] == 2
    after = in_cvc(emulator)
    assert sorted(set(before) - set(after)) == ["BS2001"] and set(after) <= set(before)
    assert after["BS2002"] == user("BS2002", "高远", "数据平台部", email="gaoyuan@corp.example.com",
                                   mobile="13800138112")  # fmt: skip
    assert {uid: fields for uid, fields in after.items() if uid != "BS2002"} == {
        uid: fields for uid, fields in before.items() if uid not in ("BS2001", "BS2002")
    }
    grown = {action: count - calls.get(action, 0) for action, count in emulator.stats()["calls"].items()}
    assert grown == {"GetAccountInfo": 1, "DeleteUser": 1, "CreateUser": 1}


def test_a_full_report_whose_status_marks_a_synced_user_departed_deletes_them_through_the_gates(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """Workday's report a month later lists Aiden Brooks as Terminated. The deletion gate counts him: with
    CVCSYNC_MAX_DELETES=0 the run is refused and he stays; with the default limits he is deleted, and only he."""
    upload(moto, env, "sheet-workday.xlsx")
    assert sorted(in_cvc(emulator)) == ["21101", "21102", "21104", "21105", "21106", "21107"]
    strict = upload(moto, {**env, "CVCSYNC_MAX_DELETES": "0"}, "sheet-workday-next-month.xlsx")
    assert strict["status"] == "refused" and "21101" in in_cvc(emulator)
    assert nonzero(strict["outcomes"]) == {"unchanged": 5, "skippedByGuard": 1}
    refusal = "REFUSED by the deletionThreshold gate: 1 deletions (16.7% of 6 synced users); limits 0 and 20%"
    assert refusal in strict["messages"]
    report = upload(moto, env, "sheet-workday-next-month.xlsx")
    assert report["status"] == "applied" and nonzero(report["outcomes"]) == {"unchanged": 5, "deleted": 1}
    assert report["received"] == sum(report["outcomes"].values()) == 6
    gates = {gate["name"]: (gate["passed"], gate["detail"]) for gate in report["guards"]}
    assert gates["deletionThreshold"] == (True, "1 deletions (16.7% of 6 synced users); limits 500 and 20%")
    assert gates["completeness"][0] and gates["completeness"][1].startswith("5 valid users now, 6 in the last")
    assert sorted(in_cvc(emulator)) == ["21102", "21104", "21105", "21106", "21107"]
    assert report["calls"].get("DeleteUser") == 1 and "CreateUser" not in report["calls"]


def test_an_unchanged_roster_that_lists_its_leavers_changes_nothing_on_a_reupload(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """A full snapshot's departed row is an absence (engine.plan): a leaver the state does not hold needs nothing.
    A roster that keeps its leavers (北森 with 全部人员: 20 在职, 10 离职) is synced once; re-uploading the very same
    file sends nothing and passes the gates. (Found by this test: each leaver used to be planned as a DeleteUser on
    every upload, and the gate refused "10 deletions (50.0% of 20 synced users)" every month.)"""
    first = upload(moto, env, "sheet-beisen-all-staff.xlsx")
    assert first["outcomes"]["created"] == 20 and len(in_cvc(emulator)) == 20
    again = upload(moto, env, "sheet-beisen-all-staff.xlsx")
    assert [g["detail"] for g in again["guards"] if not g["passed"]] == []
    assert again["status"] == "applied" and again["outcomes"]["deleted"] == 0
    assert "DeleteUser" not in again["calls"] and "CreateUser" not in again["calls"]
