"""Column mapping: one named test per rule, and the sample exports in events/exports read end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.config import ENV_COLUMN_MAP, ENV_COLUMN_PRESET, ENV_NAME_ORDER, ENV_STATUS_VALUES
from cvcsync.errors import ConfigurationError
from cvcsync.inputs import columns
from cvcsync.inputs.cell_cleanup import department_leaf, is_formula_like, normalise_mobile, spreadsheet_safe
from cvcsync.inputs.column_presets import OP_DELETE, OP_UPSERT, load_presets
from cvcsync.inputs.columns import ColumnMap, HeaderMapping
from cvcsync.inputs.readers import read_records
from cvcsync.inputs.records import RecordError, User, fast_user_json, parse_user
from support.exports import export_names, export_path

GROUP = {"groupId": "88", "groupName": "示例科技"}

# The columns hr-export-headers.md lists for each product, in its order.
WECOM = ["姓名", "帐号", "别名", "职务", "部门", "性别", "手机", "座机", "个人邮箱", "企业邮箱", "英文ID", "地址"]
DINGTALK = ["姓名", "工号", "手机号", "部门", "职位", "邮箱", "分机号", "办公地点", "入职时间", "备注"]
HR = ["员工编号", "姓名", "部门编号", "部门名称", "手机", "电话", "邮箱", "状态"]


def mapping(header: list[str], **kwargs: Any) -> HeaderMapping:
    return ColumnMap(**kwargs).for_header(header)


def mapped(header: list[str], cells: list[str], **kwargs: Any) -> columns.MappedRow:
    return mapping(header, **kwargs).apply(dict(zip(header, cells, strict=True)))


def users_from(name: str, column_map: ColumnMap | None = None) -> list[tuple[int, User | RecordError, str | None]]:
    """A sample export read, mapped and validated as the engine will: (line, user or error, op) per row."""
    column_map = column_map or ColumnMap.from_env({})
    out: list[tuple[int, User | RecordError, str | None]] = []
    with export_path(name).open("rb") as stream:
        for row in read_records(stream, name=name):
            assert row.error is None, row
            try:
                result = column_map.apply(row.data, position=row.position)
                out.append((row.line, parse_user(result.fields, position=row.position, defaults=GROUP), result.op))
            except RecordError as exc:
                out.append((row.line, exc, None))
    return out


# --- presets ---------------------------------------------------------------------------------------------------


def test_wecom_headers_map_to_cvc_fields() -> None:
    got = mapping(WECOM, preset="wecom")
    assert got.field_of == {
        "姓名": "userName",
        "帐号": "userId",
        "部门": "departName",
        "手机": "userMobile",
        "座机": "userTel",
        "企业邮箱": "userEmail",
    }
    assert got.fallbacks == {"userEmail": ("个人邮箱",)}
    assert got.unmapped == ("别名", "职务", "性别", "英文ID", "地址")


def test_wecom_spelling_variant_zhanghao() -> None:
    assert mapping(["账号", "姓名"], preset="wecom").field_of == {"账号": "userId", "姓名": "userName"}


def test_dingtalk_headers_map_to_cvc_fields() -> None:
    got = mapping(DINGTALK, preset="dingtalk")
    assert got.field_of == {
        "姓名": "userName",
        "工号": "userId",
        "手机号": "userMobile",
        "部门": "departName",
        "邮箱": "userEmail",
        "分机号": "userTel",
    }
    assert got.unmapped == ("职位", "办公地点", "入职时间", "备注")


def test_hr_headers_map_to_cvc_fields_and_status_is_the_status_column() -> None:
    got = mapping(HR, preset="hr")
    assert got.field_of == {
        "员工编号": "userId",
        "姓名": "userName",
        "部门编号": "departId",
        "部门名称": "departName",
        "手机": "userMobile",
        "电话": "userTel",
        "邮箱": "userEmail",
    }
    assert (got.op_column, got.status_column) == (None, "状态")
    assert got.unmapped == ()


@pytest.mark.parametrize("column", ["员工ID", "工号"])
def test_hr_employee_id_spellings(column: str) -> None:
    assert mapping([column, "姓名"], preset="hr").field_of[column] == "userId"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(WECOM, "wecom"), (DINGTALK, "dingtalk"), (HR, "hr")],
    ids=["wecom", "dingtalk", "hr"],
)
def test_auto_picks_the_preset_from_the_header(header: list[str], expected: str) -> None:
    got = mapping(header)
    assert got.preset == expected
    assert any(f"column preset {expected!r}" in notice for notice in got.notices)


def test_auto_prefers_a_preset_that_finds_the_user_id() -> None:
    # 手机号/部门/姓名 are known to every preset; only dingtalk and hr know 工号, and dingtalk comes first.
    assert mapping(["手机号", "部门", "姓名", "工号"]).field_of["工号"] == "userId"


def test_document_names_match_whatever_the_case() -> None:
    got = mapping(["UserId", "USERNAME", "depart_name", "User Mobile", "userEmail"], preset="none")
    assert got.field_of == {
        "UserId": "userId",
        "USERNAME": "userName",
        "depart_name": "departName",
        "User Mobile": "userMobile",
        "userEmail": "userEmail",
    }
    assert got.preset is None


def test_preset_none_ignores_aliases() -> None:
    got = mapping(["姓名", "userId"], preset="none")
    assert got.field_of == {"userId": "userId"}
    assert got.unmapped == ("姓名",)


def test_header_names_are_compared_after_clean_up() -> None:
    got = mapping(["*姓名", "帐号(必填)", "手 机"], preset="wecom")
    assert got.field_of == {"*姓名": "userName", "帐号(必填)": "userId", "手 机": "userMobile"}


def test_presets_are_data_shipped_with_the_package() -> None:
    presets = load_presets()
    assert presets.names == ("wecom", "dingtalk", "hr", "beisen", "moka", "successfactors", "workday")
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert 'cvcsync = ["py.typed", "inputs/presets/*.json"]' in pyproject  # [tool.setuptools.package-data] ships them


# --- configuration ---------------------------------------------------------------------------------------------


def test_aliases_from_env_json() -> None:
    column_map = ColumnMap.from_env({ENV_COLUMN_MAP: '{"人员编码": "userId", "人员姓名": "UserName"}'})
    got = column_map.for_header(["人员编码", "人员姓名"])
    assert got.field_of == {"人员编码": "userId", "人员姓名": "userName"}


def test_preset_from_env() -> None:
    assert ColumnMap.from_env({ENV_COLUMN_PRESET: "DingTalk"}).preset == "dingtalk"
    assert ColumnMap.from_env({}).preset == "auto"


def test_bad_json_in_env_is_a_configuration_error_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=ENV_COLUMN_MAP) as caught:
        ColumnMap.from_env({ENV_COLUMN_MAP: '{"秘密列": userId'})
    assert "秘密列" not in str(caught.value)  # configuration values are not echoed


def test_env_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=f"{ENV_COLUMN_MAP} must be a JSON object"):
        ColumnMap.from_env({ENV_COLUMN_MAP: '["userId"]'})


def test_alias_to_an_unknown_field_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=f"{ENV_COLUMN_MAP}: column '人员编码' maps to 'userID2'"):
        ColumnMap.from_env({ENV_COLUMN_MAP: '{"人员编码": "userID2"}'})


def test_unknown_preset_in_env_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=ENV_COLUMN_PRESET):
        ColumnMap.from_env({ENV_COLUMN_PRESET: "feishu"})


def test_alias_null_ignores_a_column_without_reporting_it() -> None:
    got = mapping(["userId", "备注", "type"], aliases={"备注": None, "type": None})
    assert got.unmapped == ()
    assert got.ignored == ("备注", "type")
    assert got.op_column is None


def test_alias_can_name_the_operation_column() -> None:
    got = mapping(["userId", "变更"], aliases={"变更": "op"})
    assert got.op_column == "变更"
    assert got.apply({"userId": "1", "变更": "新增"}).op == OP_UPSERT


# --- priority and reporting ------------------------------------------------------------------------------------


def test_enterprise_email_has_priority_over_personal_and_fills_in_when_blank() -> None:
    header = ["帐号", "个人邮箱", "企业邮箱"]
    got = mapping(header, preset="wecom")
    assert got.field_of["企业邮箱"] == "userEmail"
    assert any("'企业邮箱' has priority" in notice for notice in got.notices)
    assert got.apply({"帐号": "a", "个人邮箱": "a@qq.example", "企业邮箱": "a@corp.example"}).fields["userEmail"] == (
        "a@corp.example"
    )
    assert got.apply({"帐号": "a", "个人邮箱": "a@qq.example", "企业邮箱": " "}).fields["userEmail"] == "a@qq.example"


def test_identity_fields_never_fall_back() -> None:
    got = mapping(["员工编号", "工号", "姓名"], preset="hr")
    assert got.field_of == {"员工编号": "userId", "姓名": "userName"}
    assert got.unmapped == ("工号",)
    assert got.apply({"员工编号": "", "工号": "G1", "姓名": "张三"}).fields["userId"] == ""


def test_configured_alias_beats_document_name_beats_preset() -> None:
    got = mapping(["工号", "userId", "人员编码"], preset="hr", aliases={"人员编码": "userId"})
    assert got.field_of == {"人员编码": "userId"}
    assert mapping(["工号", "userId"], preset="hr").field_of == {"userId": "userId"}


def test_leftmost_column_wins_a_tie() -> None:
    assert mapping(["userid", "UserId"]).field_of == {"userid": "userId"}


def test_unmapped_columns_are_reported() -> None:
    got = mapping(WECOM)
    assert got.unmapped == ("别名", "职务", "性别", "英文ID", "地址")
    assert "columns not used: '别名', '职务', '性别', '英文ID', '地址'" in got.notices


def test_a_header_without_a_user_id_column_says_so() -> None:
    got = mapping(["人员编码", "姓名"])
    assert any(notice.startswith("no column fills userId") and ENV_COLUMN_MAP in notice for notice in got.notices)


# --- the operation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["upsert", "create", "UPDATE", "add", "Insert", " upsert "])
def test_english_upsert_values(value: str) -> None:
    assert mapped(["userId", "op"], ["1", value]).op == OP_UPSERT


@pytest.mark.parametrize("value", ["新增", "修改", "更新", "在职", "正常"])
def test_chinese_upsert_values(value: str) -> None:
    assert mapped(["userId", "操作"], ["1", value]).op == OP_UPSERT


@pytest.mark.parametrize("value", ["delete", "Remove", "DISABLE", "删除", "离职", "停用"])
def test_delete_values(value: str) -> None:
    assert mapped(["userId", "action"], ["1", value]).op == OP_DELETE


@pytest.mark.parametrize("column", ["op", "operation", "action", "type", "操作", "操作类型", "Operation"])
def test_operation_column_names(column: str) -> None:
    assert mapping(["userId", column]).op_column == column


def test_a_blank_operation_is_not_stated() -> None:
    assert mapped(["userId", "op"], ["1", "  "]).op is None
    assert mapped(["userId"], ["1"]).op is None


def test_a_bad_operation_value_is_an_error_naming_column_and_value() -> None:
    with pytest.raises(RecordError) as caught:
        mapping(["userId", "操作"]).apply({"userId": "u1", "操作": "退休中"}, position="line 7")
    error = caught.value
    assert error.position == "line 7" and error.user_id == "u1"
    assert error.problems[0].field == "操作"
    assert "'退休中' is not an operation" in error.problems[0].reason


def test_an_operation_and_a_status_column_are_both_read() -> None:
    got = mapping(["userId", "状态", "操作"])
    assert (got.op_column, got.status_column) == ("操作", "状态")
    assert got.unmapped == ()
    assert any("a delete in either makes the row a delete" in notice for notice in got.notices)


def test_the_first_operation_column_is_used() -> None:
    got = mapping(["userId", "type", "op"])
    assert got.op_column == "op"
    assert any("'type' also look like an operation column" in notice for notice in got.notices)


def test_full_snapshot_status_left_means_delete() -> None:
    got = users_from("hr-delta.csv")
    ops = {user.user_id: op for _, user, op in got if isinstance(user, User)}
    assert ops == {
        "E1001": OP_UPSERT,  # 在职
        "E1002": OP_UPSERT,
        "E1003": OP_DELETE,  # 离职: the engine treats the user as absent
        "E1004": OP_UPSERT,  # 正常
        "E1005": OP_DELETE,  # 停用
        "E1006": OP_UPSERT,  # 试用
    }


# --- the employment status column ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    ["任职状态", "在职状态", "员工状态", "人员状态", "状态", "Worker Status", "Employment Status", "Status", "STATUS"],
)
def test_status_column_names(column: str) -> None:
    got = mapping(["userId", column])
    assert (got.op_column, got.status_column) == (None, column)
    assert f"column {column!r} holds each row's employment status" in got.notices


@pytest.mark.parametrize(
    "value",
    ["在职", "试用", "试用期", "实习", "正式", "正常", "在岗", "待离职", "Active", "ACTIVE", "Employed", "Probation",
     "Intern", "On Leave", "on_leave", "ON-LEAVE", "Leave of Absence", "ａｃｔｉｖｅ"],
)  # fmt: skip
def test_in_service_statuses_are_upserts(value: str) -> None:
    assert mapped(["userId", "任职状态"], ["1", value]).op == OP_UPSERT


@pytest.mark.parametrize(
    "value",
    ["离职", "已离职", "退休", "辞退", "解聘", "辞职", "停用", "Terminated", "terminated", "Inactive", "Retired",
     "Resigned", "Left", "Deceased", "Separated"],
)  # fmt: skip
def test_gone_statuses_are_deletes(value: str) -> None:
    assert mapped(["userId", "Worker Status"], ["1", value]).op == OP_DELETE


def test_a_blank_status_is_not_stated() -> None:
    assert mapped(["userId", "任职状态"], ["1", " "]).op is None


def test_an_unknown_status_refuses_the_row_listing_the_known_values_grouped() -> None:
    with pytest.raises(RecordError) as caught:
        mapping(["userId", "任职状态"]).apply({"userId": "u1", "任职状态": "待入职"}, position="line 4")
    error = caught.value
    assert (error.position, error.user_id, error.problems[0].field) == ("line 4", "u1", "任职状态")
    reason = error.problems[0].reason
    assert reason.startswith("'待入职' is not a known employment status (in service: 在职, ")
    in_service, gone = reason.split("; gone: ")
    listed = in_service.split("(in service: ")[1].split(", ")
    assert {"Active", "On Leave", "在职"} <= set(listed) and "离职" not in listed
    assert "离职" in gone and "Terminated" in gone and gone.endswith("; CVCSYNC_STATUS_VALUES adds more)")


@pytest.mark.parametrize(
    ("op", "status", "expected", "noticed"),
    [
        (
            "修改",
            "离职",
            OP_DELETE,
            "column '任职状态' says the person has left ('离职'): a delete, whatever column '操作' says",
        ),
        ("update", "Terminated", OP_DELETE, "says the person has left ('Terminated')"),
        ("删除", "在职", OP_DELETE, "column '操作' says delete: a delete, although column '任职状态' says '在职'"),
        ("新增", "在职", OP_UPSERT, None),
        ("", "离职", OP_DELETE, None),
        ("删除", "", OP_DELETE, None),
        ("", "", None, None),
    ],
)
def test_a_delete_in_either_the_operation_or_the_status_wins(
    op: str, status: str, expected: str | None, noticed: str | None
) -> None:
    got = mapped(["userId", "操作", "任职状态"], ["u1", op, status])
    assert got.op == expected
    assert (noticed is None and got.notices == ()) or (noticed is not None and noticed in got.notices[0])


def test_yes_no_status_columns_read_yes_and_no() -> None:
    assert mapped(["userId", "Active Status"], ["1", "Yes"]).op == OP_UPSERT
    assert mapped(["userId", "Active Status"], ["1", "No"]).op == OP_DELETE
    assert mapped(["userId", "是否在职"], ["1", "否"]).op == OP_DELETE
    assert ColumnMap().apply({"userId": "1", "Is Active": False}).op == OP_DELETE  # a JSON boolean
    assert mapped(["userId", "Active Status"], ["1", "Inactive"]).op == OP_DELETE
    with pytest.raises(RecordError, match="'Yes' is not a known employment status"):
        mapped(["userId", "Status"], ["1", "Yes"])  # "yes" answers "is active?" only where the column asks it


def test_status_values_from_env_add_and_move_values() -> None:
    column_map = ColumnMap.from_env({ENV_STATUS_VALUES: '{"待入职": "gone", "Suspended": "active", "退休": "active"}'})
    got = column_map.for_header(["userId", "任职状态"])
    assert got.apply({"userId": "1", "任职状态": "待入职"}).op == OP_DELETE
    assert got.apply({"userId": "1", "任职状态": "SUSPENDED"}).op == OP_UPSERT
    assert got.apply({"userId": "1", "任职状态": "退休"}).op == OP_UPSERT  # moved: a rehired retiree, say
    assert got.apply({"userId": "1", "任职状态": "离职"}).op == OP_DELETE  # the shipped values stay
    with pytest.raises(RecordError) as caught:
        got.apply({"userId": "1", "任职状态": "x"})
    assert "Suspended, 退休; gone:" in str(caught.value) and "待入职" in str(caught.value).split("gone:")[1]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"待入职": gone', f"{ENV_STATUS_VALUES} is not valid JSON"),
        ('["gone"]', f"{ENV_STATUS_VALUES} must be a JSON object"),
        ('{"待入职": "leaver"}', f"{ENV_STATUS_VALUES}: '待入职' maps to 'leaver'; expected \"active\" or \"gone\""),
        ('{" ": "gone"}', f"{ENV_STATUS_VALUES}: status values must be non-empty text"),
    ],
)
def test_bad_status_values_in_env_are_refused_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ColumnMap.from_env({ENV_STATUS_VALUES: raw})
    assert str(caught.value).startswith(message)


def test_an_alias_can_name_the_status_column() -> None:
    got = mapping(["userId", "在岗情况"], aliases={"在岗情况": "status"})
    assert got.status_column == "在岗情况"
    assert got.apply({"userId": "1", "在岗情况": "离职"}).op == OP_DELETE


def test_a_gone_row_with_a_full_width_id_deletes_the_cleaned_id() -> None:
    got = mapped(["工号", "任职状态"], ["ＢＳ００１", "离职"])
    assert (got.op, got.fields["userId"]) == (OP_DELETE, "BS001")
    assert mapped(["工号", "任职状态"], ["'0012", "离职"]).fields["userId"] == "0012"


def test_a_gone_row_whose_id_excel_damaged_is_refused_not_deleted() -> None:
    with pytest.raises(RecordError) as caught:
        mapping(["工号", "任职状态"]).apply({"工号": "1.21236E+09", "任职状态": "离职"}, position="line 3")
    assert str(caught.value) == (
        "line 3: user '1.21236E+09': userId: Excel turned this column into a number (1.21236E+09), "
        "which loses digits: format the column as Text, enter the ids again and export again"
    )


# --- a name in two columns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "cells", "name"),
    [
        (["userId", "First Name", "Last Name"], ["1", "Jane", "Doe"], "Jane Doe"),
        (["userId", "Given Name", "Family Name"], ["1", "Jane", "Doe"], "Jane Doe"),
        (["userId", "Given Name", "Surname"], ["1", "Jane", "Doe"], "Jane Doe"),
        (["userId", "FIRSTNAME", "LASTNAME"], ["1", "Jane", "Doe"], "Jane Doe"),
        (["userId", "Legal Name - First Name", "Legal Name - Last Name"], ["1", "Jane", "Doe"], "Jane Doe"),
        (["工号", "姓", "名"], ["1", "王", "小明"], "王小明"),
        (["工号", "名", "姓"], ["1", "小明", "王"], "王小明"),
        (["userId", "First Name", "Last Name"], ["1", "小明", "王"], "王小明"),
        (["userId", "First Name", "Last Name"], ["1", "민수", "김"], "김민수"),
        (["userId", "First Name", "Last Name"], ["1", "Jane", " "], "Jane"),
        (["userId", "First Name", "Last Name"], ["1", "", "Doe"], "Doe"),
    ],
)
def test_a_name_in_two_columns_fills_user_name(header: list[str], cells: list[str], name: str) -> None:
    got = mapped(header, cells)
    assert got.fields["userName"] == name
    assert parse_user(got.fields, defaults=GROUP).user_name == name


def test_name_parts_say_how_they_are_joined() -> None:
    got = mapping(["userId", "First Name", "Last Name"])
    assert "userName: from 'First Name' and 'Last Name', joined as CVCSYNC_NAME_ORDER=auto says" in got.notices
    assert not any(notice.startswith("no column fills userName") for notice in got.notices)
    assert got.unmapped == ()


def test_a_user_name_column_has_priority_and_the_parts_fill_in_where_it_is_blank() -> None:
    header = ["userId", "Preferred Name", "Legal Name - First Name", "Legal Name - Last Name"]
    got = mapping(header, preset="workday")
    assert got.field_of["Preferred Name"] == "userName"
    assert any("'Preferred Name' has priority, then 'Legal Name - First Name' and" in notice for notice in got.notices)
    assert got.apply(dict(zip(header, ["1", "May Lin", "Mei", "Lin"], strict=True))).fields["userName"] == "May Lin"
    assert got.apply(dict(zip(header, ["1", "", "Mei", "Lin"], strict=True))).fields["userName"] == "Mei Lin"


@pytest.mark.parametrize(
    ("order", "latin", "chinese"),
    [("auto", "Jane Doe", "王小明"), ("given-family", "Jane Doe", "小明王"), ("family-given", "Doe Jane", "王小明")],
)
def test_the_name_order_is_configurable(order: str, latin: str, chinese: str) -> None:
    got = ColumnMap.from_env({ENV_NAME_ORDER: order}).for_header(["userId", "First Name", "Last Name"])
    assert got.apply({"userId": "1", "First Name": "Jane", "Last Name": "Doe"}).fields["userName"] == latin
    assert got.apply({"userId": "1", "First Name": "小明", "Last Name": "王"}).fields["userName"] == chinese


def test_a_bad_name_order_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=f"{ENV_NAME_ORDER} must be one of auto|given-family|family-given"):
        ColumnMap.from_env({ENV_NAME_ORDER: "surname-first"})


def test_name_parts_are_not_plain() -> None:
    header = ["userId", "First Name", "Last Name", "userEmail"]
    with pytest.raises(ValueError, match="joined from its parts"):
        columns.PlainRows(mapping(header), GROUP, header)


# --- departments from path columns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    ["部门路径", "所属部门", "部门全路径", "组织路径", "Supervisory Organization", "Department Path", "Organization"],
)
def test_department_path_columns_fill_the_department_with_their_last_segment(column: str) -> None:
    got = mapped(["userId", column], ["1", "总公司 > 研发中心 > 平台部"])
    assert got.fields["departName"] == "平台部"


@pytest.mark.parametrize(
    "raw",
    ["总公司/研发中心/平台部", "总公司 / 研发中心 / 平台部", "总公司>研发中心>平台部", "总公司 - 研发中心 - 平台部",
     "总公司\\研发中心\\平台部", "总公司＼研发中心＼平台部", "总公司＞研发中心＞平台部", "总公司／研发中心／平台部",
     "总公司－研发中心－平台部", "平台部"],
)  # fmt: skip
def test_path_separators(raw: str) -> None:
    assert department_leaf(raw) == "平台部"
    assert mapped(["userId", "部门全路径"], ["1", raw]).fields["departName"] == "平台部"


def test_a_plain_department_column_has_priority_and_the_path_fills_in() -> None:
    header = ["工号", "部门", "部门全路径"]
    got = mapping(header)
    assert got.field_of["部门"] == "departName" and got.fallbacks["departName"] == ("部门全路径",)
    assert (
        got.apply({"工号": "1", "部门": "平台组", "部门全路径": "总公司/研发中心/平台部"}).fields["departName"]
        == "平台组"
    )
    filled = got.apply({"工号": "1", "部门": "", "部门全路径": "总公司/研发中心/平台部;总公司/质量部"})
    assert filled.fields["departName"] == "平台部"
    assert filled.notices == ("column '部门全路径' lists 2 departments; the first is used",)


@pytest.mark.parametrize(
    ("raw", "leaf", "count"),
    [
        ("总部/研发部,总部/质量部", "研发部", 2),
        ("总部/研发部，总部/质量部", "研发部", 2),
        ("总部/研发部、总部/质量部", "研发部", 2),
        ("总部/研发部\n总部/质量部", "研发部", 2),
        ("Sales, Marketing & PR", "Sales, Marketing & PR", 1),  # one name holding a comma
        ("总部/销售, 市场部", "销售, 市场部", 1),  # not every entry is a path
    ],
)
def test_commas_and_line_breaks_separate_departments_only_between_paths(raw: str, leaf: str, count: int) -> None:
    got = mapped(["帐号", "部门"], ["1", raw], preset="wecom")
    assert got.fields["departName"] == leaf
    assert (count > 1) == any("departments; the first is used" in notice for notice in got.notices)


def test_a_line_break_inside_a_department_becomes_a_space_with_a_notice() -> None:
    got = mapped(["帐号", "姓名", "部门"], ["1", "Anna\r\nSchmidt", "研发\n中心"], preset="wecom")
    assert (got.fields["userName"], got.fields["departName"]) == ("Anna Schmidt", "研发 中心")
    assert got.notices == (
        "column '姓名': a line break inside the cell was replaced by a space",
        "column '部门': a line break inside the cell was replaced by a space",
    )
    assert parse_user(got.fields, defaults=GROUP).depart_name == "研发中心"


def test_excel_text_in_an_id_or_phone_is_no_formula() -> None:
    got = mapped(["userId", "userMobile", "userName"], ['="0012"', '="13800138051"', '="张三"'])
    assert got.fields["userMobile"] == "13800138051"
    assert got.notices == ("column 'userName': starts like a spreadsheet formula ('=\"张三\"'); kept as text, never "
                           "evaluated",)  # fmt: skip


# --- the presets of each product --------------------------------------------------------------------------------

PRODUCT_HEADERS = {
    "wecom": WECOM,
    "dingtalk": DINGTALK,
    "hr": HR,
    "beisen": ["工号", "姓名", "性别", "任职状态", "部门", "部门全路径", "手机号码", "邮箱", "入职日期"],
    "moka": ["工号", "姓名", "员工状态", "部门", "部门路径", "手机号", "工作邮箱", "入职日期", "直属上级"],
    "successfactors": ["STATUS", "USERID", "USERNAME", "FIRSTNAME", "LASTNAME", "MI", "EMAIL", "DEPARTMENT", "DIVISION",
                       "BIZ_PHONE", "CELL_PHONE"],
    "workday": ["Employee ID", "Worker", "Legal Name - First Name", "Legal Name - Last Name", "Primary Work Email",
                "Primary Work Phone", "Primary Work Mobile Phone", "Supervisory Organization", "Worker Status"],
}  # fmt: skip


@pytest.mark.parametrize("preset", list(PRODUCT_HEADERS))
def test_auto_picks_each_products_preset(preset: str) -> None:
    assert mapping(PRODUCT_HEADERS[preset]).preset == preset


def test_successfactors_username_is_a_login_not_a_name() -> None:
    got = mapping(PRODUCT_HEADERS["successfactors"])
    assert got.field_of["USERID"] == "userId" and "USERNAME" not in got.field_of
    assert got.name_parts == ("FIRSTNAME", "LASTNAME")
    assert "column 'USERNAME' fills userId as preset 'successfactors' says, not userName" in got.notices


def test_a_column_spelled_as_the_document_is_never_claimed_by_a_preset() -> None:
    got = mapping(["userId", "userName", "Email", "Department"])
    assert got.field_of["userName"] == "userName" and got.field_of["userId"] == "userId"


def test_document_names_pick_no_preset() -> None:
    assert mapping(["userId", "userName", "userEmail", "userMobile"]).preset is None


def test_workday_maps_its_columns() -> None:
    got = mapping(PRODUCT_HEADERS["workday"])
    assert got.field_of == {
        "Employee ID": "userId",
        "Worker": "userName",
        "Supervisory Organization": "departName",
        "Primary Work Email": "userEmail",
        "Primary Work Phone": "userTel",
        "Primary Work Mobile Phone": "userMobile",
    }
    assert (got.status_column, got.name_parts) == (
        "Worker Status",
        ("Legal Name - First Name", "Legal Name - Last Name"),
    )


# --- value clean-up --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13800000001",
        "+86 13800000001",
        "+86-13800000001",
        "+8613800000001",
        "86-13800000001",
        "8613800000001",
        "0086 138 0000 0001",
        "138 0000 0001",
        "138-0000-0001",
        "(+86) 138-0000-0001",
        "１３８００００００01",
        "13800000001.0",
        " 13800000001 ",
    ],
)
def test_chinese_mobile_numbers_are_normalised_to_11_digits(raw: str) -> None:
    assert normalise_mobile(raw) == "13800000001"
    assert mapped(["userId", "userMobile"], ["1", raw]).fields["userMobile"] == "13800000001"


@pytest.mark.parametrize("raw", ["+1-415-555-0100", "+86 10 8888 8888", "0571-88880001", "12345", "1.38E+10"])
def test_other_numbers_are_left_alone(raw: str) -> None:
    assert normalise_mobile(raw) == raw


def test_mobile_given_as_a_json_number_is_normalised() -> None:
    assert ColumnMap().apply({"userId": "1", "userMobile": 8613800000001}).fields["userMobile"] == "13800000001"


@pytest.mark.parametrize(
    ("raw", "leaf"),
    [
        ("总部/研发部", "研发部"),
        ("总部-研发部", "研发部"),
        ("总部／研发部／运维组", "运维组"),
        ("研发部", "研发部"),
        ("-", ""),
    ],
)
def test_department_path_becomes_its_last_segment(raw: str, leaf: str) -> None:
    assert department_leaf(raw) == leaf
    assert mapped(["帐号", "部门"], ["1", raw], preset="wecom").fields["departName"] == leaf


@pytest.mark.parametrize("raw", ["总部/研发部;总部/质量部", "总部/研发部；总部/质量部", "研发部; 质量部;"])
def test_several_departments_use_the_first_with_a_notice(raw: str) -> None:
    got = mapped(["帐号", "部门"], ["1", raw], preset="wecom")
    assert got.fields["departName"] == "研发部"
    assert got.notices == ("column '部门' lists 2 departments; the first is used",)


def test_department_id_keeps_its_first_entry() -> None:
    assert mapped(["员工编号", "部门编号"], ["1", "D10;D20"], preset="hr").fields["departId"] == "D10"


def test_a_column_with_the_document_name_is_taken_literally() -> None:
    got = mapped(["userId", "departName", "departId"], ["1", "总部/研发部", "D-10"])
    assert got.fields == {"userId": "1", "departName": "总部/研发部", "departId": "D-10"}


@pytest.mark.parametrize(
    "cell",
    ['=HYPERLINK("http://x.example","点我")', "=1+1", "@SUM(A1:A2)", "+A1", "-2+3", "-cmd|' /C calc'!A0", " =1+1"],
)
def test_formula_like_cells_are_kept_as_text_and_flagged(cell: str) -> None:
    got = mapped(["userId", "userName"], ["1", cell])
    assert got.fields["userName"] == cell
    assert len(got.notices) == 1
    assert got.notices[0].startswith("column 'userName': starts like a spreadsheet formula")
    assert is_formula_like(cell.strip())


@pytest.mark.parametrize("cell", ["-", "+86 138-0000-0001", "-12.5", "0571-88880001", "张三", "a=b", "", "@", "="])
def test_numbers_and_plain_text_are_not_formulas(cell: str) -> None:
    assert not is_formula_like(cell)
    assert mapped(["userId", "userTel"], ["1", cell]).notices == ()


def test_spreadsheet_safe_escapes_only_formulas() -> None:
    assert spreadsheet_safe("=1+1") == "'=1+1"
    assert spreadsheet_safe("张三") == "张三"


# --- speed: resolved once per file -----------------------------------------------------------------------------


def test_a_header_is_resolved_once_per_file(monkeypatch: pytest.MonkeyPatch) -> None:
    column_map = ColumnMap()
    calls: list[tuple[str, ...]] = []
    resolve = column_map._resolve

    def counting(header: tuple[str, ...]) -> HeaderMapping:
        calls.append(header)
        return resolve(header)

    monkeypatch.setattr(column_map, "_resolve", counting)
    header = ["帐号", "姓名", "部门"]
    for n in range(1000):
        column_map.apply({"帐号": str(n), "姓名": "张三", "部门": "总部/研发部"})
    assert calls == [tuple(header)]


def test_json_records_are_resolved_once_per_key_set() -> None:
    column_map = ColumnMap()
    first = column_map.for_record({"userId": "1", "userName": "a"})
    assert column_map.for_record({"userId": "2", "userName": "b"}) is first
    assert column_map.for_record({"userId": "3"}) is not first


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CACHE_SIZE", 4)
    column_map = ColumnMap()
    for n in range(20):
        column_map.for_header(["userId", f"extra{n}"])
    assert len(column_map._cache) <= 4


# --- the sample exports ----------------------------------------------------------------------------------------

SAMPLES = ("wecom-members.csv", "dingtalk-contacts.csv", "hr-delta.csv", "excel-unicode-text.txt")
READERS = ("test_columns.py", "test_export_values.py")  # the values-* samples are test_export_values.py's


def test_every_sample_export_of_the_column_mapping_is_read_by_a_test() -> None:
    ours = [name for name in export_names() if name in SAMPLES or name.startswith("values-")]
    assert set(SAMPLES) <= set(ours) and len(ours) > len(SAMPLES)
    sources = "".join((Path(__file__).parent / name).read_text(encoding="utf-8") for name in READERS)
    assert [name for name in ours if f'"{name}"' not in sources] == []


def test_wecom_export_gbk_with_paths_and_plus86() -> None:
    got = {user.user_id: user for _, user, _ in users_from("wecom-members.csv") if isinstance(user, User)}
    assert len(got) == 6
    assert got["zhangwei"].to_cvc() == {
        "userId": "zhangwei",
        "userName": "张伟",
        "departName": "研发部",
        "userEmail": "zhangwei@corp.example.com",
        "userTel": "0571-88880001",
        "userMobile": "13800000001",
        **GROUP,
    }
    assert got["lina"].user_email == "lina@example.com"  # no 企业邮箱: 个人邮箱 fills in
    assert got["yanglei"].depart_name == "运维组"
    assert {user.user_mobile for user in got.values()} == {f"1380000000{n}" for n in range(1, 7)}


def test_dingtalk_export_with_bom_and_dash_paths() -> None:
    got = {user.user_id: user for _, user, _ in users_from("dingtalk-contacts.csv") if isinstance(user, User)}
    assert sorted(got) == ["D0001", "D0002", "D0003", "D0004", "D0005"]
    assert got["D0001"].user_mobile == "13800000011"
    assert got["D0001"].user_tel == "8011"
    assert got["D0003"].depart_name == "前端组"
    assert got["D0005"].user_mobile == "+1-415-555-0100"


def test_hr_delta_export_reports_the_unknown_status() -> None:
    got = users_from("hr-delta.csv")
    errors = [(line, error) for line, error, _ in got if isinstance(error, RecordError)]
    assert [(line, error.problems[0].field) for line, error in errors] == [(8, "状态")]
    assert "'待入职' is not a known employment status (in service: 在职, " in str(errors[0][1])


def test_excel_unicode_text_export_utf16_tab_separated() -> None:
    got = users_from("excel-unicode-text.txt")
    users = [user for _, user, _ in got if isinstance(user, User)]
    assert [line for line, _, _ in got] == [2, 3, 4, 5, 6]
    assert [u.user_id for u in users] == ["H001", "H002", "H003", "H004", "H005"]
    assert users[2].user_mobile == "13800000033"
    assert users[0].depart_name == "人事部"


# --- the plain fast path (PlainRows) ---------------------------------------------------------------------------

PLAIN_HEADERS = [
    ["userId", "userName", "groupId", "groupName", "departId", "departName", "userEmail", "userMobile"],
    ["工号", "姓名", "部门", "手机", "座机", "邮箱", "状态"],  # aliases: departName cleaned, 状态 is the status
    ["帐号", "姓名", "企业邮箱", "个人邮箱", "手机", "userAvatarUrl"],  # an e-mail with a fallback column
    ["userId", "userName", "op", "userTel"],
    ["工号", "姓名", "任职状态", "部门", "部门全路径", "手机号码", "邮箱"],  # a status; a path filling in for 部门
    [
        "Employee ID",
        "Preferred Name",
        "Legal Name - First Name",
        "Legal Name - Last Name",
        "Worker Status",
        "Work Email",
    ],
    ["userId", "userName", "op", "任职状态", "departId"],  # an operation and a status
]
PLAIN_DEFAULTS = [{}, GROUP, {"groupId": " 88 ", "groupName": "示例%s科技"}, {"groupId": "8\x008"}]
ODD_CELLS = [
    "", " ", "a b", " a", "a ", "=1+1", "+86 138 0000 0001", "-x", "@x", "13800000001", "1380000000１", "a@b.co",
    "a@b", "=a@b.co", "总部/研发部", "研发部;财务部", "研发部", "u-1", 'a"b', "a\\b", "a\tb", "a\u3000", "\ud800",
    "a\u241fb", "x" * 65, "x" * 129, "http://x.y/a.png", "https://", "ftp://x", "在职", "离职", "delete", "Upsert",
    "0571-88886666", "(0571) 8888", "😀", "a%sb", "ＢＳ００１", "'0012", '="0012"', "1.21235E+09", "1E001",
    "1.38001E+10", "'13800138052", "a＠b.cn", "黄 强", "Li  Wei", "a\u2028b", "a\nb", "Anna\r\nSchmidt",
    "总部 > 研发部", "Active", "Terminated", "待入职", "Yes", "D-1", "Ｄ1",
]  # fmt: skip
odd_cells = st.sampled_from(ODD_CELLS)


GOOD_CELLS = {
    "userEmail": st.from_regex(r"[a-z0-9.+\-]{1,8}@[a-z0-9\-]{1,6}\.[a-z]{2,3}", fullmatch=True),
    "userMobile": st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    "userTel": st.from_regex(r"[0-9][0-9 ()\-]{2,12}", fullmatch=True),
    "userAvatarUrl": st.from_regex(r"https?://[a-z./ ]{0,12}", fullmatch=True),
    "op": st.sampled_from(["", "在职", "upsert", "Upsert", "离职", "delete", " ", "x"]),
    "status": st.sampled_from(["", "在职", "试用", "Active", "active", "On Leave", "离职", "Terminated", " ", "x"]),
}


def good_cell(target: str | None) -> st.SearchStrategy[str]:
    text = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=8)
    return GOOD_CELLS.get(target or "", text)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PLAIN_HEADERS), st.sampled_from(PLAIN_DEFAULTS), st.data())
def test_a_plain_row_gives_what_the_full_path_gives(header: list[str], defaults: dict[str, str], data: Any) -> None:
    targets = dict(ColumnMap().for_header(header).field_of)
    targets[ColumnMap().for_header(header).op_column or ""] = "op"
    targets[ColumnMap().for_header(header).status_column or ""] = "status"
    cells = [data.draw(good_cell(targets.get(column))) for column in header]
    for at in data.draw(st.lists(st.integers(0, len(header) - 1), max_size=2)):  # spoil a cell or two
        cells[at] = data.draw(st.one_of(odd_cells, st.text(max_size=4)))
    mapping_ = ColumnMap().for_header(header)
    try:
        plain = columns.PlainRows(mapping_, defaults, header)
    except ValueError:
        return
    found = plain.user_json(cells)
    record = dict(zip(header, cells, strict=True))
    assert columns.PlainRows(mapping_, defaults, None).user_json(record) == found  # the same for a JSON record
    if found is None:
        return
    result = mapping_.apply(record)
    assert result.op != OP_DELETE and not result.notices
    user = parse_user(result.fields, defaults=defaults)
    assert found == (user.user_id, user.to_json().decode())
    assert fast_user_json(result.fields, defaults) == (user.user_id, user.to_json())


def test_ordinary_rows_are_plain() -> None:
    header = PLAIN_HEADERS[1]
    plain = columns.PlainRows(mapping(header), GROUP, header)
    assert plain.user_json(["E1", "王伟", "研发部", "13800000001", "0571-88886666", "a@corp.example", "在职"]) == (
        "E1",
        '{"userId":"E1","userName":"王伟","groupId":"88","groupName":"示例科技","departName":"研发部",'
        '"userEmail":"a@corp.example","userTel":"0571-88886666","userMobile":"13800000001"}',
    )
    assert plain.user_json(["E2", "李娜", "", "", "", "", ""]) == (
        "E2",
        '{"userId":"E2","userName":"李娜","groupId":"88","groupName":"示例科技"}',
    )
    assert plain.user_json(["E3", "张三", "总部/研发部", "13800000001", "", "", "在职"]) is None  # a path to clean
    assert plain.user_json(["E4", "张三", "研发部", "13800000001", "", "", "离职"]) is None  # a delete
