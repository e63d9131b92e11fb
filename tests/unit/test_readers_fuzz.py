"""Reader hardening: property tests over arbitrary input, round trips, and one named test per hostile input.

Whatever the bytes, ``read_records`` raises nothing but ``InvalidInputError``, and a bad record comes back as a
``SourceRow`` with ``error`` set and its line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs import readers
from cvcsync.inputs.readers import MAX_RECORD_CHARS, SourceRow, read_records

MB5 = 5 * 1024 * 1024


def rows(data: bytes, name: str | None = None, **kw: str) -> list[SourceRow]:
    return list(read_records(io.BytesIO(data), name=name, **kw))


def summary(data: bytes, name: str | None = None, **kw: str) -> list[tuple[int, dict[str, Any], str | None]]:
    return [(r.line, r.data, r.error) for r in rows(data, name, **kw)]


@contextmanager
def chunk_bytes(size: int) -> Iterator[None]:
    """Read in tiny chunks, so every boundary case (a split CRLF, a split character) is met."""
    with mock.patch.object(readers, "CHUNK_BYTES", size):
        yield


def check_shape(got: list[SourceRow]) -> None:
    previous = 0
    for row in got:
        assert row.line >= max(previous, 1)
        previous = row.line
        if row.error is not None:
            assert row.data == {} and row.error
        else:
            assert isinstance(row.data, dict)


# --- properties ------------------------------------------------------------------------------------------------

NAMES = ["x.csv", "x.tsv", "x.txt", "x.json", "x.ndjson", "x.csv.gz", None]


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=600),
    st.sampled_from(NAMES),
    st.sampled_from([None, "utf-8", "gbk", "utf-16"]),
    st.sampled_from([16, 64, 65536]),
)
def test_arbitrary_bytes_only_ever_raise_invalid_input(
    data: bytes, name: str | None, encoding: str | None, size: int
) -> None:
    with chunk_bytes(size):
        try:
            check_shape(rows(data, name, **({"encoding": encoding} if encoding else {})))
        except InvalidInputError as exc:
            assert exc.message


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.sampled_from(NAMES), st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
def test_arbitrary_text_only_ever_raises_invalid_input(text: str, name: str | None, encoding: str) -> None:
    try:
        check_shape(rows(text.encode(encoding), name))
    except InvalidInputError as exc:
        assert exc.message


def _gb18030_encodable(char: str) -> bool:
    try:
        char.encode("gb18030")
    except UnicodeEncodeError:
        return False
    return True


CELL_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00").filter(_gb18030_encodable)
HEADER_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00;\t\r\n\ufeff")
HEADERS = st.lists(
    st.text(HEADER_CHARS, min_size=1, max_size=8).map(str.strip).filter(bool), min_size=1, max_size=5, unique=True
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    HEADERS,
    st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.sampled_from([16, 65536]),
)
def test_csv_round_trips_any_text(
    data: st.DataObject, header: list[str], encoding: str, terminator: str, size: int
) -> None:
    # csv.writer quotes a cell holding \r or \n only if the terminator holds that character: keep to what it writes.
    alphabet = CELL_CHARS if terminator == "\r\n" else CELL_CHARS.filter(lambda c: c not in "\r\n")
    table = data.draw(
        st.lists(st.lists(st.text(alphabet, max_size=10), min_size=len(header), max_size=len(header)), max_size=8)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows(table)
    encoded = buffer.getvalue().encode(encoding)
    declared = {"encoding": "gb18030"} if encoding == "gb18030" else {}  # GB18030 has no mark to detect it by
    with chunk_bytes(size):
        got = rows(encoded, "users.csv", **declared)
    expected = [dict(zip(header, cells, strict=True)) for cells in table if any(cell.strip() for cell in cells)]
    assert [r.error for r in got] == [None] * len(expected)
    assert [r.data for r in got] == expected


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.text(CELL_CHARS.filter(lambda c: c not in "\r\n"), min_size=1, max_size=6), min_size=1, max_size=30),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.sampled_from([16, 17, 65536]),
)
def test_csv_line_numbers_are_exact_across_chunk_boundaries(names: list[str], terminator: str, size: int) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(["userId", "userName"])
    writer.writerows([str(n), name] for n, name in enumerate(names))
    with chunk_bytes(size):
        got = rows(buffer.getvalue().encode(), "u.csv")
    assert [(r.line, r.data["userId"]) for r in got] == [(n + 2, str(n)) for n in range(len(names))]


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
OBJECTS = st.lists(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5), max_size=12)


@settings(max_examples=100, deadline=None)
@given(OBJECTS, st.sampled_from([16, 65536]), st.sampled_from([0, orjson.OPT_INDENT_2]))
def test_json_list_and_wrapper_round_trip(items: list[dict[str, Any]], size: int, option: int) -> None:
    with chunk_bytes(size):
        assert [r.data for r in rows(orjson.dumps(items, option=option), "u.json")] == items
        for key in ("users", "UserInfo", "data"):
            wrapped = orjson.dumps({"total": len(items), key: items, "page": {"n": [1]}}, option=option)
            assert [r.data for r in rows(wrapped, "u.json")] == items


@settings(max_examples=100, deadline=None)
@given(OBJECTS, st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from([16, 65536]))
def test_ndjson_round_trip_with_any_line_ending(items: list[dict[str, Any]], ending: str, size: int) -> None:
    data = ending.encode().join(orjson.dumps(item) for item in items)
    with chunk_bytes(size):
        got = rows(data, "u.ndjson")
    assert [(r.line, r.data) for r in got] == [(n + 1, item) for n, item in enumerate(items)]


# --- huge records ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", [b"x" * MB5, b'"' + b"x" * MB5 + b'"', "张".encode() * (MB5 // 3)], ids=["bare", "quoted", "cjk"]
)
def test_a_5mb_csv_cell_is_an_error_row_and_the_rest_goes_on(cell: bytes) -> None:
    got = summary(b"userId,userName\n1,a\n" + cell + b",b\n2,c\n", "u.csv")
    assert got[0] == (2, {"userId": "1", "userName": "a"}, None)
    assert got[1][0] == 3 and f"at most {MAX_RECORD_CHARS} allowed" in str(got[1][2])
    assert got[2] == (4, {"userId": "2", "userName": "c"}, None)


def test_a_5mb_ndjson_line_is_an_error_row() -> None:
    got = summary(b'{"userId":"1"}\n{"userId":"' + b"x" * MB5 + b'"}\n{"userId":"2"}\n', "u.ndjson")
    assert [(line, bool(error)) for line, _, error in got] == [(1, False), (2, True), (3, False)]
    assert "characters long" in str(got[1][2])


def test_a_5mb_json_list_item_is_an_error_row() -> None:
    got = summary(b'[{"userId":"1"},\n{"userId":"' + b"x" * MB5 + b'"},\n{"userId":"2"}]', "u.json")
    assert [(line, data) for line, data, _ in got] == [(1, {"userId": "1"}), (2, {}), (3, {"userId": "2"})]
    assert "item 2 is" in str(got[1][2]) and "characters long" in str(got[1][2])


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("u.csv", b"userId,userName\n1,a\n" + b"x" * MB5 + b",b\n"),
        ("u.ndjson", b'{"userId":"' + b"x" * MB5 + b'"}\n'),
        ("u.json", b'[{"userId":"' + b"x" * MB5 + b'"}]'),
    ],
)
def test_a_huge_record_is_never_held_whole(name: str, data: bytes) -> None:
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        got = list(read_records(stream, name=name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any(row.error for row in got)
    assert peak < 4 * 1024 * 1024  # the record alone is 5 MiB; the reader holds about MAX_RECORD_CHARS at most


def test_a_quoted_record_spread_over_lines_is_measured_once_parsed() -> None:
    with mock.patch.object(readers, "MAX_RECORD_CHARS", 1000):
        cell = "\n".join(["y" * 400] * 4)
        got = summary(f'userId,note\n1,"{cell}"\n2,ok\n'.encode(), "u.csv")
    assert got[0][0] == 2 and "characters long" in str(got[0][2])
    assert got[1] == (6, {"userId": "2", "note": "ok"}, None)


def test_a_cell_over_csvs_field_limit_is_an_error_row() -> None:
    got = summary(b'userId,note\n1,"' + b"z" * 200_000 + b'"\n2,ok\n', "u.csv")
    assert got[0][0] == 2 and "field limit" in str(got[0][2])
    assert got[1] == (3, {"userId": "2", "note": "ok"}, None)


# --- nesting ---------------------------------------------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000


def test_json_nested_10k_levels_is_an_error_row_and_the_list_goes_on() -> None:
    got = summary(b'[{"userId":"1"},\n' + DEEP + b',\n{"userId":"x","a":' + DEEP + b'},\n{"userId":"2"}]', "u.json")
    assert [(line, data) for line, data, _ in got] == [(1, {"userId": "1"}), (2, {}), (3, {}), (4, {"userId": "2"})]
    assert got[1][2] == "item 2 is nested too deeply"


def test_ndjson_nested_10k_levels_is_an_error_row() -> None:
    got = summary(b'{"userId":"1"}\n' + DEEP + b'\n{"userId":"2"}\n', "u.ndjson")
    assert [(line, bool(error)) for line, _, error in got] == [(1, False), (2, True), (3, False)]


def test_unclosed_deep_nesting_is_a_truncated_document() -> None:
    with pytest.raises(InvalidInputError, match="not closed"):
        rows(b"[" * 10_000, "u.json")


# --- encodings -------------------------------------------------------------------------------------------------


def test_invalid_utf8_in_the_middle_names_the_line() -> None:
    text = "userId,userName\n" + "".join(f"{n},张三\n" for n in range(5000))
    data = text.encode()
    at = data.index(b"\n4000,") + 1
    with pytest.raises(InvalidInputError, match="near line 4002: the file is not valid utf-8") as caught:
        rows(data[:at] + b"\xff" + data[at:], "u.csv")
    assert caught.value.code == "BadEncoding"


def test_a_gbk_file_whose_first_64k_are_ascii_is_still_read_as_gbk() -> None:
    ascii_rows = "".join(f"{n},zhang san\n" for n in range(10_000))
    data = ("userId,userName\n" + ascii_rows + "10000,张三\n").encode("gbk")
    assert len(data) > 2 * readers.CHUNK_BYTES
    assert rows(data, "u.csv")[-1].data == {"userId": "10000", "userName": "张三"}


def test_utf8_that_turns_bad_after_real_chinese_is_not_guessed_as_gbk() -> None:
    with pytest.raises(InvalidInputError, match="not valid utf-8"):
        rows("userId,userName\n1,张三丰\n".encode() + b"2,\xd5\xc5\n", "u.csv")


def test_utf8_bom_in_front_of_gbk_text_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInputError, match="starts with a UTF-8 byte-order mark but is not UTF-8"):
        rows(codecs.BOM_UTF8 + "userId,userName\n1,张三\n".encode("gbk"), "u.csv")


def test_declared_gbk_with_a_stray_utf8_bom_reads() -> None:
    got = rows(codecs.BOM_UTF8 + "userId,userName\n1,张三\n".encode("gbk"), "u.csv", encoding="gbk")
    assert [r.data for r in got] == [{"userId": "1", "userName": "张三"}]


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown encoding"):
        rows(b"userId\n1\n", encoding="klingon")


def test_damaged_gzip_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="gzip"):
        rows(gzip.compress(b"userId\n1\n" * 1000)[:-30], "u.csv.gz")


# --- CSV structure ---------------------------------------------------------------------------------------------


def test_nul_bytes_in_csv_are_error_rows_and_the_rest_goes_on() -> None:
    got = summary(b"userId,userName\n1,a\n2,b\x00c\n3,\x00\n4,d\n", "u.csv")
    assert [(line, error) for line, _, error in got] == [
        (2, None),
        (3, "contains a NUL byte (binary data, or a damaged export)"),
        (4, "contains a NUL byte (binary data, or a damaged export)"),
        (5, None),
    ]


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_line_endings_crlf_lone_cr_and_lf(ending: bytes) -> None:
    data = ending.join([b"userId,userName", b"1,a", b"", b'2,"b' + ending + b'c"', b"3,d"]) + ending
    assert summary(data, "u.csv") == [
        (2, {"userId": "1", "userName": "a"}, None),
        (4, {"userId": "2", "userName": "b" + ending.decode() + "c"}, None),
        (6, {"userId": "3", "userName": "d"}, None),
    ]


def test_mixed_line_endings() -> None:
    got = summary(b"userId\r\n1\r2\n3\r\n", "u.csv")
    assert [(line, data["userId"]) for line, data, _ in got] == [(2, "1"), (3, "2"), (4, "3")]


def test_a_crlf_split_by_a_chunk_boundary_is_one_line_ending() -> None:
    data = b"userId,userName\r\n" + b"".join(b"%d,abcdefghijklm\r\n" % n for n in range(50))
    with chunk_bytes(16):
        got = rows(data, "u.csv")
    assert [r.line for r in got] == list(range(2, 52))


def test_unicode_line_separators_and_form_feeds_are_data() -> None:
    got = summary("userId,userName\n1,a\u2028b\x0cc\x85d\x1ce\n2,f\n".encode(), "u.csv")
    assert got == [
        (2, {"userId": "1", "userName": "a\u2028b\x0cc\x85d\x1ce"}, None),
        (3, {"userId": "2", "userName": "f"}, None),
    ]


def test_header_only_file_has_no_rows() -> None:
    assert rows(b"userId,userName\r\n", "u.csv") == []


@pytest.mark.parametrize("name", ["u.csv", "u.json", "u.ndjson", None])
@pytest.mark.parametrize("data", [b"", b" \r\n\t\n", codecs.BOM_UTF8], ids=["empty", "blank", "bom-only"])
def test_an_empty_file_has_no_rows(name: str | None, data: bytes) -> None:
    assert rows(data, name) == []


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"userId;userName\n1;a\n", "u.csv"),
        (b"userId\tuserName\n1\ta\n", "u.txt"),
        (b"userId\tuserName\n1\ta\n", "u.tsv"),
        (b"userId\tuserName\n1\ta\n", None),
        ("userId\tuserName\r\n1\ta\r\n".encode("utf-16"), "excel.txt"),
    ],
    ids=["semicolon", "tab-txt", "tab-tsv", "tab-nameless", "excel-unicode-text"],
)
def test_the_delimiter_is_sniffed_from_the_header(data: bytes, name: str | None) -> None:
    assert [r.data for r in rows(data, name)] == [{"userId": "1", "userName": "a"}]


def test_quoted_delimiters_do_not_fool_the_sniffer() -> None:
    assert rows(b'"a;b;c",userId\n1,2\n', "u.csv")[0].data == {"a;b;c": "1", "userId": "2"}


def test_a_single_column_tsv_is_tab_separated() -> None:
    assert rows(b"userId\n1,2\n", "u.tsv")[0].data == {"userId": "1,2"}


# --- JSON structure --------------------------------------------------------------------------------------------


def test_json_list_with_trailing_garbage_is_refused_naming_the_line() -> None:
    with pytest.raises(InvalidInputError, match="line 3: unexpected text after the end of the JSON document"):
        rows(b'[\n{"userId":"1"}\n] trailing', "u.json")


def test_two_concatenated_json_lists_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="unexpected text"):
        rows(b'[{"userId":"1"}][{"userId":"2"}]', "u.json")


@pytest.mark.parametrize("key", ["users", "UserInfo", "data", "Users"])
def test_a_json_object_wrapping_the_list(key: str) -> None:
    data = b'{"requestId": "r1", "%s": [{"userId": "1"}, {"userId": "2"}], "total": 2}' % key.encode()
    assert [r.data for r in rows(data, "u.json")] == [{"userId": "1"}, {"userId": "2"}]


@pytest.mark.parametrize(
    "data",
    [b'{"users": [{"userId": "1"}], "data": []}', b'{"errors": [], "users": [{"userId": "1"}]}'],
    ids=["two-wrapper-keys", "list-under-another-key"],
)
def test_a_json_object_with_more_than_one_list_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="exactly one list"):
        rows(data, "u.json")


def test_a_json_object_without_a_list_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="must hold a list") as caught:
        rows(b'{"UserInfo": {"UserId": "1"}}', "u.json")
    assert ".ndjson" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [b'{"UserInfo": [{"userId": "1"}]}', b'{\n  "users": [\n    {"userId": "1"}\n  ]\n}'],
    ids=["compact", "pretty"],
)
def test_a_nameless_wrapper_is_told_from_ndjson(data: bytes) -> None:
    assert [r.data for r in rows(data)] == [{"userId": "1"}]


def test_nameless_ndjson_stays_ndjson() -> None:
    assert [r.data for r in rows(b'{"userId": "1"}\n{"userId": "2"}\n')] == [{"userId": "1"}, {"userId": "2"}]


def test_an_invalid_json_item_is_an_error_row_and_the_list_goes_on() -> None:
    got = summary(b'[{"userId":"1"},\n{bad: [1, "]"]},\n{"userId":"2"}]', "u.json")
    assert [(line, data) for line, data, _ in got] == [(1, {"userId": "1"}), (2, {}), (3, {"userId": "2"})]
    assert str(got[1][2]).startswith("item 2 is not valid JSON")


def test_a_number_too_long_for_python_is_an_error_row() -> None:
    got = summary(b'[{"userId": 1' + b"0" * 5000 + b'}, {"userId": "2"}]', "u.json")
    assert got[0][2] == "item 1 is not valid JSON: a number too long to read"
    assert got[1][1] == {"userId": "2"}


@pytest.mark.parametrize("data", [b'[{"userId":"1"}, }]', b'{"users": [{"a":1}, {"b":} "x"}], "n": 2}'])
def test_a_stray_closing_bracket_is_refused_not_looped_on(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="unexpected '}'"):
        rows(data, "u.json")


@pytest.mark.parametrize(
    ("data", "line"),
    [(b"x" * (2 * MAX_RECORD_CHARS) + b"\nuserId\n1\n", 1), (b"\n\nuserId,b\x00\n1,2\n", 3)],
    ids=["huge-line-before-header", "nul-in-header"],
)
def test_an_unreadable_header_refuses_the_file(data: bytes, line: int) -> None:
    with pytest.raises(InvalidInputError, match=f"line {line}: before or in the header") as caught:
        rows(data, "u.csv")
    assert caught.value.code == "BadHeader"
