"""A file's bytes to text, chunk by chunk: gzip undone, then decoded in the file's encoding.

- A declared encoding wins (a UTF-8 byte-order mark in front of declared GBK text, as some tools write, is
  dropped); else a byte-order mark (UTF-8, UTF-16); else UTF-8 or GB18030 (a superset of GBK, what Chinese
  spreadsheet tools write), decided by the first chunk that is not pure ASCII, so a GBK file whose first 64 KiB
  happen to be ASCII is still read right. A file with a UTF-8 byte-order mark whose text is not UTF-8 is refused,
  not guessed at: the mark is a claim, and guessing could write garbled names into CVC.
- gzip is recognised by its magic bytes, whatever the file's name.
- The first SNIFF_BYTES of the content (gzip undone) are read before anything is decoded (``open_content``), so
  ``formats.sniff_bytes`` can tell a workbook, a PDF or binary data from text by its bytes; they are replayed to the
  decoder. A file that turns out not to decode and whose first bytes are full of control bytes is called binary data,
  not text in a wrong encoding: advice about encodings would send its owner the wrong way.
"""

from __future__ import annotations

import codecs
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from cvcsync.config import ENV_ENCODING
from cvcsync.errors import InvalidInputError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UNICODE_FAMILIES = ("utf-16", "utf-32")
_AUTO_UTF8_EVIDENCE = 3  # valid non-ASCII UTF-8 characters before a bad byte that make a file "UTF-8, damaged"
SNIFF_BYTES = 4096
GZIP_MAGIC = b"\x1f\x8b"
# C0 control bytes that text never holds (tab, line breaks, vertical tab, form feed, Ctrl-Z, escape aside), and DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0E, 0x0F, *range(0x10, 0x1A), *range(0x1C, 0x20), 0x7F])
_UNDECODABLE_BINARY_SHARE = 0.03  # control bytes among the first bytes of a file that does not decode: binary


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


def control_bytes(data: bytes) -> int:
    """How many of ``data``'s bytes are control bytes that no text export holds (NUL included)."""
    return len(data) - len(data.translate(None, _CONTROL_BYTES))


def is_unicode_family(encoding: str | None) -> bool:
    """UTF-16/UTF-32 text is full of NUL and low bytes: byte statistics say nothing about it."""
    if not encoding:
        return False
    try:
        return codecs.lookup(encoding).name.startswith(_UNICODE_FAMILIES)
    except LookupError:
        return False


def binary_data(why: str) -> InvalidInputError:
    """The refusal of a file that is no text at all: advice about encodings would send its owner the wrong way."""
    return InvalidInputError(
        f"binary data, not a text export ({why}): is it the right file? Export the directory as .xlsx or CSV (UTF-8)",
        code="BinaryData",
    )


@dataclass
class Content:
    """A file's content from its start: the first SNIFF_BYTES (``head``), then ``rest``; gzip already undone.

    ``start``: where the original stream began, when it can seek back there and was not gzip-compressed (a reader
    that needs random access, the workbook's, reads it in place); None otherwise.
    """

    head: bytes
    rest: IO[bytes]
    original: IO[bytes]
    start: int | None
    gzipped: bool


def open_content(stream: IO[bytes]) -> Content:
    """Undo gzip (recognised by its magic bytes) and read the first SNIFF_BYTES of what is inside."""
    start = _position(stream)
    first = _read_up_to(stream, len(GZIP_MAGIC))
    if first == GZIP_MAGIC:
        raw: Any = gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(first, stream)))
        return Content(_read_up_to(raw, SNIFF_BYTES), raw, stream, None, gzipped=True)
    head = first + _read_up_to(stream, SNIFF_BYTES - len(first))
    return Content(head, stream, stream, start, gzipped=False)


def _position(stream: IO[bytes]) -> int | None:
    """Where a seekable stream is, else None (an S3 or OSS body cannot seek; some say so by raising)."""
    try:
        if not stream.seekable():
            return None
        return stream.tell()
    except (AttributeError, OSError, ValueError):
        return None


class Decoder:
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


class DecodedText:
    """One file's text as chunks: decoded, and never ending in a ``\\r`` that a ``\\n`` may follow.

    Keeping a chunk-final ``\\r`` for the next chunk means a ``\\r\\n`` is never split, so every consumer can cut
    lines at chunk boundaries without looking ahead. ``chunk_size`` bytes are decoded at a time, the sniffed head
    included.
    """

    def __init__(self, content: Content, encoding: str | None, *, chunk_size: int) -> None:
        self.decoder = Decoder(encoding)
        self.exhausted = False
        self._content = content
        self._chunk_size = chunk_size
        self._chunks = self._generate()

    def __iter__(self) -> Iterator[str]:
        return self._chunks

    def _raw_chunks(self) -> Iterator[bytes]:
        size = self._chunk_size
        rest = self._content.rest
        data = self._content.head
        if len(data) < size:
            data += _read_up_to(rest, size - len(data))
        while len(data) > size:
            yield data[:size]
            data = data[size:]
        while data:
            yield data
            data = rest.read(size)

    def _generate(self) -> Iterator[str]:
        carry = ""
        for data in self._raw_chunks():
            text = self.decoder.decode(data)
            if carry:
                text = carry + text
                carry = ""
            if text.endswith("\r"):
                carry = "\r"
                text = text[:-1]
            if text:
                yield text
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
        decoder = self.decoder
        head = self._content.head
        if (
            head
            and not decoder.encoding.startswith(_UNICODE_FAMILIES)
            and control_bytes(head) >= _UNDECODABLE_BINARY_SHARE * len(head)
        ):
            return binary_data(f"it does not decode: {reason}; its first bytes are full of control bytes")
        where = f"near line {line}: "
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
