"""An upload's whole way in, fed hostile files: ``read_records`` -> ``ColumnMap`` -> ``fast_user_json``/``parse_user``.

Properties, whatever the bytes: only our ``InvalidInputError`` escapes (never ``ValueError``, ``UnicodeError``,
``RecursionError``, ``OSError``...); a file refused as a whole says where (``line N``); a bad record comes back as
its own row with its line; a record refused by validation names its line and each field; and everything a row
turns into can be written as JSON (the plan workspace and the report do exactly that).

``tests/unit/test_readers_fuzz.py`` covers the reader alone (round trips, 5 MB records, 10k nesting); this file
covers the pipeline and the inputs that one does not: 10 MB lines, gzip cut anywhere, 100k-deep nesting, lone
surrogate escapes, hostile header names and cells, CR/LF inside quoted cells with every line ending mixed.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.cell_cleanup import is_formula_like, spreadsheet_safe
from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.readers import read_records
from cvcsync.inputs.records import FIELDS, RecordError, User, fast_user_json, parse_user
from support.hostile import HOSTILE_STRINGS, hostile_text, json_ish

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
MB10 = 10 * 1024 * 1024
LINE_BREAK = re.compile(r"\r\n?|\n")
DEFAULTS = {"groupId": "88", "groupName": "示例科技"}
COLUMNS = ["userId", "userName", "groupId", "groupName", "userMobile", "userEmail", "departName", "op", "状态",
           "工号", "姓名", "部门", "手机", "邮箱", "UserId", "user_id"]  # fmt: skip


@dataclass
class Outcome:
    """What one file became: rows refused by the reader, rows refused by mapping or validation, users."""

    unreadable: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, RecordError]] = field(default_factory=list)
    users: list[tuple[int, str]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    refused: InvalidInputError | None = None


def run_pipeline(
    data: bytes, name: str | None, encoding: str | None = None, mapper: ColumnMap | None = None
) -> Outcome:
    """The plan's classification of rows (``engine.plan._classify_rows``), with every property checked on the way."""
    mapper = mapper or ColumnMap()
    out = Outcome()
    previous = 0
    try:
        for row in read_records(io.BytesIO(data), name=name, encoding=encoding):
            assert row.line >= max(previous, 1)
            previous = row.line
            if row.error is not None:
                assert row.data == {} and row.error.strip()
                out.unreadable.append((row.line, row.error))
                continue
            assert isinstance(row.data, dict) and all(isinstance(key, str) for key in row.data)
            orjson.dumps(mapper.for_header(tuple(row.data)).notices)  # notices go into the report as they are
            try:
                mapped = mapper.apply(row.data, position=row.position)
            except RecordError as exc:
                _check_record_error(exc, row.line)
                out.rejected.append((row.line, exc))
                continue
            orjson.dumps(mapped.notices)
            if mapped.op == "delete":
                out.deletes.append(row.line)
                continue
            fast = fast_user_json(mapped.fields, DEFAULTS)
            try:
                user = parse_user(mapped.fields, position=row.position, defaults=DEFAULTS)
            except RecordError as exc:
                assert fast is None
                _check_record_error(exc, row.line)
                out.rejected.append((row.line, exc))
                continue
            assert isinstance(user, User) and all(user.to_cvc()[f] for f in ("userId", "userName"))
            payload = user.to_json()  # written to the plan workspace: must be encodable
            assert fast is None or fast == (user.user_id, payload)
            out.users.append((row.line, user.user_id))
    except InvalidInputError as exc:
        assert exc.code and exc.message.strip()
        orjson.dumps(exc.to_dict())
        out.refused = exc
    return out


def _check_record_error(exc: RecordError, line: int) -> None:
    assert exc.problems and exc.position == f"line {line}"
    assert exc.message.startswith(f"line {line}: ")
    for problem in exc.problems:
        assert problem.field and problem.reason.strip()
        assert problem.field in exc.message
    orjson.dumps(exc.to_dict())  # the plan stores it as JSON


def _csv_rows(header: list[str], table: list[list[str]], endings: list[str], delimiter: str = ",") -> list[str]:
    """Each row as written, ended by a line ending chosen per row. csv.writer quotes a cell holding CR or LF only
    if its terminator holds that character: write with CRLF, then swap the row's own ending in."""
    out = []
    for number, cells in enumerate([header, *table]):
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(cells)
        out.append(buffer.getvalue().removesuffix("\r\n") + endings[number % len(endings)])
    return out


def _csv(header: list[str], table: list[list[str]], endings: list[str], delimiter: str = ",") -> str:
    return "".join(_csv_rows(header, table, endings, delimiter))


# --- CSV: hostile headers and cells, every encoding, mixed line endings ------------------------------------------

cells = st.one_of(hostile_text, st.sampled_from(["u-1", "张三", "13800000001", "a@b.co", "delete", "离职", "88"]))
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "gb18030"]


@FUZZ
@given(
    header=st.lists(st.one_of(st.sampled_from(COLUMNS), hostile_text), min_size=1, max_size=6),
    data=st.data(),
    encoding=st.sampled_from(ENCODINGS),
    endings=st.lists(st.sampled_from(["\r\n", "\n", "\r"]), min_size=1, max_size=3),
    delimiter=st.sampled_from([",", ";", "\t"]),
    compress=st.booleans(),
)
def test_hostile_csv_through_the_pipeline(
    header: list[str], data: st.DataObject, encoding: str, endings: list[str], delimiter: str, compress: bool
) -> None:
    table = data.draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=6))
    text = _csv(header, table, endings, delimiter)
    raw = text.encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")
    declared = encoding if encoding in ("gb18030", "utf-16-le") else None
    run_pipeline(gzip.compress(raw) if compress else raw, "u.csv.gz" if compress else "u.csv", declared)


@FUZZ
@given(
    table=st.lists(
        st.lists(
            st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=8,
    ),
    endings=st.lists(st.sampled_from(["\r\n", "\n", "\r"]), min_size=1, max_size=3),
)
def test_line_breaks_inside_quoted_cells_with_mixed_endings_read_back_exactly(
    table: list[list[str]], endings: list[str]
) -> None:
    """CR, LF and CRLF inside quoted cells, rows ended by a mix of all three: each row reads back as written, and
    its line number is the line it starts on."""
    header = ["userId", "userName", "departName"]
    written = _csv_rows(header, table, endings)
    got = list(read_records(io.BytesIO("".join(written).encode()), name="u.csv"))
    kept = [number for number, row in enumerate(table) if any(cell.strip() for cell in row)]
    assert [row.data for row in got] == [dict(zip(header, table[number], strict=True)) for number in kept]
    starts = [1 + sum(len(LINE_BREAK.findall(text)) for text in written[: number + 1]) for number in kept]
    assert [row.line for row in got] == starts


def test_a_quoted_crlf_cell_is_one_record_and_the_next_line_is_counted_right() -> None:
    data = b'userId,userName,departName\r\nu-1,"Ann\r\nSmith","R&D\rLab"\nu-2,Bob,"a\n\nb"\r\nu-3,Cy,x\r'
    got = [(row.line, row.data) for row in read_records(io.BytesIO(data), name="u.csv")]
    assert got == [
        (2, {"userId": "u-1", "userName": "Ann\r\nSmith", "departName": "R&D\rLab"}),
        (5, {"userId": "u-2", "userName": "Bob", "departName": "a\n\nb"}),
        (8, {"userId": "u-3", "userName": "Cy", "departName": "x"}),
    ]
    outcome = run_pipeline(data, "u.csv")
    # a line break inside a name or a department becomes a space, with a notice (issue 12): every user is synced
    assert outcome.rejected == []
    assert outcome.users == [(2, "u-1"), (5, "u-2"), (8, "u-3")]


# --- JSON and NDJSON: any values, lone surrogate escapes, nesting ------------------------------------------------

USER_KEYS = [*FIELDS, "UserId", "UserName", "op", "状态", "\ud800", "工号"]
objects = st.dictionaries(
    st.sampled_from(USER_KEYS) | hostile_text, json_ish(USER_KEYS, ["u-1", "delete"], 8), max_size=8
)


def _dumps(value: Any) -> str:
    # The stdlib writes lone surrogates as \ud800 escapes, NaN as NaN and huge integers in full: all things a
    # hand-made or non-Python export may hold.
    return json.dumps(value, ensure_ascii=True)


@FUZZ
@given(
    items=st.lists(st.one_of(objects, json_ish(max_leaves=4)), max_size=6),
    wrapper=st.sampled_from([None, "users", "UserInfo"]),
)
def test_any_json_list_through_the_pipeline(items: list[Any], wrapper: str | None) -> None:
    text = _dumps(items) if wrapper is None else f'{{"total": 1, "{wrapper}": {_dumps(items)}}}'
    outcome = run_pipeline(text.encode(), "u.json")
    assume(outcome.refused is None)
    assert len(outcome.unreadable) + len(outcome.rejected) + len(outcome.users) + len(outcome.deletes) == len(items)


@FUZZ
@given(
    items=st.lists(st.one_of(objects, json_ish(max_leaves=4)), max_size=6), ending=st.sampled_from(["\n", "\r\n", "\r"])
)
def test_any_ndjson_through_the_pipeline(items: list[Any], ending: str) -> None:
    text = ending.join(_dumps(item) for item in items)
    outcome = run_pipeline(text.encode(), "u.ndjson")
    assert outcome.refused is None
    lines = [line for line in (_dumps(item) for item in items) if line.strip()]
    assert len(outcome.unreadable) + len(outcome.rejected) + len(outcome.users) + len(outcome.deletes) == len(lines)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ('{"userId": "\\ud800", "userName": "Ann", "groupId": "1", "groupName": "G"}', "userId"),
        ('{"userId": "u-1", "userName": "A\\udfffn", "groupId": "1", "groupName": "G"}', "userName"),
        ('{"\\ud800": "x", "userId": "u-1", "userName": "Ann", "groupId": "1", "groupName": "G"}', None),
        ('{"userId": "u-1", "userName": "Ann", "groupId": "1", "groupName": "G", "x": ["\\udc00"]}', None),
    ],
    ids=["user-id", "name", "key", "nested-extra"],
)
def test_a_lone_surrogate_escape_in_a_json_list_is_refused_naming_line_and_field(item: str, field: str | None) -> None:
    """The JSON list reader (the stdlib's decoder) lets ``\\ud800`` through; validation refuses it by name, and
    nothing downstream (the plan's JSON, the report) ever has to encode it. Unknown fields are ignored, as ever."""
    good = '{"userId": "u-2", "userName": "Bo", "groupId": "1", "groupName": "G"}'
    outcome = run_pipeline(f"[\n{good},\n{item},\n{good}\n]".encode(), "u.json")
    if field is None:
        assert [line for line, _ in outcome.users] == [2, 3, 4]
        return
    assert [(line, [p.field for p in exc.problems]) for line, exc in outcome.rejected] == [(3, [field])]
    assert "surrogate" in outcome.rejected[0][1].message
    assert (outcome.rejected[0][1].user_id is None) == (field == "userId")
    assert [line for line, _ in outcome.users] == [2, 4]


def test_a_lone_surrogate_escape_in_ndjson_is_an_error_row() -> None:
    outcome = run_pipeline(b'{"userId": "u-1", "userName": "Ann"}\n{"userId": "\\ud800"}\n', "u.ndjson")
    assert [line for line, _ in outcome.unreadable] == [2]


def test_paired_surrogate_escapes_are_ordinary_characters() -> None:
    text = '[{"userId": "u-1", "userName": "\\ud83d\\ude00 \\\\ud800", "groupId": "1", "groupName": "G"}]'
    outcome = run_pipeline(text.encode(), "u.json")
    assert outcome.users == [(1, "u-1")] and not outcome.unreadable


@pytest.mark.parametrize("name", ["u.json", "u.ndjson", "u.csv", None])
@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000, b"{" * 100_000],
    ids=["open", "closed", "objects", "braces"],
)
def test_100k_deep_nesting_is_our_error_or_an_error_row(name: str | None, data: bytes) -> None:
    outcome = run_pipeline(data, name)
    if name == "u.csv":  # one odd header cell (or one over csv's field limit) and no rows
        assert outcome == Outcome() or (outcome.refused and outcome.refused.message.startswith("line 1:"))
        return
    assert outcome.refused is not None or outcome.unreadable
    assert not outcome.users and not outcome.rejected


def test_100k_deep_nesting_as_a_value_in_each_format() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    ndjson = run_pipeline(('{"userId": "u-1"}\n{"userId": ' + deep + "}\n").encode(), "u.ndjson")
    assert [line for line, _ in ndjson.unreadable] == [2]
    listed = run_pipeline(('[{"userId": "u-1", "x": ' + deep + "}]").encode(), "u.json")
    assert [(line, "nested" in why) for line, why in listed.unreadable] == [(1, True)]
    table = run_pipeline(("userId,userName\nu-1," + deep + "\n").encode(), "u.csv")
    assert table.refused is None and [line for line, _ in table.unreadable] == [2]
    assert "field limit" in table.unreadable[0][1]


# --- huge lines, broken gzip, broken encodings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("u.csv", b"userId,userName\nu-1," + b"x" * MB10 + b"\nu-2,Bo\n"),
        ("u.csv", b"userId,userName\nu-1," + b"x" * MB10),
        ("u.ndjson", b'{"userId":"u-1","userName":"' + b"x" * MB10 + b'"}\n{"userId":"u-2","userName":"Bo"}\n'),
        ("u.json", b'[{"userId":"u-1","userName":"' + b"x" * MB10 + b'"}, {"userId":"u-2","userName":"Bo"}]'),
    ],
    ids=["csv", "csv-unterminated", "ndjson", "json"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_10mb_line_is_an_error_row_with_its_line(name: str, body: bytes, compress: bool) -> None:
    outcome = run_pipeline(
        gzip.compress(body, compresslevel=1) if compress else body, name + (".gz" if compress else "")
    )
    assert outcome.refused is None
    first = 2 if name == "u.csv" else 1
    assert [line for line, _ in outcome.unreadable] == [first]
    assert "characters long" in outcome.unreadable[0][1]
    if not body.endswith(b"x"):
        assert [user for _, user in outcome.users] == ["u-2"]


def test_a_10mb_header_line_refuses_the_file_naming_line_1() -> None:
    outcome = run_pipeline(b"x" * MB10 + b"\nu-1\n", "u.csv")
    assert outcome.refused is not None and outcome.refused.message.startswith("line 1:")


GZIPPED = gzip.compress(("userId,userName\n" + "".join(f"u-{n},名字{n}\n" for n in range(3000))).encode())


@FEW
@given(cut=st.integers(min_value=0, max_value=len(GZIPPED) - 1))
def test_gzip_cut_anywhere_is_refused_as_bad_gzip(cut: int) -> None:
    outcome = run_pipeline(GZIPPED[:cut], "u.csv.gz")
    if cut <= 2:  # two bytes or fewer: no gzip magic number, read as (tiny) text
        assert outcome.refused is None or outcome.refused.code != "BadGzip"
        return
    assert outcome.refused is not None and outcome.refused.code == "BadGzip"


@FEW
@given(at=st.integers(min_value=10, max_value=len(GZIPPED) - 9), byte=st.integers(min_value=0, max_value=255))
def test_gzip_with_a_damaged_byte_is_refused_or_read(at: int, byte: int) -> None:
    damaged = GZIPPED[:at] + bytes([byte]) + GZIPPED[at + 1 :]
    run_pipeline(damaged, "u.csv.gz")


@FUZZ
@given(
    prefix=st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE]),
    body=st.binary(max_size=200),
    encoding=st.sampled_from([None, "utf-8", "gb18030", "utf-16", "utf-16-le", "latin-1", "shift_jis"]),
    name=st.sampled_from(["u.csv", "u.json", "u.ndjson", "u.tsv", None]),
)
def test_any_bytes_in_any_declared_encoding(prefix: bytes, body: bytes, encoding: str | None, name: str | None) -> None:
    outcome = run_pipeline(prefix + b"userId,userName\n" + body, name, encoding)
    if outcome.refused is not None and outcome.refused.code == "BadEncoding":
        assert "line" in outcome.refused.message and "encoding" in outcome.refused.message


@pytest.mark.parametrize(
    ("data", "code", "line"),
    [
        (b"userId,userName\nu-1,Ann\nu-2,\xff\xfeBo\n", "BadEncoding", 3),
        (codecs.BOM_UTF8 + b"userId,userName\nu-1,\xc3\x28\n", "BadEncoding", 2),
        ("userId,userName\nu-1,Ann\n".encode("utf-16-le")[:-1], "BadEncoding", 2),
    ],
    ids=["utf8-then-garbage", "bom-then-invalid", "odd-utf16"],
)
def test_bad_encodings_are_refused_naming_a_line(data: bytes, code: str, line: int) -> None:
    outcome = run_pipeline(data, "u.csv", "utf-16-le" if data[:2] == b"u\x00" else None)
    assert outcome.refused is not None and outcome.refused.code == code
    assert f"line {line}" in outcome.refused.message


@pytest.mark.parametrize("name", ["u.csv", "u.ndjson", "u.json"])
def test_nul_bytes_are_error_rows_with_their_line(name: str) -> None:
    records = [
        {"userId": "u-1", "userName": "Ann", "groupId": "1", "groupName": "G"},
        {"userId": "u-2", "userName": "B\x00b", "groupId": "1", "groupName": "G"},
        {"userId": "u-3", "userName": "Cy", "groupId": "1", "groupName": "G"},
    ]
    if name == "u.csv":
        data = _csv(list(records[0]), [list(r.values()) for r in records], ["\n"]).encode()
    elif name == "u.ndjson":
        data = "\n".join(json.dumps(r) for r in records).encode()
    else:
        data = json.dumps(records, indent=0).replace('"groupName": "G"\n}', '"groupName": "G"}').encode()
    outcome = run_pipeline(data, name)
    bad = outcome.unreadable + [(line, str(exc)) for line, exc in outcome.rejected]
    assert len(bad) == 1 and [u for _, u in outcome.users] == ["u-1", "u-3"]
    assert "NUL" in bad[0][1] or "control characters" in bad[0][1]


# --- the column mapping and validation on their own ------------------------------------------------------------


@FUZZ
@given(
    row=st.dictionaries(st.sampled_from(COLUMNS) | hostile_text, json_ish(COLUMNS, ["delete", "x"], 6), max_size=8),
    preset=st.sampled_from(["auto", "none", "wecom", "dingtalk", "hr", "beisen", "moka", "successfactors", "workday"]),
)
def test_column_mapping_takes_any_record(row: dict[str, Any], preset: str) -> None:
    mapper = ColumnMap(preset)
    try:
        mapped = mapper.apply(row, position="line 7")
    except RecordError as exc:
        _check_record_error(exc, 7)
        mapping = mapper.for_record(row)  # an operation or status value, or a delete's id, it names
        assert any(column in exc.message for column in (mapping.op_column, mapping.status_column, "userId") if column)
        return
    assert mapped.op in (None, "upsert", "delete")
    assert set(mapped.fields) <= set(FIELDS)
    orjson.dumps(mapped.notices)
    try:
        parse_user(mapped.fields, position="line 7")
    except RecordError as exc:
        _check_record_error(exc, 7)


@FUZZ
@given(row=st.dictionaries(st.sampled_from([*FIELDS, "UserId"]) | hostile_text, json_ish(max_leaves=4), max_size=10))
def test_parse_user_names_each_field_and_never_raises_anything_else(row: dict[str, Any]) -> None:
    fast = fast_user_json(row, DEFAULTS)
    try:
        user = parse_user(row, position="line 3", defaults=DEFAULTS)
    except RecordError as exc:
        _check_record_error(exc, 3)
        assert all(p.field in (*FIELDS, "(record)") for p in exc.problems)
        assert fast is None
        return
    assert fast is None or fast == (user.user_id, user.to_json())
    orjson.dumps(user.masked())


@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**5000), 2**64, float("nan"), float("inf"), [1] * 3, {"a": 1}],
    ids=["huge", "huge-negative", "2**64", "nan", "inf", "list", "object"],
)
def test_numbers_and_containers_in_user_fields_are_named_refusals(value: Any) -> None:
    row = {"userId": "u-1", "userName": "Ann", "groupId": "1", "groupName": "G", "userMobile": value}
    try:
        parse_user(row, position="line 4")
    except RecordError as exc:
        _check_record_error(exc, 4)
        assert [p.field for p in exc.problems] == ["userMobile"]
    mapped = ColumnMap().apply(row, position="line 4")
    try:
        parse_user(mapped.fields, position="line 4")
    except RecordError as exc:
        _check_record_error(exc, 4)
        assert [p.field for p in exc.problems] == ["userMobile"]


@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_spreadsheet_safe_never_returns_a_formula(value: str) -> None:
    assert not is_formula_like(spreadsheet_safe(value).strip())
