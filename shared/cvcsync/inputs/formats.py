"""Which format an export is in: a workbook by its bytes; CSV, JSON or NDJSON by its name or its first characters.

What is no export at all is refused by its first bytes (``sniff_bytes``, on ``decoding.SNIFF_BYTES`` of content,
gzip undone), before any text is decoded, with advice that fits what it is: an Excel 97-2003 workbook (OLE2), a PDF,
or binary data (NUL bytes in a tenth of them, or mostly control bytes; a UTF-16/32 byte-order mark or a declared
UTF-16/32 encoding excepted; NULs at every other byte are UTF-16 without its mark, and the advice says so). A zip
archive is looked into (``zip_format``): one holding ``xl/workbook.xml`` is an .xlsx/.xlsm workbook, whatever the
file's name; an .xlsb, an OpenDocument or Numbers spreadsheet, another Office document or any other zip is refused.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from cvcsync.config import ENV_ENCODING
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.decoding import binary_data, control_bytes, is_unicode_family
from cvcsync.inputs.json_stream import JSON_LIST_KEYS
from cvcsync.inputs.lines import LINE_BREAK

TEXT_FORMATS = ("csv", "json", "ndjson")
XLSX = "xlsx"
FORMATS = (*TEXT_FORMATS, XLSX)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (.xls), and Word/PowerPoint of that age
PDF_MAGIC = b"%PDF-"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member, an empty archive, a spanned one
WORKBOOK_PART = "xl/workbook.xml"
_UNICODE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # UTF-32-LE's starts as UTF-16-LE's
_NUL_SHARE = 0.1  # of the first bytes: a stray NUL in a text export is an error row, this many are no text
_CONTROL_SHARE = 0.5
_CONTROL_SAMPLE = 64  # bytes at least, before the share of control bytes says anything
_SAVE_AS = "open it and save as .xlsx or CSV (UTF-8)"
_EXPORT_AS = "export the directory as .xlsx or CSV (UTF-8)"
SNIFF_CHARS = 64 * 1024
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


def sniff_bytes(head: bytes, *, encoding: str | None) -> str:
    """``"zip"`` (see ``zip_format``) or ``"text"`` for a file whose content starts with ``head``; refuses what
    cannot be an export, whatever its name."""
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(OLE2_MAGIC):
        raise InvalidInputError(f"an Excel 97-2003 workbook (.xls): {_SAVE_AS}", code="OldExcelWorkbook")
    if head.startswith(PDF_MAGIC):
        raise InvalidInputError(f"a PDF cannot be read: {_EXPORT_AS}", code="PdfDocument")
    if head.startswith(_UNICODE_BOMS) or is_unicode_family(encoding):
        return "text"
    nuls = head.count(0)
    if nuls and nuls >= _NUL_SHARE * len(head):
        raise _nul_bytes(head, nuls)
    if len(head) >= _CONTROL_SAMPLE and control_bytes(head) > _CONTROL_SHARE * len(head):
        raise binary_data("most of its first bytes are control bytes")
    return "text"


def _nul_bytes(head: bytes, nuls: int) -> InvalidInputError:
    """Many NUL bytes: UTF-16 text without its byte-order mark when they fall on every other byte, else binary."""
    for offset, variant in ((1, "utf-16-le"), (0, "utf-16-be")):
        if head[offset::2].count(0) >= max(0.9 * nuls, len(head) / 4):
            return InvalidInputError(
                f"line 1: the file looks like UTF-16 text without a byte-order mark (a NUL byte beside each ASCII "
                f"character): declare its encoding ({ENV_ENCODING}={variant}), or save it as CSV (UTF-8)",
                code="BadEncoding",
            )
    return binary_data(f"{nuls} NUL bytes in its first {len(head)}")


def zip_format(names: Sequence[str], read: Callable[[str], bytes], *, name: str | None) -> str:
    """``"xlsx"`` for a zip holding an Excel workbook; any other zip is refused with advice that fits it.

    ``names``: the archive's members; ``read``: a member's bytes (only a tiny ``mimetype`` is ever read)."""
    members = set(names)
    if WORKBOOK_PART in members:
        return XLSX
    if "xl/workbook.bin" in members:
        raise InvalidInputError(f"an Excel binary workbook (.xlsb): {_SAVE_AS}", code="UnsupportedSpreadsheet")
    if "mimetype" in members:
        kind = read("mimetype")[:100].decode("ascii", "replace").strip()
        if kind.startswith("application/vnd.oasis.opendocument.spreadsheet"):
            raise InvalidInputError(f"an OpenDocument spreadsheet (.ods): {_SAVE_AS}", code="UnsupportedSpreadsheet")
        if kind.startswith("application/vnd.oasis.opendocument"):
            raise InvalidInputError(f"an OpenDocument document, not a spreadsheet: {_EXPORT_AS}", code="NotAnExport")
    if any(member.startswith("Index/") for member in members):
        raise InvalidInputError(
            "an Apple Numbers spreadsheet: export it as .xlsx or CSV (UTF-8)", code="UnsupportedSpreadsheet"
        )
    if "[Content_Types].xml" in members:
        raise InvalidInputError(
            f"an Office document without a workbook (a Word or PowerPoint file?): {_EXPORT_AS}", code="NotAnExport"
        )
    files = [member for member in names if not member.endswith("/")]
    shown = ", ".join(repr(member[-60:]) for member in files[:3]) + (", …" if len(files) > 3 else "")
    holds = f"it holds {len(files)} file(s): {shown}" if files else "it is empty"
    said = "the file is named .xlsx but is no workbook, only " if _named_workbook(name) else ""
    raise InvalidInputError(
        f"{said}a zip archive ({holds}): upload the export inside it, not the archive", code="ZipArchive"
    )


def _named_workbook(name: str | None) -> bool:
    return (name or "").lower().removesuffix(".gz").endswith((".xlsx", ".xlsm", ".xltx", ".xltm"))


def peek(text: Iterable[str]) -> tuple[str, list[str]]:
    """The first non-blank character (``''`` if none in the first SNIFF_CHARS), and the chunks read to find it."""
    seen: list[str] = []
    size = 0
    for chunk in text:
        seen.append(chunk)
        stripped = chunk.lstrip()
        if stripped:
            return stripped[0], seen
        size += len(chunk)
        if size >= SNIFF_CHARS:
            break
    return "", seen


def choose_format(name: str | None, fmt: str | None, first_char: str, peeked: list[str]) -> str:
    """The format asked for, else the one the name or the first characters (``peek``'s answer) tell."""
    kind = fmt or detect_format(name, first_char)
    if fmt is None and kind == "ndjson" and not _named(name):
        kind = _json_or_ndjson("".join(peeked))
    check_format(kind)
    return kind


def check_format(kind: str) -> None:
    if kind not in FORMATS:
        expected = ", ".join(FORMATS)
        raise InvalidInputError(f"unknown format {kind!r}; expected one of {expected}", code="UnknownFormat")


def detect_format(name: str | None, first_char: str) -> str:
    """The format from the file name's extension (``.gz`` aside), else from its first non-blank character."""
    if name:
        lowered = name.lower().removesuffix(".gz")
        for ext, fmt in _EXTENSIONS.items():
            if lowered.endswith(ext):
                return fmt
    if first_char == "[":
        return "json"
    if first_char == "{":
        return "ndjson"
    return "csv"


def _named(name: str | None) -> bool:
    lowered = (name or "").lower().removesuffix(".gz")
    return any(lowered.endswith(ext) for ext in _EXTENSIONS)


def _json_or_ndjson(head: str) -> str:
    """Content starting with ``{`` and no telling name: NDJSON, unless it is one object wrapping the users' list.

    A first line that opens more brackets than it closes is a pretty-printed document; a single-line object whose
    one list sits under users/UserInfo/data is the wrapper written compactly.
    """
    first_line = LINE_BREAK.split(head.lstrip(), 1)[0]
    if first_line.count("{") + first_line.count("[") > first_line.count("}") + first_line.count("]"):
        return "json"
    try:
        value = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return "ndjson"
    if isinstance(value, dict) and _wrapped_list_key(value) is not None:
        return "json"
    return "ndjson"


def _wrapped_list_key(value: dict[str, Any]) -> str | None:
    lists = [key for key, item in value.items() if isinstance(item, list)]
    if len(lists) == 1 and str(lists[0]).casefold() in JSON_LIST_KEYS:
        return str(lists[0])
    return None
