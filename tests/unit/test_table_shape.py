"""The shape of a table (``cvcsync.inputs.table_shape``): the header found below title rows, summary rows skipped,
one named test per rule, on CSV text (the spreadsheet rows take the same rules: see test_xlsx_rows.py)."""

from __future__ import annotations

import io

import pytest

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.readers import RecordStream, read_records
from cvcsync.inputs.table_shape import (
    HEADER_SEARCH_ROWS,
    MAX_NOTICES,
    TableShape,
    column_recogniser,
    default_recogniser,
)

HEADER = "工号,姓名,部门,手机号,邮箱,职位"


def read(text: str, name: str = "u.csv", mapper: ColumnMap | None = None) -> RecordStream:
    stream = read_records(io.BytesIO(text.encode()), name=name)
    if mapper is not None:
        stream.recogniser = column_recogniser(mapper)
    return stream


def lines_and_ids(stream: RecordStream) -> list[tuple[int, str | None]]:
    return [(row.line, row.error or next(iter(row.data.values()))) for row in stream]


# --- the header ------------------------------------------------------------------------------------------------


def test_the_header_is_found_below_title_notes_and_blank_rows() -> None:
    stream = read(
        "钉钉通讯录导出（导出时间：2026-11-30 10:00）\n说明：1. 带*为必填项，2. 手机号请勿加空格\n\n"
        f"{HEADER}\n000123,张伟,研发部,13800138001,zw@example.com,工程师\n"
    )
    rows = list(stream)
    assert [(row.line, row.data["工号"], row.data["手机号"]) for row in rows] == [(5, "000123", "13800138001")]
    assert stream.notices == [
        "line 1: skipped above the header: '钉钉通讯录导出（导出时间：2026-11-30 10:00）'",
        "line 2: skipped above the header: '说明：1. 带*为必填项，2. 手机号请勿加空格'",
    ]


def test_a_second_header_row_of_labels_is_skipped_with_a_notice_not_read_as_a_user() -> None:
    """SuccessFactors' user data file: technical names, then the labels; and a header pasted twice."""
    stream = read(
        "STATUS,USERID,USERNAME,FIRSTNAME,MI,LASTNAME,EMAIL,DEPARTMENT\n"
        "Status,User ID,Username,First Name,Middle Name,Last Name,Email,Department\n"
        "active,sf-001,lwei,Wei,,Li,lwei@example.com,R&D\n"
    )
    assert lines_and_ids(stream) == [(3, "active")]
    assert stream.notices == [
        "line 2: skipped a second header row (the columns' labels): 'Status, User ID, Username, First Name, M…'"
    ]
    again = read(f"{HEADER}\n\n{HEADER}\n000123,张伟,研发部,13800138001,zw@example.com,工程师\n")
    assert lines_and_ids(again) == [(4, "000123")] and len(again.notices) == 1


def test_a_user_whose_values_happen_to_name_one_column_is_still_a_user() -> None:
    stream = read(f"{HEADER}\n000123,姓名,研发部,13800138001,zw@example.com,工程师\n")
    assert lines_and_ids(stream) == [(2, "000123")] and stream.notices == []


def test_title_rows_with_more_or_fewer_cells_than_the_header_break_nothing() -> None:
    text = f"标题\n导出时间,2026-11-30,,,,,,,,,\n,,,,,,,\n{HEADER}\n1,张伟,研发部,,,\n2,李娜,市场部,,,\n"
    rows = list(read(text))
    assert [(row.line, row.data["姓名"], row.error) for row in rows] == [(5, "张伟", None), (6, "李娜", None)]


def test_a_header_of_columns_named_with_stars_and_required_markers_is_recognised() -> None:
    stream = read("通讯录\n工号*,姓名(必填),手机号\n1,张伟,13800138001\n")
    assert [row.data for row in stream] == [{"工号*": "1", "姓名(必填)": "张伟", "手机号": "13800138001"}]
    assert default_recogniser()(["工号*", "姓名(必填)", "手机号", "备注"]) == 3


def test_the_header_is_found_with_the_delimiter_it_uses_not_the_titles() -> None:
    stream = read("员工花名册, 2026年11月\n\n员工编号;姓名;部门名称\nE1;赵敏;研发部\n")
    assert [(row.line, row.data) for row in stream] == [(4, {"员工编号": "E1", "姓名": "赵敏", "部门名称": "研发部"})]


def test_a_quoted_notes_cell_over_several_lines_above_the_header_is_one_skipped_row() -> None:
    stream = read(f'"说明：\n1. 带*为必填项\n2. 部门以/分隔"\n{HEADER}\n1,张伟,研发部,,,\n')
    assert [row.line for row in stream] == [5]
    assert stream.notices == ["line 1: skipped above the header: '说明： 1. 带*为必填项 2. 部门以/分隔'"]


def test_without_a_recognisable_header_the_first_non_blank_row_is_the_header_as_before() -> None:
    stream = read("\n部门编码,名称\nA1,研发部\n")
    assert [(row.line, row.data) for row in stream] == [(3, {"部门编码": "A1", "名称": "研发部"})]
    assert stream.notices == []
    with pytest.raises(InvalidInputError, match="line 1: the header repeats column"):
        list(read("a,a\n1,2\n"))


def test_the_header_is_searched_in_the_first_20_non_blank_rows_only() -> None:
    titles = "".join(f"说明第{n}行\n\n" for n in range(HEADER_SEARCH_ROWS))
    stream = read(titles + f"{HEADER}\n1,张伟,研发部,,,\n")
    rows = list(stream)
    assert rows[0].data == {"说明第0行": "说明第1行"}  # the first row stayed the header
    assert rows[-1].error == "has 6 cells but the header has 1" and stream.notices == []


def test_a_damaged_line_above_the_header_still_refuses_the_file() -> None:
    with pytest.raises(InvalidInputError, match="line 1: before or in the header") as caught:
        list(read(f"标题\x00\n{HEADER}\n1,张伟,研发部,,,\n"))
    assert caught.value.code == "BadHeader"


def test_what_is_known_is_the_column_maps_to_say() -> None:
    text = "人事系统导出\n人员编码,人员姓名,备注\nP1,赵敏,x\n"
    custom = ColumnMap("none", {"人员编码": "userId", "人员姓名": "userName"})
    assert [row.line for row in read(text, mapper=custom)] == [3]
    assert [row.line for row in read(text)] == [2, 3]  # the title was the header: no preset knows these names
    recognise = column_recogniser(ColumnMap("none", {"姓名": None}))
    assert recognise(["userId", "userName", "姓名", "工号"]) == 2  # presets off, 姓名 ignored: only the fields
    assert column_recogniser(ColumnMap("wecom"))(["帐号", "姓名", "员工编号"]) == 2  # 员工编号 is the hr preset's
    assert column_recogniser(ColumnMap())(["帐号", "姓名", "员工编号", "部门", "备注"]) == 4


# --- summary rows ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        "合计,4人,,,,",
        "总计：,4,,,,",
        "小计,2",
        "Total,3,,,,",
        "GRAND TOTAL:,3,,,,",
        "ｔｏｔａｌ,3,,,,",
        "Sum,3",
        "count: ,3",
        "共 3 条记录",
        "共3人,,,,,",
        "合计：4人",
        " Total: 3 ",
        ",,合计,3,,",
    ],
)
def test_a_summary_row_is_skipped_with_a_notice_never_a_user(row: str) -> None:
    stream = read(f"{HEADER}\n1,张伟,研发部,,,\n{row}\n")
    assert [(line, value) for line, value in lines_and_ids(stream)] == [(2, "1")]
    assert stream.notices == [f"line 3: skipped a summary row, not a user: {_quoted(row)}"]


def _quoted(row: str) -> str:
    return "'" + ", ".join(cell.strip() for cell in row.split(",") if cell.strip()) + "'"


def test_a_user_called_total_in_a_filled_row_is_a_user() -> None:
    stream = read("姓名,工号,手机号\nTotal,0007,13800138007\nSum,0008,\n")
    assert [row.data for row in stream] == [
        {"姓名": "Total", "工号": "0007", "手机号": "13800138007"},
        {"姓名": "Sum", "工号": "0008", "手机号": ""},
    ]
    assert stream.notices == []


def test_a_marker_that_is_not_the_first_filled_cell_or_not_a_marker_word_is_data() -> None:
    stream = read(f"{HEADER}\n1,合计,,,,\nTotals,3,,,,\n共有,3,,,,\n")
    assert [line for line, _ in lines_and_ids(stream)] == [2, 3, 4] and stream.notices == []


def test_a_row_longer_than_the_header_is_still_an_error_even_with_a_marker() -> None:
    stream = read("工号,姓名\n1,张伟\n合计,1,x\n")
    assert lines_and_ids(stream) == [(2, "1"), (3, "has 3 cells but the header has 2")]


def test_skipped_rows_are_counted_after_the_first_notices() -> None:
    stream = read(HEADER + "\n" + "合计,1\n" * (MAX_NOTICES + 10))
    assert list(stream) == []
    assert len(stream.notices) == MAX_NOTICES + 1
    assert stream.notices[-1] == "10 more rows skipped above the header or as summaries"


def test_previews_mask_mobiles_and_emails_and_are_short() -> None:
    notices: list[str] = []
    shape = TableShape(None, notices)
    shape.skipped_above(1, ["联系人：13800138000", "hr@example.com"])
    shape.skipped_above(2, ["说明" * 40])
    assert notices[0] == "line 1: skipped above the header: '联系人：138****8000, h***@example.com'"
    assert "13800138000" not in notices[0] and notices[1].endswith("说明说明…'")
    assert len(notices[1]) < 80


def test_split_finds_the_header_in_any_rows_and_leaves_the_rest() -> None:
    notices: list[str] = []
    rows = iter([(1, ["标题"]), (2, []), (3, ["工号", "姓名"]), (4, ["1", "张伟"])])
    found = TableShape(None, notices).split(rows)
    assert found is not None
    line, header, rest = found
    assert (line, header, list(rest)) == (3, ["工号", "姓名"], [(4, ["1", "张伟"])])
    assert notices == ["line 1: skipped above the header: '标题'"]
    assert TableShape(None, []).split(iter([(1, ["", " "])])) is None
