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

The steps, one module each: ``decoding`` (gzip, the encoding: declared, a byte-order mark's, or UTF-8/GB18030 told
apart), ``formats`` (which format), ``lines`` (physical lines, for CSV and NDJSON), then ``csv_rows``,
``ndjson_rows`` or ``json_stream``. An empty or blank file has zero records, whatever its format.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterator
from typing import IO, Any

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.csv_rows import CsvCells, read_csv
from cvcsync.inputs.decoding import DecodedText
from cvcsync.inputs.formats import choose_format, peek
from cvcsync.inputs.json_stream import JsonDocument
from cvcsync.inputs.lines import Lines
from cvcsync.inputs.ndjson_rows import read_ndjson
from cvcsync.inputs.source_row import SourceRow

__all__ = ["MAX_RECORD_CHARS", "CsvCells", "RecordStream", "SourceRow", "read_records"]

CHUNK_BYTES = 64 * 1024
MAX_RECORD_CHARS = 1024 * 1024


def read_records(
    stream: IO[bytes], *, name: str | None = None, fmt: str | None = None, encoding: str | None = None
) -> RecordStream:
    """Each record of a user export, in order, with its line number (read as they are asked for)."""
    return RecordStream(stream, name=name, fmt=fmt, encoding=encoding)


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
        name = self._name
        limit = MAX_RECORD_CHARS
        text = DecodedText(self._stream, self._encoding, chunk_size=max(16, min(CHUNK_BYTES, limit)))
        try:
            first, peeked = peek(text)
            if not first and text.exhausted:
                return
            kind = choose_format(name, self._fmt, first, peeked)
            chunks = itertools.chain(peeked, text)
            if kind == "csv":
                prefer_tab = bool(name) and str(name).lower().removesuffix(".gz").endswith(".tsv")
                on_header = self._set_header if cells else None
                lines = Lines(chunks, text, max_record_chars=limit)
                yield from read_csv(lines, prefer_tab=prefer_tab, max_record_chars=limit, on_header=on_header)
            elif kind == "ndjson":
                yield from read_ndjson(Lines(chunks, text, max_record_chars=limit))
            else:
                yield from JsonDocument(chunks, text, max_record_chars=limit).records()
        except UnicodeError as exc:  # UnicodeDecodeError, or UTF-16's missing-BOM error
            raise text.encoding_error(exc, 1) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidInputError(f"the gzip data is damaged or truncated: {exc}", code="BadGzip") from exc
