from __future__ import annotations

import codecs
import gzip
import io

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.readers import SourceRow, read_records


def rows(data: bytes, name: str | None = None, **kw: str) -> list[SourceRow]:
    return list(read_records(io.BytesIO(data), name=name, **kw))


CSV = "userId,userName,departName\n1,张三,行政部\n2,李四,财务部\n"


@pytest.mark.parametrize(
    "encoded",
    [CSV.encode(), codecs.BOM_UTF8 + CSV.encode(), CSV.encode("gbk"), CSV.encode("gb18030"), CSV.encode("utf-16")],
    ids=["utf8", "utf8-bom", "gbk", "gb18030", "utf16"],
)
def test_csv_in_every_common_encoding(encoded: bytes) -> None:
    got = rows(encoded, "users.csv")
    assert [r.data for r in got] == [
        {"userId": "1", "userName": "张三", "departName": "行政部"},
        {"userId": "2", "userName": "李四", "departName": "财务部"},
    ]
    assert [r.line for r in got] == [2, 3]


def test_declared_encoding_wins() -> None:
    assert rows(CSV.encode("gbk"), encoding="gbk")[0].data["userName"] == "张三"


def test_gzip_is_undone() -> None:
    assert len(rows(gzip.compress(CSV.encode()), "users.csv.gz")) == 2


def test_quoted_newlines_keep_line_numbers_true() -> None:
    got = rows(b'userId,userName\n1,"a\nb"\n2,c\n')
    assert [(r.line, r.data["userId"]) for r in got] == [(2, "1"), (4, "2")]


def test_crlf_line_endings() -> None:
    assert [r.line for r in rows(b"userId,userName\r\n1,a\r\n2,b\r\n")] == [2, 3]


def test_a_short_csv_row_is_reported_with_its_line_and_the_rest_goes_on() -> None:
    got = rows(b"userId,userName\n1\n2,b\n")
    assert got[0].error == "has 1 cells but the header has 2" and got[0].line == 2
    assert got[1].data == {"userId": "2", "userName": "b"}


def test_duplicate_header_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="repeats column"):
        rows(b"userId,userId\n1,2\n")


def test_json_list_streams_items_with_lines() -> None:
    got = rows(b'[\n {"userId": "1"},\n 42,\n {"userId": "3"}\n]')
    assert [(r.line, r.data, r.error) for r in got] == [
        (2, {"userId": "1"}, None),
        (3, {}, "item 2 must be a JSON object, got int"),
        (4, {"userId": "3"}, None),
    ]


def test_truncated_json_list_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="not closed"):
        rows(b'[{"userId": "1"},')


def test_json_that_is_not_a_list_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="must hold a list"):
        rows(b'{"userId": "1"}', "users.json")


def test_ndjson_bad_lines_do_not_stop_the_rest() -> None:
    got = rows(b'{"userId":"1"}\nnope\n\n[1]\n{"userId":"4"}\n')
    assert [(r.line, bool(r.error)) for r in got] == [(1, False), (2, True), (4, True), (5, False)]


def test_format_sniffed_from_content_without_extension() -> None:
    assert rows(b'[{"userId":"1"}]')[0].data == {"userId": "1"}
    assert rows(b'{"userId":"1"}\n')[0].data == {"userId": "1"}


def test_invalid_utf8_in_declared_utf8_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="not valid utf-8"):
        rows(b"userId,userName\n1,\xff\xfe\xfa\n", encoding="utf-8")


def test_large_json_list_crosses_chunk_boundaries() -> None:
    items = [{"userId": str(i), "userName": "名" * (i % 50)} for i in range(5000)]
    got = rows(orjson.dumps(items, option=orjson.OPT_INDENT_2))
    assert [r.data for r in got] == items


users = st.lists(
    st.fixed_dictionaries({"userId": st.text(min_size=1, max_size=8), "userName": st.text(max_size=12)}),
    max_size=20,
)


@settings(max_examples=60)
@given(users)
def test_json_and_ndjson_round_trip_any_text(items: list[dict[str, str]]) -> None:
    assert [r.data for r in rows(orjson.dumps(items), "u.json")] == items
    ndjson = b"\n".join(orjson.dumps(i) for i in items)
    assert [r.data for r in rows(ndjson, "u.ndjson")] == items


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_readers(data: bytes) -> None:
    for name in ("x.csv", "x.json", "x.ndjson"):
        try:
            for row in rows(data, name):
                assert row.error or isinstance(row.data, dict)
        except InvalidInputError as exc:
            assert exc.message
