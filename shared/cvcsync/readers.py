"""Streaming readers for user exports: CSV (header row), a JSON list, or NDJSON; optionally gzip-compressed.

Memory stays flat whatever the file's size: bytes are decoded as they stream and each record is yielded as soon
as it is complete. A record that cannot be read (a broken NDJSON line, a CSV row with the wrong cell count) is
yielded as a ``SourceRow`` with ``error`` set, so one bad line never stops the rest; only a file that cannot be
read at all (unknown encoding, a JSON document that is not a list) raises ``InvalidInputError``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from .errors import InvalidInputError

FORMATS = ("csv", "json", "ndjson")
SNIFF_BYTES = 64 * 1024
CHUNK_CHARS = 64 * 1024
MAX_RECORD_CHARS = 1024 * 1024
_EXTENSIONS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass
class SourceRow:
    """One record as read: its 1-based line, its raw fields, or why it could not be read."""

    line: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def position(self) -> str:
        return f"line {self.line}"


class _Prefixed(io.RawIOBase):
    """A byte stream that replays an already-read prefix before the rest, so sniffing costs no second read."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_up_to(stream: Any, size: int) -> bytes:
    """Read until ``size`` bytes or the end: raw streams may return less than asked for."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _sniff_encoding(sample: bytes) -> str:
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return "gb18030"  # a superset of GBK, which is what Chinese spreadsheet tools write by default
    return "utf-8"


def detect_format(name: str | None, first_char: str) -> str:
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


def open_text(stream: IO[bytes], *, encoding: str | None = None) -> tuple[IO[str], str]:
    """Undo gzip if present, pick the encoding (declared, BOM, UTF-8, else GB18030), return a text stream."""
    head = stream.read(2)
    raw: Any = _Prefixed(head, stream)
    if head == b"\x1f\x8b":
        raw = gzip.GzipFile(fileobj=io.BufferedReader(raw))
    try:
        sample = _read_up_to(raw, SNIFF_BYTES)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInputError(f"the gzip data is damaged or truncated: {exc}", code="BadGzip") from exc
    chosen = encoding or _sniff_encoding(sample)
    if chosen.lower().replace("_", "-") in ("utf-8", "utf8") and sample.startswith(codecs.BOM_UTF8):
        chosen = "utf-8-sig"
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise InvalidInputError(f"unknown encoding {chosen!r}", code="UnknownEncoding") from None
    buffered = io.BufferedReader(_Prefixed(sample, raw), buffer_size=SNIFF_BYTES)
    return io.TextIOWrapper(buffered, encoding=chosen, newline=""), chosen


def _first_char(text: IO[str]) -> tuple[str, str]:
    """The first non-blank character, and everything read to find it (to be replayed)."""
    seen = ""
    while True:
        chunk = text.read(256)
        if not chunk:
            return "", seen
        seen += chunk
        stripped = seen.lstrip()
        if stripped:
            return stripped[0], seen


def read_records(
    stream: IO[bytes], *, name: str | None = None, fmt: str | None = None, encoding: str | None = None
) -> Iterator[SourceRow]:
    """Yield each record of a user export, in order, with its line number."""
    text, chosen = open_text(stream, encoding=encoding)
    try:
        first, prefix = _first_char(text)
        kind = fmt or detect_format(name, first)
        if kind not in FORMATS:
            expected = ", ".join(FORMATS)
            raise InvalidInputError(f"unknown format {kind!r}; expected one of {expected}", code="UnknownFormat")
        readers = {"csv": _read_csv, "json": _read_json_list, "ndjson": _read_ndjson}
        yield from readers[kind](_chain_text(prefix, text))
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the file is not valid {chosen} text ({exc.reason}); declare its encoding", code="BadEncoding"
        ) from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInputError(f"the gzip data is damaged or truncated: {exc}", code="BadGzip") from exc


def _chain_text(prefix: str, rest: IO[str]) -> Iterator[str]:
    """The text as chunks of at most CHUNK_CHARS, prefix first."""
    if prefix:
        yield prefix
    while True:
        chunk = rest.read(CHUNK_CHARS)
        if not chunk:
            return
        yield chunk


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    """Split chunks into physical lines at ``\n`` only, keeping endings (csv needs them for quoted newlines).

    ``str.splitlines`` is not used: it also splits at U+0085, U+2028 and friends, which are data, not lines.
    """
    pending = ""
    for chunk in chunks:
        parts = (pending + chunk).split("\n")
        pending = parts.pop()
        for part in parts:
            yield part + "\n"
    if pending:
        yield pending


def _read_csv(chunks: Iterator[str]) -> Iterator[SourceRow]:
    reader = csv.reader(_lines(chunks))
    header: list[str] | None = None
    start = 1
    for cells in reader:
        line = start
        start = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lstrip("\ufeff") for cell in cells]
            if len(set(header)) != len(header):
                duplicates = sorted({h for h in header if header.count(h) > 1})
                raise InvalidInputError(f"line {line}: the header repeats column(s) {', '.join(duplicates)}")
            continue
        if len(cells) != len(header):
            yield SourceRow(line, error=f"has {len(cells)} cells but the header has {len(header)}")
            continue
        yield SourceRow(line, dict(zip(header, cells, strict=True)))
    if header is None:
        return


def _read_ndjson(chunks: Iterator[str]) -> Iterator[SourceRow]:
    for number, line in enumerate(_lines(chunks), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_RECORD_CHARS:
            yield SourceRow(number, error=f"is {len(line)} characters long; at most {MAX_RECORD_CHARS} allowed")
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield SourceRow(number, error=f"is not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield SourceRow(number, error=f"must be a JSON object, got {type(value).__name__}")
            continue
        yield SourceRow(number, value)


def _read_json_list(chunks: Iterator[str]) -> Iterator[SourceRow]:
    """Stream the items of a top-level JSON list without holding the whole document."""
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0
    line = 1
    exhausted = False

    def refill() -> bool:
        nonlocal buffer, pos, exhausted
        chunk = next(chunks, None)
        if chunk is None:
            exhausted = True
            return False
        buffer = buffer[pos:] + chunk
        pos = 0
        return True

    def skip(chars: str) -> str:
        """Skip whitespace and the given separators; return the next significant character ('' at the end)."""
        nonlocal pos, line
        while True:
            while pos < len(buffer) and (buffer[pos].isspace() or buffer[pos] in chars):
                if buffer[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not refill():
                return ""

    if skip("") != "[":
        raise InvalidInputError("line 1: a JSON file must hold a list of user objects", code="NotAList")
    pos += 1
    index = 0
    while True:
        upcoming = skip(",")
        if upcoming == "]":
            return
        if not upcoming:
            raise InvalidInputError(f"line {line}: the JSON list is not closed (truncated file?)", code="BadJson")
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
                break
            except (json.JSONDecodeError, RecursionError) as exc:
                if exhausted or len(buffer) - pos > MAX_RECORD_CHARS or isinstance(exc, RecursionError):
                    detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                    raise InvalidInputError(
                        f"line {line}: item {index + 1} is not valid JSON: {detail}", code="BadJson"
                    ) from None
                refill()
        index += 1
        if isinstance(value, dict):
            yield SourceRow(line, value)
        else:
            yield SourceRow(line, error=f"item {index} must be a JSON object, got {type(value).__name__}")
        line += buffer.count("\n", pos, end)
        pos = end
