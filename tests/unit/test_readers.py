from __future__ import annotations

import codecs
import gzip
import io
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.readers import MAX_RECORD_CHARS, SourceRow, read_records
from support.exports import export_path


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


# --- files that are no text export, told by their first bytes ---------------------------------------------------


def refused(data: bytes, name: str | None = "export.csv", **kw: str) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        rows(data, name, **kw)
    return caught.value


@pytest.mark.parametrize("name", ["export.csv", "export.xls", None])
@pytest.mark.parametrize(
    ("sample", "code", "message"),
    [
        (
            "sheet-old-excel.xls",
            "OldExcelWorkbook",
            "an Excel 97-2003 workbook (.xls): open it and save as .xlsx or CSV (UTF-8)",
        ),
        ("sheet-directory.pdf", "PdfDocument", "a PDF cannot be read: export the directory as .xlsx or CSV (UTF-8)"),
        (
            "sheet-archive.zip",
            "ZipArchive",
            "a zip archive (it holds 1 file(s): '通讯录.csv'): upload the export inside it, not the archive",
        ),
    ],
)
def test_files_that_are_no_export_are_refused_by_their_bytes(
    sample: str, code: str, message: str, name: str | None
) -> None:
    got = refused(export_path(sample).read_bytes(), name)
    assert (got.code, got.message) == (code, message)


def test_random_bytes_are_binary_data_not_a_wrong_encoding() -> None:
    got = refused(export_path("sheet-random-bytes.bin").read_bytes())
    assert got.code == "BinaryData" and got.message.startswith("binary data, not a text export")
    assert "CVCSYNC_ENCODING" not in got.message


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 4, b"\x00" * 100, b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" * 20, b"\x01\x02\x03\x04" * 40],
    ids=["every-byte", "nuls", "exe-like", "control-bytes"],
)
def test_nul_or_control_heavy_data_is_binary_data(data: bytes) -> None:
    got = refused(data)
    assert got.code == "BinaryData" and got.message.startswith("binary data, not a text export (")


def test_gzip_is_undone_before_the_bytes_are_judged() -> None:
    assert refused(gzip.compress(export_path("sheet-directory.pdf").read_bytes()), "x.csv.gz").code == "PdfDocument"
    assert refused(gzip.compress(b"\x00" * 5000), "x.csv.gz").code == "BinaryData"


def test_utf16_without_its_byte_order_mark_is_named_as_such() -> None:
    got = refused("userId,userName\n1,张三\n2,李四\n".encode("utf-16-le"))
    assert got.code == "BadEncoding"
    assert "UTF-16 text without a byte-order mark" in got.message and "CVCSYNC_ENCODING=utf-16-le" in got.message
    assert "CVCSYNC_ENCODING=utf-16-be" in refused("userId,userName\n1,a\n".encode("utf-16-be")).message


def test_utf16_declared_or_with_its_mark_is_text_whatever_its_nuls() -> None:
    text = "userId,userName\n1,张三\n"
    assert rows(text.encode("utf-16-le"), "u.csv", encoding="utf-16-le")[0].data == {"userId": "1", "userName": "张三"}
    assert rows(text.encode("utf-16"), "u.csv")[0].data == {"userId": "1", "userName": "张三"}


def test_a_stray_nul_or_control_byte_in_text_is_still_an_error_row_not_a_refusal() -> None:
    got = rows(b"userId,userName\n1,a\x00b\n2,c\x01d\n", "u.csv")
    assert [(r.line, r.error is None) for r in got] == [(2, False), (3, True)]


def test_a_format_that_does_not_fit_the_bytes() -> None:
    assert refused(b"userId,userName\n1,a\n", fmt="xlsx").code == "NotAWorkbook"
    assert rows(b"", fmt="xlsx") == []
    assert refused(b"userId\n1\n", fmt="xls").code == "UnknownFormat"


# --- a text file with no line break -------------------------------------------------------------------------------


def test_a_file_of_one_line_with_no_break_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "one-line.csv"
    with path.open("wb") as out:
        for _ in range(20):  # 20 MiB, and not one line break
            out.write(b"userId;userName;" * (1024 * 1024 // 16))
    with path.open("rb") as stream:
        with pytest.raises(InvalidInputError) as caught:
            list(read_records(stream, name=path.name))
        read_so_far = stream.tell()
    assert caught.value.code == "BadHeader"
    assert caught.value.message.startswith(
        f"line 1: before or in the header, a line is over {MAX_RECORD_CHARS} characters long before its first "
        "line break: not a line-based export"
    )
    assert read_so_far < 3 * MAX_RECORD_CHARS  # refused as soon as the line is too long, not after 20 MiB


def test_a_long_line_after_blank_lines_is_refused_naming_its_line() -> None:
    got = refused(b"\r\n\n" + b"x" * (MAX_RECORD_CHARS + 10))
    assert got.code == "BadHeader" and got.message.startswith("line 3: before or in the header")
    assert refused(gzip.compress(b"y" * (2 * MAX_RECORD_CHARS)), "u.csv.gz").code == "BadHeader"


def test_a_long_line_after_the_header_is_an_error_row_as_before() -> None:
    got = rows(b"userId,userName\n1,a\n" + b"x" * (MAX_RECORD_CHARS + 10) + b"\n2,b\n", "u.csv")
    assert [(r.line, r.error is None) for r in got] == [(2, True), (3, False), (4, True)]
