"""A run's problems as CSV that a spreadsheet opens safely: HR admins read the rejected records in Excel.

Every cell holds text that came from an HR export or a caller (user ids, messages quoting a column name), and a
spreadsheet runs a cell that looks like a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``): CSV injection. So:

* a cell starting with ``=``, ``+``, ``-``, ``@``, tab, CR or LF, or with ``=``, ``+``, ``-``, ``@`` after leading
  whitespace, gets a leading apostrophe, which spreadsheets read as "this is text". The full-width forms
  (``＝＋－＠``) are treated alike: some East Asian spreadsheet setups normalise them to the ASCII ones. Every
  cell, whatever its column: the rule is simple enough to trust, and a ``+86`` mobile number staying text is a gain;
* every cell is quoted when it holds a delimiter, a quote, CR or LF, so a message spread over lines is still one
  cell and each problem one row;
* NUL and lone surrogates (which no UTF-8 file can hold, and which spreadsheets cut text at) become U+FFFD; a cell
  longer than Excel's 32,767 characters is cut to fit, saying so (Excel would otherwise spill it into the next
  row). Everything else after the apostrophe is exactly the original text.

UTF-8 with a byte-order mark (without one Excel reads UTF-8 as the local code page, and Chinese names turn to
mojibake), CRLF line endings, a header row: ``line,userId,code,message,requestId``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable

from cvcsync.engine.outcomes import Problem

COLUMNS = ("line", "userId", "code", "message", "requestId")
FORMULA_START = "=+-@\t\r\n＝＋－＠"  # a cell starting with one of these is neutralised
EXCEL_CELL_MAX = 32_767
_REPLACED = re.compile("[\x00\ud800-\udfff]")


def spreadsheet_cell(value: object) -> str:
    """One cell's text, safe to open: see the module docstring for the rules."""
    text = "" if value is None else str(value)
    text = _REPLACED.sub("\ufffd", text)
    if len(text) >= EXCEL_CELL_MAX:
        cut = f"… ({len(text)} characters; cut to fit a spreadsheet cell)"
        text = text[: EXCEL_CELL_MAX - 1 - len(cut)] + cut  # room for the apostrophe
    stripped = text.lstrip()
    if text and (text[0] in FORMULA_START or (stripped and stripped[0] in FORMULA_START)):
        return "'" + text
    return text


def problems_csv(problems: Iterable[Problem]) -> bytes:
    """The problems as spreadsheet-safe CSV: UTF-8 with BOM, a header row, one row per problem, in order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for problem in problems:
        cells = (problem.line, problem.user_id, problem.code, problem.message, problem.request_id)
        writer.writerow([spreadsheet_cell(cell) for cell in cells])
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")
