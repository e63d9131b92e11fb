"""``problems_csv``: a run's problems as CSV that is safe to open in a spreadsheet.

For any problems: ``csv.reader`` reads back the header and exactly one row per problem; no cell starts with a
formula character (nor has one after leading whitespace); and the text after the apostrophe is the original.
"""

from __future__ import annotations

import codecs
import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.engine.outcomes import Problem
from cvcsync.outputs.problems_csv import COLUMNS, EXCEL_CELL_MAX, FORMULA_START, problems_csv, spreadsheet_cell
from support.hostile import HOSTILE_STRINGS

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
PAYLOADS = [
    "=cmd|' /C calc'!A0", "+1+1", "@SUM(1)", "-2+3", "\t=1", "\r=1", "\n=1", " =1", "\u3000=1", "＝1+1",
    '=HYPERLINK("http://x","y")', "=1\n=2", "a\r\nb", "a\rb", "a\x00b", "\x00=1", "\ud800", "张三", "",
]  # fmt: skip
text = st.one_of(st.sampled_from(PAYLOADS + HOSTILE_STRINGS), st.text(), st.text(alphabet=FORMULA_START + " a\x00"))
problems = st.builds(
    Problem,
    code=text,
    message=text,
    line=st.one_of(st.none(), st.integers()),
    user_id=st.one_of(st.none(), text),
    request_id=st.one_of(st.none(), text),
)


def read_back(data: bytes) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)
    text = data[len(codecs.BOM_UTF8) :].decode("utf-8")  # strict: the file is valid UTF-8
    return list(csv.reader(io.StringIO(text, newline="")))


def expected_text(value: object) -> str:
    """What a cell must say after its apostrophe: the original, NUL and lone surrogates as U+FFFD."""
    original = "" if value is None else str(value)
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in original)


def is_formula_start(cell: str) -> bool:
    stripped = cell.lstrip()
    return bool(cell) and (cell[0] in FORMULA_START or (bool(stripped) and stripped[0] in FORMULA_START))


@FUZZ
@given(st.lists(problems, max_size=8))
def test_one_row_per_problem_no_formula_and_the_original_text_back(given_problems: list[Problem]) -> None:
    rows = read_back(problems_csv(given_problems))
    assert rows[0] == list(COLUMNS)
    assert len(rows) == len(given_problems) + 1
    for problem, row in zip(given_problems, rows[1:], strict=True):
        originals = (problem.line, problem.user_id, problem.code, problem.message, problem.request_id)
        assert len(row) == len(COLUMNS)
        for original, cell in zip(originals, row, strict=True):
            assert not is_formula_start(cell), cell
            expected = expected_text(original)
            if len(expected) >= EXCEL_CELL_MAX:
                continue  # cut to fit: tested below
            if is_formula_start(expected):
                assert cell == "'" + expected
            else:
                assert cell == expected


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_each_known_payload_in_every_column(payload: str) -> None:
    problem = Problem(code=payload, message=payload, line=None, user_id=payload, request_id=payload)
    rows = read_back(problems_csv([problem]))
    assert len(rows) == 2
    expected = expected_text(payload)
    neutralised = "'" + expected if is_formula_start(expected) else expected
    assert rows[1] == ["", neutralised, neutralised, neutralised, neutralised]


def test_the_classic_payloads_are_neutralised() -> None:
    assert spreadsheet_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert spreadsheet_cell("+1+1") == "'+1+1"
    assert spreadsheet_cell("@SUM(1)") == "'@SUM(1)"
    assert spreadsheet_cell("-2+3") == "'-2+3"
    assert spreadsheet_cell("\t=1") == "'\t=1"
    assert spreadsheet_cell("  =1") == "'  =1"
    assert spreadsheet_cell("u-1001") == "u-1001" and spreadsheet_cell(42) == "42" and spreadsheet_cell(None) == ""


def test_the_file_is_utf8_with_a_bom_crlf_and_chinese_intact() -> None:
    data = problems_csv([Problem("InvalidRecord", "userName: 不能为空", 3, "张三")])
    assert (
        data
        == codecs.BOM_UTF8
        + "line,userId,code,message,requestId\r\n3,张三,InvalidRecord,userName: 不能为空,\r\n".encode()
    )


def test_a_cell_over_excels_limit_is_cut_saying_so_and_stays_one_row() -> None:
    huge = "=" + "x" * 40_000
    rows = read_back(problems_csv([Problem("C", huge, 1), Problem("D", "next", 2)]))
    assert [row[0] for row in rows[1:]] == ["1", "2"]
    message = rows[1][3]
    assert len(message) <= EXCEL_CELL_MAX and message.startswith("'=xxx") and "40001 characters" in message


def test_no_problems_is_just_the_header() -> None:
    assert read_back(problems_csv([])) == [list(COLUMNS)]
