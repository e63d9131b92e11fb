"""Spreadsheets (``cvcsync.inputs.xlsx_rows``): cells as text, row numbers as lines, the sheet chosen, streams that
cannot seek, damaged workbooks, and the sample workbooks in events/exports read end to end."""

from __future__ import annotations

import datetime
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.config import ENV_SHEET
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.readers import RecordStream, SourceRow, read_records
from cvcsync.inputs.xlsx_rows import cell_text
from support import make_sheet_exports
from support.exports import EXPORTS_DIR, export_names, export_path

DINGTALK = "sheet-dingtalk-contacts.xlsx"
WECOM = "sheet-wecom-members.xlsx"


def workbook(*rows: list[Any], title: str = "Sheet1", more: dict[str, list[list[Any]]] | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for name, extra in (more or {}).items():
        other = book.create_sheet(name)
        for row in extra:
            other.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def sample(name: str, **kwargs: Any) -> RecordStream:
    return read_records(io.BytesIO(export_path(name).read_bytes()), name=name, **kwargs)


def data(rows: RecordStream | list[SourceRow]) -> list[tuple[int, Any]]:
    return [(row.line, row.error or row.data) for row in rows]


# --- cells as text ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("000123", "000123"),
        (" 张伟 ", " 张伟 "),
        (None, ""),
        ("", ""),
        (13800138001, "13800138001"),
        (8613800138043, "8613800138043"),
        (13800138001.0, "13800138001"),
        (8613800138043.0, "8613800138043"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (1234.5678, "1234.5678"),
        (1.2345678901234568e17, "1.23456789012346E+17"),
        (-1.2345678901234568e17, "-1.23456789012346E+17"),
        (1e16, "1E+16"),
        (1.5e-07, "1.5E-07"),
        (True, "TRUE"),
        (False, "FALSE"),
        (datetime.date(2026, 3, 1), "2026-03-01"),
        (datetime.datetime(2026, 3, 1), "2026-03-01"),
        (datetime.datetime(2026, 3, 1, 9, 30), "2026-03-01T09:30:00"),
        (datetime.datetime(2026, 3, 1, 9, 30, 0, 500000), "2026-03-01T09:30:00.500"),
        (datetime.time(9, 30), "09:30:00"),
        (datetime.timedelta(hours=27, minutes=5, seconds=9), "27:05:09"),
    ],
)
def test_cell_text(value: Any, text: str) -> None:
    assert cell_text(value) == text


def test_cells_keep_their_text_through_a_real_workbook() -> None:
    values = ["000123", 13800138001, 13800138001.0, 8613800138043, 1.2345678901234568e17, 0.25, True]
    dates = [datetime.date(2026, 3, 1), datetime.datetime(2026, 3, 1, 9, 30), "#N/A"]
    got = list(read_records(io.BytesIO(workbook(["工号", "姓名", *"abcdefghij"], ["x", "y", *values, *dates]))))
    assert list(got[0].data.values()) == [
        "x",
        "y",
        "000123",
        "13800138001",
        "13800138001",
        "8613800138043",
        "1.23456789012346E+17",
        "0.25",
        "TRUE",
        "2026-03-01",
        "2026-03-01T09:30:00",
        "#N/A",
    ]


def test_a_number_cell_formatted_with_zero_padding_keeps_its_zeros_as_excel_shows_them() -> None:
    """Employee numbers kept as numbers formatted ``000000``: Excel shows (and its CSV export writes) 000123; only
    a format of zeros alone pads (``0``, ``0.00`` and General do not)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["userId", "userName", "groupId", "groupName", "note"])
    sheet.append([123, "甲", 88, "示例科技", 7])
    sheet.append([4567890, "乙", 88, "示例科技", 7.5])
    for row in (2, 3):
        sheet.cell(row=row, column=1).number_format = "000000"
        sheet.cell(row=row, column=3).number_format = "0"
        sheet.cell(row=row, column=5).number_format = "0.00"
    buffer = io.BytesIO()
    book.save(buffer)
    got = [list(row.data.values()) for row in read_records(io.BytesIO(buffer.getvalue()), name="ids.xlsx")]
    assert got == [["000123", "甲", "88", "示例科技", "7"], ["4567890", "乙", "88", "示例科技", "7.5"]]


def test_a_workbook_with_a_second_header_row_of_labels_reads_only_its_users() -> None:
    book = workbook(
        ["STATUS", "USERID", "USERNAME", "FIRSTNAME", "LASTNAME", "EMAIL"],
        ["Status", "User ID", "Username", "First Name", "Last Name", "Email"],
        ["active", "sf-001", "lwei", "Wei", "Li", "lwei@example.com"],
    )
    stream = read_records(io.BytesIO(book), name="UserDataFile.xlsx")
    assert [(row.line, row.data["USERID"]) for row in stream] == [(3, "sf-001")]
    assert stream.notices[0].startswith("line 2: skipped a second header row (the columns' labels)")


def test_rows_are_padded_to_the_header_and_a_value_beyond_it_is_an_error_row() -> None:
    raw = workbook(["工号", "姓名", "部门"], ["1", "张伟"], ["2", "李娜", "研发部", None, None], ["3", "王芳", "", "x"])
    assert data(read_records(io.BytesIO(raw))) == [
        (2, {"工号": "1", "姓名": "张伟", "部门": ""}),
        (3, {"工号": "2", "姓名": "李娜", "部门": "研发部"}),
        (4, "has 4 cells but the header has 3"),
    ]


def test_lines_are_the_sheets_row_numbers_across_blank_and_missing_rows() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A3"], sheet["B3"] = "工号", "姓名"
    sheet["A4"], sheet["B4"] = "1", "张伟"
    sheet["A9"], sheet["B9"] = "2", "李娜"  # rows 5-8 are not in the file at all
    buffer = io.BytesIO()
    book.save(buffer)
    assert [row.line for row in read_records(io.BytesIO(buffer.getvalue()))] == [4, 9]


def test_a_wrong_stored_dimension_does_not_cut_the_sheet() -> None:
    """Some writers store ``<dimension ref="A1"/>`` whatever the sheet holds; openpyxl would trust it."""
    raw = workbook(["工号", "姓名", "部门"], ["1", "张伟", "研发部"], ["2", "李娜", "市场部"])
    source, target = zipfile.ZipFile(io.BytesIO(raw)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as rewritten:
        for item in source.infolist():
            body = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body.replace(b'<dimension ref="A1:C3" />', b'<dimension ref="A1" />')
                assert b'<dimension ref="A1" />' in body
            rewritten.writestr(item, body)
    assert data(read_records(io.BytesIO(target.getvalue()))) == [
        (2, {"工号": "1", "姓名": "张伟", "部门": "研发部"}),
        (3, {"工号": "2", "姓名": "李娜", "部门": "市场部"}),
    ]


# --- the sample workbooks --------------------------------------------------------------------------------------


def test_the_dingtalk_sample_reads_its_users_with_excel_row_numbers() -> None:
    stream = sample(DINGTALK)
    assert data(stream) == [
        (5, dict(zip(make_sheet_exports.DINGTALK_HEADER, ["000123", "张伟", "总部/研发部", "13800138001", "zhangwei@example.com", "工程师", "2026-03-01", ""], strict=True))),  # noqa: E501
        (6, dict(zip(make_sheet_exports.DINGTALK_HEADER, ["000124", "王芳", "总部/财务部", "8613800138043", "", "会计", "2026-03-02T09:30:00", "试用期"], strict=True))),  # noqa: E501
        (7, dict(zip(make_sheet_exports.DINGTALK_HEADER, ["000125", "李娜", "华东分公司/市场部", "13800138005", "lina@example.com", "经理", "2025-07-15", ""], strict=True))),  # noqa: E501
    ]  # fmt: skip
    assert stream.notices == [
        "line 1: skipped above the header: '钉钉通讯录导出（导出时间：2026-11-30 10:00）'",
        "line 2: skipped above the header: '说明：1. 带*为必填项；2. 手机号请勿加空格；3. 部门层级以“/”分隔，如…'",
        "line 8: skipped a summary row, not a user: '合计, 3人'",
    ]


def test_cells_mode_hands_on_the_header_and_cell_lists_of_its_width() -> None:
    stream = sample(WECOM)
    got = list(stream.cells())
    assert stream.header == tuple(make_sheet_exports.WECOM_HEADER)
    assert [(line, cells[1], len(cells)) for line, cells in got] == [  # type: ignore[misc]
        (3, "chenjing", 10),
        (4, "sunyue", 10),
        (5, "tomli", 10),
    ]
    assert stream.notices[-1] == "line 6: skipped a summary row, not a user: 'Total, 3'"


@pytest.mark.parametrize("name", ["export.csv", "export", None, "export.xlsx.gz"])
def test_a_workbook_is_told_by_its_content_whatever_its_name(name: str | None) -> None:
    raw = export_path(DINGTALK).read_bytes()
    if name and name.endswith(".gz"):
        raw = gzip.compress(raw)
    assert [row.data["工号*"] for row in read_records(io.BytesIO(raw), name=name)] == ["000123", "000124", "000125"]


# --- the sheet ------------------------------------------------------------------------------------------------


def test_the_first_visible_sheet_is_read_by_default() -> None:
    book = openpyxl.Workbook()
    hidden = book.active
    assert hidden is not None
    hidden.title, hidden.sheet_state = "下拉选项", "hidden"
    hidden.append(["男", "女"])
    book.create_sheet("成员").append(["帐号", "姓名"])
    book["成员"].append(["u1", "张伟"])
    buffer = io.BytesIO()
    book.save(buffer)
    assert data(read_records(io.BytesIO(buffer.getvalue()))) == [(2, {"帐号": "u1", "姓名": "张伟"})]


def test_cvcsync_sheet_names_the_sheet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SHEET, "部门列表")
    assert data(sample(WECOM)) == [
        (2, {"部门ID": "1", "部门名称": "示例科技", "上级部门ID": ""}),
        (3, {"部门ID": "2", "部门名称": "产品部", "上级部门ID": "1"}),
    ]
    monkeypatch.setenv(ENV_SHEET, " 成员列表 ")  # spaces around it, as a console may keep them
    assert [row.line for row in sample(WECOM)] == [3, 4, 5]


def test_a_sheet_name_matches_ignoring_case_and_width() -> None:
    raw = workbook(["工号", "姓名"], ["1", "a"], more={"Members": [["工号", "姓名"], ["2", "b"]]})
    assert [row.data["工号"] for row in read_records(io.BytesIO(raw), sheet="ＭＥＭＢＥＲＳ")] == ["2"]


def test_an_unknown_sheet_is_refused_listing_the_sheets_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SHEET, "员工")
    with pytest.raises(InvalidInputError) as caught:
        list(sample(WECOM))
    assert caught.value.code == "UnknownSheet"
    assert caught.value.message == (
        "CVCSYNC_SHEET names the sheet '员工', which the workbook does not have; its sheets: '成员列表', '部门列表'"
    )


# --- where the bytes come from ---------------------------------------------------------------------------------


class OneWayStream(io.RawIOBase):
    """An object store's body: read once, no seeking."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_stream_that_cannot_seek_is_copied_to_a_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    spooled: list[Any] = []
    real = tempfile.TemporaryFile

    def counting(*args: Any, **kwargs: Any) -> Any:
        spooled.append(real(*args, **kwargs))
        return spooled[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", counting)
    got = list(read_records(OneWayStream(export_path(DINGTALK).read_bytes()), name="upload"))  # type: ignore[arg-type]
    assert [row.line for row in got] == [5, 6, 7]
    assert len(spooled) == 1 and spooled[0].closed  # copied once, and cleaned up


def test_a_seekable_stream_is_read_in_place_from_where_it_stood(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a seekable stream needs no copy")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    stream = io.BytesIO(b"leading bytes" + export_path(DINGTALK).read_bytes())
    stream.seek(len(b"leading bytes"))
    assert [row.line for row in read_records(stream)] == [5, 6, 7]


# --- what is refused ------------------------------------------------------------------------------------------


def test_a_truncated_workbook_is_refused_clearly() -> None:
    raw = export_path(DINGTALK).read_bytes()
    with pytest.raises(InvalidInputError, match="damaged or truncated") as caught:
        list(read_records(io.BytesIO(raw[: len(raw) // 2]), name="export.xlsx"))
    assert caught.value.code == "BadWorkbook"


def test_a_workbook_with_a_damaged_part_is_refused_clearly() -> None:
    source, target = zipfile.ZipFile(io.BytesIO(export_path(DINGTALK).read_bytes())), io.BytesIO()
    with zipfile.ZipFile(target, "w") as rewritten:
        for item in source.infolist():
            body = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body[: len(body) // 2]  # the sheet's XML cut in the middle
            rewritten.writestr(item, body)
    with pytest.raises(InvalidInputError) as caught:
        list(read_records(io.BytesIO(target.getvalue()), name="export.xlsx"))
    assert caught.value.code == "BadWorkbook"
    assert caught.value.message.startswith("the workbook '通讯录' is damaged or not a valid .xlsx (")


def test_a_zip_named_xlsx_that_holds_no_workbook_is_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        list(read_records(io.BytesIO(export_path("sheet-archive.zip").read_bytes()), name="通讯录.xlsx"))
    assert caught.value.code == "ZipArchive"
    assert caught.value.message == (
        "the file is named .xlsx but is no workbook, only a zip archive (it holds 1 file(s): '通讯录.csv'): "
        "upload the export inside it, not the archive"
    )


@pytest.mark.parametrize(
    ("members", "code", "says"),
    [
        ({"xl/workbook.bin": b""}, "UnsupportedSpreadsheet", "an Excel binary workbook (.xlsb)"),
        ({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}, "UnsupportedSpreadsheet", "(.ods)"),
        ({"mimetype": b"application/vnd.oasis.opendocument.text"}, "NotAnExport", "not a spreadsheet"),
        ({"Index/Document.iwa": b"", "Metadata/Properties.plist": b""}, "UnsupportedSpreadsheet", "Apple Numbers"),
        ({"[Content_Types].xml": b"", "word/document.xml": b""}, "NotAnExport", "a Word or PowerPoint file?"),
        ({}, "ZipArchive", "a zip archive (it is empty)"),
    ],
)
def test_other_zips_are_refused_with_advice_that_fits(members: dict[str, bytes], code: str, says: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, body in members.items():
            archive.writestr(member, body)
    with pytest.raises(InvalidInputError) as caught:
        list(read_records(io.BytesIO(buffer.getvalue()), name="export.csv"))
    assert caught.value.code == code and says in caught.value.message


# --- cold starts and samples -----------------------------------------------------------------------------------


def test_reading_a_csv_never_imports_the_spreadsheet_library() -> None:
    script = (
        "import io, sys\n"
        "from cvcsync.inputs.readers import read_records\n"
        "assert len(list(read_records(io.BytesIO(b'userId,userName\\n1,a\\n'), name='u.csv'))) == 1\n"
        "assert 'openpyxl' not in sys.modules, 'openpyxl imported for a CSV'\n"
        f"list(read_records(open({str(export_path(DINGTALK))!r}, 'rb')))\n"
        "assert 'openpyxl' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _cells(raw: bytes) -> dict[str, Any]:
    book = openpyxl.load_workbook(io.BytesIO(raw))
    return {
        sheet.title: ([list(row) for row in sheet.iter_rows(values_only=True)], sorted(map(str, sheet.merged_cells)))
        for sheet in book.worksheets
    }


@pytest.mark.parametrize("name", sorted(make_sheet_exports.SAMPLES))
def test_regenerating_the_samples_gives_the_committed_files(name: str) -> None:
    made = make_sheet_exports.SAMPLES[name]()
    committed = export_path(name).read_bytes()
    if name.endswith(".xlsx"):
        assert _cells(made) == _cells(committed)
    else:
        assert made == committed


def test_the_generator_writes_where_the_samples_live() -> None:
    assert make_sheet_exports.EXPORTS_DIR == EXPORTS_DIR
    with tempfile.TemporaryDirectory() as tmp:
        written = make_sheet_exports.write(Path(tmp))
        assert sorted(path.name for path in written) == sorted(make_sheet_exports.SAMPLES)


def test_every_sheet_sample_is_made_by_the_generator_and_read_by_a_test() -> None:
    ours = [name for name in export_names() if name.startswith("sheet-")]
    assert sorted(ours) == sorted(make_sheet_exports.SAMPLES)
    readers = ("test_xlsx_rows.py", "test_readers.py", "test_plan_sheets.py", "../integration/test_real_exports.py")
    sources = "".join((Path(__file__).parent / name).read_text(encoding="utf-8") for name in readers)
    assert [name for name in ours if f'"{name}"' not in sources] == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8))
def test_a_damaged_workbook_only_ever_raises_invalid_input(damage: list[tuple[int, int]]) -> None:
    raw = bytearray(export_path(WECOM).read_bytes())
    for at, byte in damage:
        raw[at % len(raw)] = byte
    try:
        for row in read_records(io.BytesIO(bytes(raw)), name="export.xlsx"):
            assert row.error or isinstance(row.data, dict)
    except InvalidInputError as exc:
        assert exc.code and exc.message
