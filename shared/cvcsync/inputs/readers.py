"""Streaming readers for user exports: CSV/TSV (header row), a JSON list, or NDJSON; optionally gzip-compressed.

Memory stays flat whatever the file's size: bytes are decoded chunk by chunk and each record is yielded as soon as
it is complete. A record that cannot be read is yielded as a ``SourceRow`` with ``error`` set and its line, so one bad
line never stops the rest:

- a CSV row with the wrong cell count, a NUL byte, or a cell over csv's field limit (131072 characters);
- an NDJSON line that is not a JSON object (or is nested deeper than orjson's 1024 levels);
- a JSON list item that is not an object, is not valid JSON, or is nested too deeply;
- any record longer than ``MAX_RECORD_CHARS``: a physical line that long is never held whole (it is skipped as it
  streams past), a JSON list item is skipped by a bracket scanner that keeps nothing, and a quoted CSV record
  spread over several lines is measured once parsed.

Only a file that cannot be read at all raises ``InvalidInputError``: unknown encoding or format, damaged gzip, text
that is not in the file's encoding (named with the approximate line), a repeated CSV header, a JSON document that
is not a list (or an object holding one), a JSON document that is not closed or has text after its end.

Decisions worth knowing:

- Encoding: a declared one wins (a UTF-8 byte-order mark in front of declared GBK text, as some tools write, is
  dropped); else a byte-order mark (UTF-8, UTF-16); else UTF-8 or GB18030 (a superset of GBK, what Chinese
  spreadsheet tools write), decided by the first chunk that is not pure ASCII, so a GBK file whose first 64 KiB
  happen to be ASCII is still read right. A file with a UTF-8 byte-order mark whose text is not UTF-8 is refused,
  not guessed at: the mark is a claim, and guessing could write garbled names into CVC.
- Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (old Mac exports), never at U+2028 and the like, which are data.
- CSV delimiter: the most frequent of ``,`` ``;`` and tab outside quotes in the header line (ties: comma; a ``.tsv``
  name prefers tab), so Excel's tab-separated ``.txt``/``.tsv`` and European ``;`` files read as they are.
- JSON: a top-level list, or an object whose one list-valued key is ``users``, ``UserInfo`` or ``data`` (any
  case), e.g. ``{"UserInfo": [...]}``; any other list beside it is refused as ambiguous.
- An empty or blank file has zero records, whatever its format.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from cvcsync.config import ENV_ENCODING
from cvcsync.errors import InvalidInputError

FORMATS = ("csv", "json", "ndjson")
CHUNK_BYTES = 64 * 1024
SNIFF_CHARS = 64 * 1024
MAX_RECORD_CHARS = 1024 * 1024
DELIMITERS = (",", ";", "\t")
JSON_LIST_KEYS = ("users", "userinfo", "data")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UNICODE_FAMILIES = ("utf-16", "utf-32")
_AUTO_UTF8_EVIDENCE = 3  # valid non-ASCII UTF-8 characters before a bad byte that make a file "UTF-8, damaged"
_BREAK = re.compile(r"\r\n?|\n")
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")  # str.splitlines splits there
_QUOTED = re.compile(r'"[^"]*"?')
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_JSON_SPACE_COMMAS = re.compile(r"[ \t\r\n,]*")
_JSON_STRUCTURE = re.compile(r'[\[\]{}",\\]')


@dataclass
class SourceRow:
    """One record as read: its 1-based line, its raw fields, or why it could not be read."""

    line: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def position(self) -> str:
        return f"line {self.line}"


def read_records(
    stream: IO[bytes], *, name: str | None = None, fmt: str | None = None, encoding: str | None = None
) -> RecordStream:
    """Each record of a user export, in order, with its line number (read as they are asked for)."""
    return RecordStream(stream, name=name, fmt=fmt, encoding=encoding)


CsvCells = tuple[int, list[str]]  # (line, cells in the header's order) of a CSV row that was read


class RecordStream(Iterator[SourceRow]):
    """What ``read_records`` returns: the records as ``SourceRow``s.

    ``cells()`` hands the same records to a caller that maps columns itself (the planner): each CSV row as
    ``(line, cells)``, with ``header`` set before the first one, which saves building a dict per row; a row that
    cannot be read, and every JSON or NDJSON record, still comes as a ``SourceRow``. A stream is read once, either
    way.
    """

    def __init__(self, stream: IO[bytes], *, name: str | None, fmt: str | None, encoding: str | None) -> None:
        self.header: tuple[str, ...] | None = None
        self._stream = stream
        self._name = name
        self._fmt = fmt
        self._encoding = encoding
        self._rows: Iterator[SourceRow] | None = None

    def __next__(self) -> SourceRow:
        if self._rows is None:
            self._rows = self._records(cells=False)
        return next(self._rows)

    def cells(self) -> Iterator[SourceRow | CsvCells]:
        if self._rows is not None:
            raise RuntimeError("these records are already being read")
        self._rows = iter(())
        return self._records(cells=True)

    def _set_header(self, header: list[str]) -> None:
        self.header = tuple(header)

    def _records(self, *, cells: bool) -> Iterator[Any]:
        name, fmt = self._name, self._fmt
        text = _Text(self._stream, self._encoding)
        try:
            first, peeked = _peek(text)
            if not first and text.exhausted:
                return
            kind = fmt or detect_format(name, first)
            if fmt is None and kind == "ndjson" and not _named(name):
                kind = _json_or_ndjson("".join(peeked))
            if kind not in FORMATS:
                expected = ", ".join(FORMATS)
                raise InvalidInputError(f"unknown format {kind!r}; expected one of {expected}", code="UnknownFormat")
            chunks = itertools.chain(peeked, text)
            if kind == "csv":
                prefer_tab = bool(name) and str(name).lower().removesuffix(".gz").endswith(".tsv")
                on_header = self._set_header if cells else None
                yield from _read_csv(_Lines(chunks, text), prefer_tab=prefer_tab, on_header=on_header)
            elif kind == "ndjson":
                yield from _read_ndjson(_Lines(chunks, text))
            else:
                yield from _JsonDocument(chunks, text).records()
        except UnicodeError as exc:  # UnicodeDecodeError, or UTF-16's missing-BOM error
            raise text.encoding_error(exc, 1) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidInputError(f"the gzip data is damaged or truncated: {exc}", code="BadGzip") from exc


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
    first_line = _BREAK.split(head.lstrip(), 1)[0]
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


# --- bytes to text ---------------------------------------------------------------------------------------------


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


class _Decoder:
    """Bytes to text for one file: the declared encoding, a byte-order mark's, or UTF-8/GB18030 told apart late.

    Undecided, the decoder passes ASCII through (it reads the same in both) and decides on the first chunk holding
    other bytes: UTF-8 if they are valid UTF-8, else GB18030, unless a few valid non-ASCII UTF-8 characters came
    before the bad byte (then it is UTF-8 with a damaged byte, which GB18030 would turn into plausible garbage).
    """

    def __init__(self, declared: str | None) -> None:
        self.encoding = "utf-8"
        self.declared = bool(declared)
        self.bom = False
        self._inner: codecs.IncrementalDecoder | None = None
        self._started = False
        self._held = b""
        if declared:
            try:
                self.encoding = codecs.lookup(declared).name
            except LookupError:
                raise InvalidInputError(f"unknown encoding {declared!r}", code="UnknownEncoding") from None

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._inner is not None:
            return self._inner.decode(data, final)
        if not self._started:
            self._started = True
            data = self._start(data)
            if self._inner is not None:
                return self._inner.decode(data, final)
        return self._undecided(self._held + data, final)

    def _start(self, data: bytes) -> bytes:
        """Look at the first bytes once: honour a byte-order mark, drop a UTF-8 one that is not the declared family."""
        utf8_bom = data.startswith(codecs.BOM_UTF8)
        if self.declared:
            if utf8_bom and not self.encoding.startswith(_UNICODE_FAMILIES):
                data = data[len(codecs.BOM_UTF8) :]
                self.bom = self.encoding == "utf-8"
            self._inner = codecs.getincrementaldecoder(self.encoding)()
        elif utf8_bom:
            self.bom = True
            self._inner = codecs.getincrementaldecoder("utf-8")()
            data = data[len(codecs.BOM_UTF8) :]
        elif data.startswith(_UTF16_BOMS):
            self.bom = True
            self.encoding = "utf-16"
            self._inner = codecs.getincrementaldecoder("utf-16")()
        return data

    def _undecided(self, data: bytes, final: bool) -> str:
        self._held = b""
        if data.isascii():
            return data.decode("ascii")
        probe = codecs.getincrementaldecoder("utf-8")()
        try:
            text = probe.decode(data, final)
        except UnicodeDecodeError as exc:
            valid = data[: exc.start].decode("utf-8")
            if len(valid) - len(valid.encode("ascii", "ignore")) >= _AUTO_UTF8_EVIDENCE:
                raise
            self.encoding = "gb18030"
            self._inner = codecs.getincrementaldecoder("gb18030")()
            return self._inner.decode(data, final)
        if text.isascii() and not final:
            self._held = data[len(text) :]  # only an incomplete character so far: decide with the next chunk
            return text
        self._inner = probe
        return text

    @property
    def detected(self) -> bool:
        return not self.declared and not self.bom


class _Text:
    """One file's text as chunks: gzip undone, decoded, and never ending in a ``\\r`` that a ``\\n`` may follow.

    Keeping a chunk-final ``\\r`` for the next chunk means a ``\\r\\n`` is never split, so every consumer can cut
    lines at chunk boundaries without looking ahead.
    """

    def __init__(self, stream: IO[bytes], encoding: str | None) -> None:
        self.decoder = _Decoder(encoding)
        self.exhausted = False
        self._stream = stream
        self._chunks = self._generate()

    def __iter__(self) -> Iterator[str]:
        return self._chunks

    def _generate(self) -> Iterator[str]:
        size = max(16, min(CHUNK_BYTES, MAX_RECORD_CHARS))
        head = _read_up_to(self._stream, 2)
        raw: Any = self._stream
        if head == b"\x1f\x8b":
            raw = gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(head, self._stream)))
            data = _read_up_to(raw, size)
        else:
            data = head + _read_up_to(raw, size - len(head))
        carry = ""
        while data:
            text = self.decoder.decode(data)
            if carry:
                text = carry + text
                carry = ""
            if text.endswith("\r"):
                carry = "\r"
                text = text[:-1]
            if text:
                yield text
            data = raw.read(size)
        text = carry + self.decoder.decode(b"", final=True)
        self.exhausted = True
        if text:
            yield text

    def encoding_error(self, exc: UnicodeError, line: int) -> InvalidInputError:
        """The file is not in its encoding: say so near the line, and what to do."""
        reason = str(exc)
        if isinstance(exc, UnicodeDecodeError):
            reason = exc.reason
            if isinstance(exc.object, bytes):
                line += exc.object.count(b"\n", 0, exc.start)
        where = f"near line {line}: "
        decoder = self.decoder
        if decoder.bom and decoder.encoding == "utf-8":
            what = (
                f"the file starts with a UTF-8 byte-order mark but is not UTF-8 text ({reason}); "
                f"a GBK export saved with a BOM? declare its encoding ({ENV_ENCODING} or --encoding)"
            )
        elif decoder.detected and decoder.encoding == "gb18030":
            what = f"the file is neither UTF-8 nor GB18030/GBK text ({reason}); declare its encoding ({ENV_ENCODING})"
        else:
            what = f"the file is not valid {decoder.encoding} text ({reason}); declare its encoding ({ENV_ENCODING})"
        return InvalidInputError(where + what, code="BadEncoding")


def _peek(text: _Text) -> tuple[str, list[str]]:
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


def _line_breaks(text: str, start: int = 0, end: int | None = None) -> int:
    stop = len(text) if end is None else end
    return text.count("\n", start, stop) + text.count("\r", start, stop) - text.count("\r\n", start, stop)


# --- lines (CSV and NDJSON) ------------------------------------------------------------------------------------


class _Lines:
    """The text's physical lines, handed out a chunk at a time as C-level iterators (csv reads them at full speed).

    Counts lines as it goes (for error lines), and records in ``flagged`` (line -> why) each line that must not be
    trusted: one longer than MAX_RECORD_CHARS, which is replaced by an empty line and never held whole, and one
    holding a NUL byte.
    """

    def __init__(self, chunks: Iterable[str], text: _Text) -> None:
        self.flagged: dict[int, str] = {}
        self.count = 0
        self._chunks = chunks
        self._text = text

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterable[str]]:
        limit = MAX_RECORD_CHARS
        pending = ""
        skipped = -1  # characters of an over-long line skipped so far; -1 when not skipping
        try:
            for chunk in self._chunks:
                if skipped >= 0:
                    found = _BREAK.search(chunk)
                    if found is None:
                        skipped += len(chunk)
                        continue
                    yield self._flag_long(skipped + found.start())
                    skipped = -1
                    chunk = chunk[found.end() :]
                    if not chunk:
                        continue
                text = pending + chunk if pending else chunk
                cut = max(text.rfind("\n"), text.rfind("\r")) + 1
                if cut == 0:
                    if len(text) > limit:
                        skipped, pending = len(text), ""
                    else:
                        pending = text
                    continue
                block = text[:cut] if cut < len(text) else text
                if pending and len(text) > limit:
                    found = _BREAK.search(block)
                    if found is not None and found.start() > limit:
                        yield self._flag_long(found.start())
                        block = block[found.end() :]
                pending = text[cut:]
                if block:
                    yield self._split(block)
                if len(pending) > limit:
                    skipped, pending = len(pending), ""
        except UnicodeError as exc:
            raise self._text.encoding_error(exc, self.count + 1) from exc
        if skipped >= 0:
            yield self._flag_long(skipped)
        elif pending:
            yield self._split(pending)

    def _split(self, block: str) -> Iterable[str]:
        """The block's lines. ``str.splitlines`` is the fast way, but it also splits at U+2028, form feed and the
        like, which are data here: blocks holding one of those go through ``io.StringIO``, which does not."""
        if "\x00" in block:
            self._check_nul(block)
        if any(char in block for char in _OTHER_BREAKS):
            self.count += _line_breaks(block) + (0 if block.endswith(("\n", "\r")) else 1)
            return io.StringIO(block, newline="")
        lines = block.splitlines(keepends=True)
        self.count += len(lines)
        return lines

    def _flag_long(self, length: int) -> tuple[str]:
        self.count += 1
        self.flagged[self.count] = f"is {length} characters long; at most {MAX_RECORD_CHARS} allowed"
        return ("\n",)

    def _check_nul(self, block: str) -> None:
        """Flag each line holding a NUL (csv refuses them before Python 3.11, and they are never user data).

        One pass whatever the count: a binary file renamed .csv is all NULs.
        """
        line = self.count + 1
        start = 0
        at = block.find("\x00")
        while at >= 0:
            line += _line_breaks(block, start, at)
            self.flagged.setdefault(line, "contains a NUL byte (binary data, or a damaged export)")
            found = _BREAK.search(block, at)
            if found is None:
                return
            line += 1
            start = found.end()
            at = block.find("\x00", start)


def _take_flag(flagged: dict[int, str], first: int, last: int) -> str | None:
    """The first reason recorded for lines first..last, forgetting them all (so the dict stays small)."""
    reason = None
    for number in range(first, last + 1):
        found = flagged.pop(number, None)
        if reason is None:
            reason = found
    return reason


def _sniff_delimiter(line: str, *, prefer_tab: bool) -> str:
    """The most frequent of DELIMITERS outside quotes in the header line; ties go to tab for .tsv, else comma."""
    bare = _QUOTED.sub("", line)
    counts = {d: bare.count(d) for d in DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return "\t" if prefer_tab else ","
    if prefer_tab and counts["\t"] == best:
        return "\t"
    return next(d for d in DELIMITERS if counts[d] == best)


def _read_csv(
    lines: _Lines, *, prefer_tab: bool, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[Any]:
    """The rows as ``SourceRow``; with ``on_header``, which is told the header, readable rows as ``(line, cells)``."""
    source = iter(lines)
    blanks = 0
    for first in source:
        if first.strip():
            break
        blanks += 1
    else:
        return
    delimiter = _sniff_delimiter(first, prefer_tab=prefer_tab)
    reader = csv.reader(itertools.chain(itertools.repeat("\n", blanks), (first,), source), delimiter=delimiter)
    flagged = lines.flagged
    header = _read_header(reader, flagged)
    if header is None:
        return
    cells_only = on_header is not None
    if on_header is not None:
        on_header(header)
    width = len(header)
    limit = MAX_RECORD_CHARS
    end = reader.line_num
    while True:
        try:
            for cells in reader:
                line = end + 1
                end = reader.line_num
                if len(cells) != width or not cells[0].strip():
                    if not any(cell.strip() for cell in cells):
                        if flagged and (reason := _take_flag(flagged, line, end)):
                            yield SourceRow(line, error=reason)
                        continue
                    if len(cells) != width:
                        reason = _take_flag(flagged, line, end) if flagged else None
                        yield SourceRow(line, error=reason or f"has {len(cells)} cells but the header has {width}")
                        continue
                if flagged and (reason := _take_flag(flagged, line, end)):
                    yield SourceRow(line, error=reason)
                    continue
                if end != line and (size := sum(map(len, cells))) > limit:
                    yield SourceRow(line, error=f"is {size} characters long; at most {limit} allowed")
                    continue
                if cells_only:
                    yield line, cells
                else:
                    # Lengths are equal (checked above); strict= would cost a third of this line's time.
                    yield SourceRow(line, dict(zip(header, cells)))  # noqa: B905
            return
        except csv.Error as exc:
            line = end + 1
            end = reader.line_num
            reason = _take_flag(flagged, line, end) or f"cannot be read as CSV ({exc})"
            yield SourceRow(end, error=reason)


def _read_header(reader: Any, flagged: dict[int, str]) -> list[str] | None:
    """The first non-blank row, trimmed; a header that repeats a column, or cannot be read, refuses the file."""
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            line = reader.line_num
            if flagged and (bad := min(flagged)) <= line:
                raise InvalidInputError(f"line {bad}: before or in the header, a line {flagged[bad]}", code="BadHeader")
            header = [cell.strip().lstrip("\ufeff") for cell in cells]
            if len(set(header)) != len(header):
                duplicates = sorted({h for h in header if header.count(h) > 1})
                raise InvalidInputError(f"line {line}: the header repeats column(s) {', '.join(duplicates)}")
            return header
    except csv.Error as exc:
        line = reader.line_num
        reason = _take_flag(flagged, 1, line) or str(exc)
        raise InvalidInputError(f"line {line}: the header cannot be read: {reason}", code="BadHeader") from None
    return None


def _read_ndjson(lines: _Lines) -> Iterator[SourceRow]:
    flagged = lines.flagged
    for number, line in enumerate(lines, start=1):
        if flagged and number in flagged:
            yield SourceRow(number, error=flagged.pop(number))
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if line.strip():
                yield SourceRow(number, error=f"is not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield SourceRow(number, error=f"must be a JSON object, got {type(value).__name__}")
            continue
        yield SourceRow(number, value)


# --- a JSON document -------------------------------------------------------------------------------------------


class _JsonDocument:
    """The user objects of a JSON list (or of the one list an object wraps), streamed without the whole document.

    Items are decoded one at a time from a sliding buffer. An item that cannot be decoded (invalid, nested too
    deeply, longer than MAX_RECORD_CHARS) is stepped over by a bracket scanner that counts depth iteratively and
    keeps nothing, and comes back as an error row; the list goes on after it.
    """

    def __init__(self, chunks: Iterable[str], text: _Text) -> None:
        self._chunks = iter(chunks)
        self._text = text
        self._decoder = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0
        self.line = 1
        self.exhausted = False

    def records(self) -> Iterator[SourceRow]:
        try:
            opening = self._skip(_JSON_SPACE)
            if opening == "[":
                yield from self._list()
            elif opening == "{":
                yield from self._wrapper()
            else:
                raise self._not_a_list()
            if self._skip(_JSON_SPACE):
                raise InvalidInputError(
                    f"line {self.line}: unexpected text after the end of the JSON document", code="BadJson"
                )
        except UnicodeError as exc:
            raise self._text.encoding_error(exc, self.line) from exc

    def _not_a_list(self) -> InvalidInputError:
        return InvalidInputError(
            f"line {self.line}: a JSON file must hold a list of user objects, or an object whose one list is under "
            '"users", "UserInfo" or "data" (for one object per line, name the file .ndjson)',
            code="NotAList",
        )

    def _refill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            self.exhausted = True
            return False
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        return True

    def _skip(self, space: re.Pattern[str]) -> str:
        """Step over JSON whitespace (and commas, if ``space`` says so); the next character, '' at the end."""
        while True:
            found = space.match(self.buffer, self.pos)
            end = found.end() if found else self.pos
            self.line += _line_breaks(self.buffer, self.pos, end)
            self.pos = end
            if end < len(self.buffer):
                return self.buffer[end]
            if not self._refill():
                return ""

    def _not_closed(self) -> InvalidInputError:
        return InvalidInputError(f"line {self.line}: the JSON document is not closed (truncated file?)", code="BadJson")

    def _list(self) -> Iterator[SourceRow]:
        self.pos += 1
        index = 0
        while True:
            upcoming = self._skip(_JSON_SPACE_COMMAS)
            if upcoming == "]":
                self.pos += 1
                return
            if not upcoming:
                raise self._not_closed()
            index += 1
            line = self.line
            value, problem = self._value()
            if problem is not None:
                yield SourceRow(line, error=f"item {index} {problem}")
            elif isinstance(value, dict):
                yield SourceRow(line, value)
            else:
                yield SourceRow(line, error=f"item {index} must be a JSON object, got {type(value).__name__}")

    def _wrapper(self) -> Iterator[SourceRow]:
        self.pos += 1
        found = False
        while True:
            upcoming = self._skip(_JSON_SPACE_COMMAS)
            if upcoming == "}":
                self.pos += 1
                break
            if upcoming != '"':
                raise self._not_closed() if not upcoming else self._bad(f"expected a key, found {upcoming!r}")
            key, problem = self._value()
            if problem is not None or not isinstance(key, str):
                raise self._bad(f"a key {problem}")
            if self._skip(_JSON_SPACE) != ":":
                raise self._bad(f"expected ':' after the key {key[:40]!r}")
            self.pos += 1
            upcoming = self._skip(_JSON_SPACE)
            if upcoming == "[":
                if found or key.casefold() not in JSON_LIST_KEYS:
                    raise InvalidInputError(
                        f"line {self.line}: the JSON object holds a list under {key[:40]!r}; it must hold exactly "
                        'one list, under "users", "UserInfo" or "data"',
                        code="AmbiguousJson",
                    )
                found = True
                yield from self._list()
            elif not upcoming:
                raise self._not_closed()
            else:
                self._scan_past_value()
        if not found:
            raise self._not_a_list()

    def _bad(self, what: str) -> InvalidInputError:
        return InvalidInputError(f"line {self.line}: the JSON document is not valid: {what}", code="BadJson")

    def _value(self) -> tuple[Any, str | None]:
        """Decode the value at ``pos``: (value, None), or (None, why) with the value stepped over."""
        limit = MAX_RECORD_CHARS
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.pos)
            except RecursionError:
                self._scan_past_value()
                return None, "is nested too deeply"
            except ValueError as exc:  # JSONDecodeError, or an integer beyond int_max_str_digits
                if not self.exhausted and len(self.buffer) - self.pos <= limit:
                    self._refill()
                    continue
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number too long to read"
                length = self._scan_past_value()
                if length == 0:  # a stray closing bracket: the document's structure is lost
                    raise self._bad(f"unexpected {self.buffer[self.pos]!r}") from None
                if length > limit:
                    return None, f"is {length} characters long; at most {limit} allowed"
                return None, f"is not valid JSON: {reason}"
            if end == len(self.buffer) and not isinstance(value, (dict, list, str)) and not self.exhausted:
                self._refill()  # a number or literal at the buffer's end may go on in the next chunk
                continue
            self.line += _line_breaks(self.buffer, self.pos, end)
            self.pos = end
            return value, None

    def _scan_past_value(self) -> int:
        """Step over the value at ``pos`` without decoding or keeping it; its length in characters.

        Tracks string state and bracket depth only, so any size and any depth cost constant memory. A value that
        never ends is a truncated document.
        """
        depth = 0
        in_string = False
        escaped_at = -1
        length = 0
        while True:
            buffer = self.buffer
            for found in _JSON_STRUCTURE.finditer(buffer, self.pos):
                at = found.start()
                char = buffer[at]
                if in_string:
                    if at == escaped_at:
                        continue
                    if char == "\\":
                        escaped_at = at + 1
                    elif char == '"':
                        in_string = False
                        if depth == 0:
                            return length + self._advance(at + 1)
                    continue
                if char == '"':
                    in_string = True
                elif char in "[{":
                    depth += 1
                elif char in "]}":
                    if depth == 0:
                        return length + self._advance(at)
                    depth -= 1
                    if depth == 0:
                        return length + self._advance(at + 1)
                elif char == "," and depth == 0:
                    return length + self._advance(at)
            length += self._advance(len(buffer))
            escaped_at = 0 if escaped_at == len(buffer) else -1
            self.buffer, self.pos = "", 0
            if not self._refill():
                raise self._not_closed()

    def _advance(self, end: int) -> int:
        moved = end - self.pos
        self.line += _line_breaks(self.buffer, self.pos, end)
        self.pos = end
        return moved
