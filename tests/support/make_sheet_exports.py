"""Writes the ``sheet-*`` sample exports in ``events/exports/``: spreadsheets as DingTalk and WeCom export them, a
CSV with title and total rows, and files that are no export at all (an .xls, a PDF, a zip, random bytes).

``.venv/bin/python tests/support/make_sheet_exports.py`` rewrites them. The content is fixed (fake people, fixed
dates, a seeded random generator); an .xlsx's bytes still differ from run to run (zip and document timestamps), so
``tests/unit/test_xlsx_rows.py`` compares the workbooks cell by cell and the other files byte for byte.
"""

from __future__ import annotations

import datetime
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
from openpyxl.styles import Alignment, Font

EXPORTS_DIR = Path(__file__).resolve().parents[2] / "events" / "exports"
FIXED_TIME = datetime.datetime(2026, 11, 30, 10, 0, 0)

DINGTALK_HEADER = ["工号*", "姓名*", "部门", "手机号*", "邮箱", "职位", "入职时间", "备注"]
WECOM_HEADER = ["姓名", "帐号", "别名", "职务", "部门", "性别", "手机", "座机", "个人邮箱", "企业邮箱"]


def _workbook() -> openpyxl.Workbook:
    book = openpyxl.Workbook()
    book.properties.creator = "cvc-sync sample"
    book.properties.created = book.properties.modified = FIXED_TIME
    return book


def _saved(book: openpyxl.Workbook) -> bytes:
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def dingtalk_xlsx() -> bytes:
    """钉钉 contacts export: a merged title, a notes row, a blank row, the header on row 4, three users (ids as text
    with leading zeros, mobiles as number cells, one 86-prefixed, one a float), dates, and a 合计 row."""
    book = _workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "通讯录"
    width = len(DINGTALK_HEADER)
    sheet.append(["钉钉通讯录导出（导出时间：2026-11-30 10:00）"])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    sheet.append(["说明：1. 带*为必填项；2. 手机号请勿加空格；3. 部门层级以“/”分隔，如：总部/研发部"])
    sheet.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    sheet.append([])
    sheet.append(DINGTALK_HEADER)
    users = [
        ["000123", "张伟", "总部/研发部", 13800138001, "zhangwei@example.com", "工程师", datetime.date(2026, 3, 1), ""],
        ["000124", "王芳", "总部/财务部", 8613800138043, None, "会计", datetime.datetime(2026, 3, 2, 9, 30), "试用期"],
        ["000125", "李娜", "华东分公司/市场部", 13800138005.0, "lina@example.com", "经理", datetime.date(2025, 7, 15)],
    ]
    for user in users:
        sheet.append(user)
        sheet.cell(row=sheet.max_row, column=4).number_format = "0"
    sheet.append(["合计", "3人"])
    return _saved(book)


def wecom_xlsx() -> bytes:
    """企业微信 member export: a merged title on row 1, the header on row 2, three users, ``Total,3`` below them;
    and a second sheet, 部门列表, for ``CVCSYNC_SHEET``."""
    book = _workbook()
    members = book.active
    assert members is not None
    members.title = "成员列表"
    members.append(["企业微信通讯录 · 成员导出（示例科技）"])
    members.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(WECOM_HEADER))
    members.append(WECOM_HEADER)
    people = [
        ["陈静", "chenjing", "", "经理", "产品部", "女", 13800138011, "0571-88880011", "", "chenjing@corp.example.com"],
        ["孙悦", "sunyue", "Yue", "设计师", "总部/设计部", "女", "+86 138 0013 8012", "", "sunyue@example.com", ""],
        ["Tom Li", "tomli", "Tom", "工程师", "研发部;平台组", "男", "13800138013", "", "", "tomli@corp.example.com"],
    ]
    for person in people:
        members.append(person)
    members.append(["Total", 3])
    departments = book.create_sheet("部门列表")
    departments.append(["部门ID", "部门名称", "上级部门ID"])
    departments.append([1, "示例科技", None])
    departments.append([2, "产品部", 1])
    return _saved(book)


def titled_csv() -> bytes:
    """An HR system's CSV (UTF-8 with a byte-order mark, as Excel saves it): a title and a notes line with fewer
    cells than the header, a blank line, the header, three users and ``共 3 条记录``."""
    lines = [
        "员工花名册",
        "导出时间：2026-11-30 10:00，导出人：人事部",
        "",
        "员工编号,姓名,部门名称,手机,邮箱,入职日期",
        "E1001,赵敏,研发部,13800138021,zhaomin@example.com,2024-05-06",
        "E1002,钱进,销售部,138-0013-8022,,2025-01-13",
        "E1003,周杰,行政部,,zhoujie@example.com,2026-02-02",
        "共 3 条记录",
    ]
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"


def old_excel() -> bytes:
    """The start of an Excel 97-2003 workbook: an OLE2 compound file header, then empty sectors."""
    header = bytearray(512)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    header[24:34] = b"\x3e\x00\x03\x00\xfe\xff\x09\x00\x06\x00"  # minor/major version, byte order, sector shifts
    return bytes(header) + b"\xff" * 512 + bytes(512)


def pdf() -> bytes:
    """A one-page PDF (text only), as a directory report printed to PDF would start."""
    return (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def plain_zip() -> bytes:
    """A zip holding a CSV export: what an HR system's "download" button sometimes hands over."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("通讯录.csv", date_time=FIXED_TIME.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, "工号,姓名\n000123,张伟\n".encode())
    return buffer.getvalue()


def random_bytes() -> bytes:
    return random.Random(20261130).randbytes(2048)


SAMPLES: dict[str, Callable[[], bytes]] = {
    "sheet-dingtalk-contacts.xlsx": dingtalk_xlsx,
    "sheet-wecom-members.xlsx": wecom_xlsx,
    "sheet-hr-titled.csv": titled_csv,
    "sheet-old-excel.xls": old_excel,
    "sheet-directory.pdf": pdf,
    "sheet-archive.zip": plain_zip,
    "sheet-random-bytes.bin": random_bytes,
}


def write(directory: Path = EXPORTS_DIR) -> list[Path]:
    written = []
    for name, make in SAMPLES.items():
        path = directory / name
        path.write_bytes(make())
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
