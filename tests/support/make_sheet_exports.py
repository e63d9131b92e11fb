"""Writes the ``sheet-*`` sample exports in ``events/exports/``: spreadsheets as DingTalk, WeCom, Beisen, Moka,
SuccessFactors and Workday export them (and the next exports of two of them: a Beisen change list, a Workday report a
month later), a CSV with title and total rows, and files that are no export at all (an .xls, a PDF, a zip, random
bytes).

``.venv/bin/python tests/support/make_sheet_exports.py`` rewrites them. The content is fixed (fake people, fixed
dates, a seeded random generator); an .xlsx's bytes still differ from run to run (zip and document timestamps), so
``tests/unit/test_xlsx_rows.py`` compares the workbooks cell by cell and the other files byte for byte, and a
workbook whose cells did not change is not rewritten.
"""

from __future__ import annotations

import datetime
import io
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.styles import Alignment, Font

EXPORTS_DIR = Path(__file__).resolve().parents[2] / "events" / "exports"
FIXED_TIME = datetime.datetime(2026, 11, 30, 10, 0, 0)

DINGTALK_HEADER = ["工号*", "姓名*", "部门", "手机号*", "邮箱", "职位", "入职时间", "备注"]
WECOM_HEADER = ["姓名", "帐号", "别名", "职务", "部门", "性别", "手机", "座机", "个人邮箱", "企业邮箱"]
BEISEN_HEADER = ["工号", "姓名", "性别", "任职状态", "部门", "部门全路径", "手机号码", "邮箱", "入职日期"]
MOKA_HEADER = ["工号", "姓名", "员工状态", "部门", "部门路径", "手机号", "工作邮箱", "入职日期", "直属上级"]
SUCCESSFACTORS_HEADER = [
    "STATUS", "USERID", "USERNAME", "FIRSTNAME", "LASTNAME", "MI", "GENDER", "EMAIL", "MANAGER", "DEPARTMENT",
    "DIVISION", "LOCATION", "BIZ_PHONE", "CELL_PHONE", "HIREDATE",
]  # fmt: skip
WORKDAY_HEADER = [
    "Employee ID", "Legal Name - First Name", "Legal Name - Last Name", "Preferred Name", "Primary Work Email",
    "Primary Work Phone", "Primary Work Mobile Phone", "Supervisory Organization", "Worker Status", "Hire Date",
    "Job Profile",
]  # fmt: skip


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
    people: list[list[Any]] = [
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


def _titled(sheet: Any, title: str, width: int) -> None:
    """A bold title merged across the header's width, as HR systems put one above their tables."""
    sheet.append([title])
    sheet.merge_cells(start_row=sheet.max_row, start_column=1, end_row=sheet.max_row, end_column=width)
    sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True, size=14)


def _people(sheet: Any, rows: list[list[Any]], *, number_columns: tuple[int, ...] = ()) -> None:
    """Append the rows; number cells in ``number_columns`` (1-based) shown as plain digits, as Excel shows ids and
    mobiles typed into a cell."""
    for row in rows:
        sheet.append(row)
        for column in number_columns:
            sheet.cell(row=sheet.max_row, column=column).number_format = "0"


def _beisen(title: str, rows: list[list[Any]]) -> bytes:
    book = _workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "员工信息"
    _titled(sheet, title, len(BEISEN_HEADER))
    sheet.append(BEISEN_HEADER)
    _people(sheet, rows, number_columns=(7,))
    return _saved(book)


def beisen_xlsx() -> bytes:
    """北森 iTalent employee roster: a title row, 任职状态 (在职, 试用, 实习, 离职 and 待入职, which is neither),
    部门 with 部门全路径 filling in where it is blank, mobiles as number cells (one 86-prefixed, one a float),
    入职日期 as date cells."""
    d = datetime.date
    return _beisen(
        "员工花名册（北森 iTalent 导出，2026-11-30 10:00）",
        [
            ["BS2001", "林晓", "女", "在职", "平台部", "总公司/研发中心/平台部",
             13800138111, "linxiao@corp.example.com", d(2020, 4, 1)],
            ["BS2002", "高远", "男", "试用", "", "总公司/研发中心/数据部",
             13800138112, "gaoyuan@corp.example.com", d(2026, 9, 14)],
            ["BS2003", "罗敏", "女", "离职", "市场部", "总公司/市场中心/市场部",
             13800138113, "luomin@corp.example.com", d(2018, 3, 5)],
            ["BS2004", "宋佳", "女", "在职", "品牌部", "总公司/市场中心/品牌部",
             8613800138114, "songjia@corp.example.com", d(2021, 11, 22)],
            ["BS2005", "邱峰", "男", "待入职", "", "总公司/研发中心/平台部",
             13800138115, "qiufeng@corp.example.com", d(2026, 12, 7)],
            ["BS2006", "韩雪", "女", "实习", "", "总公司/人力资源部",
             13800138116, "hanxue@corp.example.com", d(2026, 7, 1)],
            ["BS2007", "唐亮", "男", "在职", "平台部", "总公司/研发中心/平台部",
             13800138117.0, "tangliang@corp.example.com", d(2015, 6, 29)],
        ],
    )  # fmt: skip


def beisen_changes_xlsx() -> bytes:
    """北森's change list for a week (a delta): 林晓 left (离职), 高远 passed probation and moved department."""
    d = datetime.date
    return _beisen(
        "人事异动明细（2026-12-01 至 2026-12-07）",
        [
            ["BS2001", "林晓", "女", "离职", "平台部", "总公司/研发中心/平台部",
             13800138111, "linxiao@corp.example.com", d(2020, 4, 1)],
            ["BS2002", "高远", "男", "在职", "数据平台部", "总公司/研发中心/数据平台部",
             13800138112, "gaoyuan@corp.example.com", d(2026, 9, 14)],
        ],
    )  # fmt: skip


def beisen_all_staff_xlsx() -> bytes:
    """北森's roster with 离职 people included (the filter 全部人员): 20 in service, 10 who left over the years. Synced
    once, it is the same file every month until someone joins or leaves."""
    surnames, given = "赵钱孙李周吴郑王冯陈", "一二三"
    rows: list[list[Any]] = []
    for n in range(30):
        department = ("研发中心/平台部", "市场中心/品牌部", "人力资源部", "研发中心/数据部")[n % 4]
        rows.append(
            [
                f"BS{3001 + n}",
                surnames[n % 10] + "晓" + given[n // 10],
                "女" if n % 2 else "男",
                "离职" if n % 3 == 2 else "在职",
                department.rsplit("/", 1)[-1],
                f"总公司/{department}",
                13800139000 + n,
                f"bs{3001 + n}@corp.example.com",
                datetime.date(2015 + n % 10, 3, 1),
            ]
        )
    return _beisen("员工花名册（含离职人员，北森 iTalent 导出，2026-11-30）", rows)


def moka_xlsx() -> bytes:
    """Moka People roster: the header on row 1, 员工状态 (正式, 试用期, 实习, 已离职), 部门 with 部门路径 filling
    in, a mobile typed with +86 and spaces, mobiles as number cells, one person without a mobile, 入职日期 as date
    cells, and ``合计：6人`` below."""
    d = datetime.date
    book = _workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "花名册"
    sheet.append(MOKA_HEADER)
    sheet.freeze_panes = "A2"
    _people(
        sheet,
        [
            ["MK101", "袁野", "正式", "产品部", "公司/产品中心/产品部",
             "+86 138 0013 8211", "yuanye@corp.example.com", d(2019, 8, 12), ""],
            ["MK102", "苏晴", "试用期", "设计部", "公司/产品中心/设计部",
             13800138212, "suqing@corp.example.com", d(2026, 10, 8), "袁野"],
            ["MK103", "方舟", "已离职", "", "公司/研发中心",
             13800138213, "fangzhou@corp.example.com", d(2016, 2, 29), ""],
            ["MK104", "夏雨", "实习", "", "公司/研发中心/测试部",
             13800138214, "xiayu@corp.example.com", d(2026, 7, 6), "袁野"],
            ["MK105", "曾可", "正式", "研发中心", "公司/研发中心",
             13800138215, "zengke@corp.example.com", d(2022, 3, 14), ""],
            ["MK106", "戴维", "正式", "销售部", "公司/销售中心/销售部",
             None, "daiwei@corp.example.com", d(2023, 5, 4), "曾可"],
        ],
        number_columns=(6,),
    )  # fmt: skip
    sheet.append(["合计：6人"])
    return _saved(book)


def successfactors_xlsx() -> bytes:
    """SAP SuccessFactors user data export: English headers in capitals, STATUS active/inactive, USERID (which wins
    over USERNAME), the name in FIRSTNAME/LASTNAME, DEPARTMENT with DIVISION filling in, HIREDATE as date cells."""
    d = datetime.date
    book = _workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "UserDataExport"
    sheet.append(SUCCESSFACTORS_HEADER)
    _people(
        sheet,
        [
            ["active", "100301", "akoch", "Anna", "Koch", "", "F", "anna.koch@corp.example.com", "NO_MANAGER",
             "Human Resources", "Corporate", "Shanghai", "+86 21 5555 0311", "+86 138 0013 8311", d(2016, 5, 2)],
            ["active", "100302", "wzhou", "Wei", "Zhou", "", "M", "wei.zhou@corp.example.com", "100301",
             "", "Corporate", "Shanghai", "", "13800138312", d(2021, 9, 6)],
            ["inactive", "100303", "pdubois", "Pierre", "Dubois", "", "M", "pierre.dubois@corp.example.com", "100301",
             "Finance", "Corporate", "Paris", "", "", d(2012, 1, 16)],
            ["active", "100304", "yliu", "雨桐", "刘", "", "F", "yutong.liu@corp.example.com", "100301",
             "Engineering", "Technology", "Beijing", "", "13800138314", d(2023, 2, 20)],
            ["Active", "100305", "jmiller", "James", "Miller", "R", "M", "james.miller@corp.example.com", "100304",
             "Engineering", "Technology", "Singapore", "+65 6555 0105", "", d(2024, 8, 1)],
        ],
    )  # fmt: skip
    return _saved(book)


def _workday(title: str, rows: list[list[Any]]) -> bytes:
    book = _workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Workers"
    _titled(sheet, title, len(WORKDAY_HEADER))
    sheet.append(WORKDAY_HEADER)
    _people(sheet, rows, number_columns=(1,))
    sheet.append(["Total", len(rows)])
    return _saved(book)


_ORG = "Global Modern Services > "
_AIDEN = [21101, "Aiden", "Brooks", "", "aiden.brooks@corp.example.com", "+86 21 5555 0411", "+86 138 0013 8411",
          _ORG + "Engineering > Platform Services"]  # fmt: skip
_AIDEN_SINCE = [datetime.date(2013, 2, 4), "Engineering Manager"]
_OMAR = [21103, "Omar", "Haddad", "", "omar.haddad@corp.example.com", "", "13800138413",
         _ORG + "Sales > EMEA Sales", "Terminated", datetime.date(2015, 6, 1), "Account Executive"]  # fmt: skip
_STAYING = [
    [21102, "Katherine", "Doyle", "Kate Doyle", "kate.doyle@corp.example.com", "", "13800138412",
     _ORG + "Engineering > Platform Services", "On Leave", datetime.date(2019, 10, 21), "Software Engineer"],
    [21104, "芳", "王", "", "wang.fang@corp.example.com", "", 13800138414,
     _ORG + "Finance > Shanghai Finance", "Active", datetime.date(2022, 4, 11), "Accountant"],
    [21105, "Lucas", "Ferreira", "", "lucas.ferreira@corp.example.com", "", "",
     _ORG + "Sales > APAC Sales", "Active", datetime.date(2024, 1, 8), "Sales Manager"],
    [21106, "Nora", "Lindqvist", "", "nora.lindqvist@corp.example.com", "+86 21 5555 0416", "",
     _ORG + "Engineering > Data", "Active", datetime.date(2021, 3, 15), "Data Engineer"],
    [21107, "Yuki", "Tanaka", "", "yuki.tanaka@corp.example.com", "", "+86 138 0013 8417",
     _ORG + "Engineering > Platform Services", "Active", datetime.date(2025, 9, 1), "Site Reliability Engineer"],
]  # fmt: skip


def workday_xlsx() -> bytes:
    """A Workday worker report exported to Excel (active workers and those terminated this month): the report's
    name above the header, Employee ID as number cells, the legal name in two columns with a preferred name over
    it, Worker Status (Active, On Leave, Terminated), Supervisory Organization as a path (``A > B > C``), Hire Date
    as date cells, and a ``Total`` row below."""
    rows = [[*_AIDEN, "Active", *_AIDEN_SINCE], _STAYING[0], _OMAR, *_STAYING[1:]]
    return _workday("Workers by Supervisory Organization (as of 2026-11-30)", rows)


def workday_next_month_xlsx() -> bytes:
    """The same report a month later: Aiden Brooks was terminated in December; Omar Haddad, terminated in
    November, is no longer listed; everyone else as before."""
    rows = [[*_AIDEN, "Terminated", *_AIDEN_SINCE], *_STAYING]
    return _workday("Workers by Supervisory Organization (as of 2026-12-31)", rows)


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
    "sheet-beisen.xlsx": beisen_xlsx,
    "sheet-beisen-changes.xlsx": beisen_changes_xlsx,
    "sheet-beisen-all-staff.xlsx": beisen_all_staff_xlsx,
    "sheet-moka.xlsx": moka_xlsx,
    "sheet-successfactors.xlsx": successfactors_xlsx,
    "sheet-workday.xlsx": workday_xlsx,
    "sheet-workday-next-month.xlsx": workday_next_month_xlsx,
    "sheet-hr-titled.csv": titled_csv,
    "sheet-old-excel.xls": old_excel,
    "sheet-directory.pdf": pdf,
    "sheet-archive.zip": plain_zip,
    "sheet-random-bytes.bin": random_bytes,
}


def workbook_cells(data: bytes) -> dict[str, Any]:
    """A workbook's content: per sheet, its cell values and merged ranges (what a regenerated sample must keep)."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    return {
        sheet.title: ([list(row) for row in sheet.iter_rows(values_only=True)], sorted(map(str, sheet.merged_cells)))
        for sheet in book.worksheets
    }


def write(directory: Path = EXPORTS_DIR) -> list[Path]:
    """Write every sample. A workbook whose cells are already those it would get is left as it is: its bytes would
    differ (timestamps) for no change of content."""
    written = []
    for name, make in SAMPLES.items():
        path = directory / name
        data = make()
        if not (
            name.endswith(".xlsx") and path.is_file() and workbook_cells(path.read_bytes()) == workbook_cells(data)
        ):
            path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
