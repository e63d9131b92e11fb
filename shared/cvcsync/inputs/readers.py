"""Streaming readers for user exports: an .xlsx/.xlsm workbook, CSV/TSV (a header row), a JSON list, or NDJSON;
optionally gzip-compressed.

Memory stays flat whatever the file's size: bytes are decoded chunk by chunk and each record is yielded as soon as
it is complete (a workbook's sheet is streamed by openpyxl, see ``xlsx_rows``). A record that cannot be read is
yielded as a ``SourceRow`` with ``error`` set and its line, so one bad line never stops the rest:

- a CSV or sheet row with the wrong cell count, a NUL byte, or a cell over csv's field limit (131072 characters);
- an NDJSON line that is not a JSON object (or is nested deeper than orjson's 1024 levels);
- a JSON list item that is not an object, is not valid JSON, or is nested too deeply;
- any record longer than ``MAX_RECORD_CHARS``: a physical line that long is never held whole (it is skipped as it
  streams past), a JSON list item is skipped by a bracket scanner that keeps nothing, and a quoted CSV record
  spread over several lines is measured once parsed.

Only a file that cannot be read at all raises ``InvalidInputError``: what its first bytes say is no export (an
Excel 97-2003 workbook, a PDF, a zip that holds no workbook, binary data), a damaged workbook or an unknown sheet,
unknown encoding or format, damaged gzip, text that is not in the file's encoding (named with the approximate line),
a CSV whose first line runs on for MAX_RECORD_CHARS without a line break, a repeated CSV header, a JSON document
that is not a list (or an object holding one), a JSON document that is not closed or has text after its end.

Tables (CSV and sheets) have their header found and their title, notes and summary rows skipped by ``table_shape``;
what it skipped is in ``RecordStream.notices``, one line each, for the run's report.

The steps, one module each: ``decoding`` (gzip, the first bytes, the encoding: declared, a byte-order mark's, or
UTF-8/GB18030 told apart), ``formats`` (which format: first by the bytes, then by name or first characters),
``lines`` (physical lines, for CSV and NDJSON), then ``csv_rows``, ``xlsx_rows``, ``ndjson_rows`` or
``json_stream``. An empty or blank file has zero records, whatever its format.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterator
from typing import IO, Any

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.csv_rows import CsvCells, read_csv
from cvcsync.inputs.decoding import Content, DecodedText, open_content
from cvcsync.inputs.formats import XLSX, check_format, choose_format, peek, sniff_bytes
from cvcsync.inputs.json_stream import JsonDocument
from cvcsync.inputs.lines import Lines
from cvcsync.inputs.ndjson_rows import read_ndjson
from cvcsync.inputs.source_row import SourceRow
from cvcsync.inputs.table_shape import Recogniser, TableShape

__all__ = ["MAX_RECORD_CHARS", "CsvCells", "RecordStream", "SourceRow", "read_records"]

CHUNK_BYTES = 64 * 1024
MAX_RECORD_CHARS = 1024 * 1024


def read_records(
    stream: IO[bytes],
    *,
    name: str | None = None,
    fmt: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> RecordStream:
    """Each record of a user export, in order, with its line number (read as they are asked for).

    ``sheet``: a workbook's sheet to read (default: ``CVCSYNC_SHEET``, else the first visible sheet)."""
    return RecordStream(stream, name=name, fmt=fmt, encoding=encoding, sheet=sheet)


class RecordStream(Iterator[SourceRow]):
    """What ``read_records`` returns: the records as ``SourceRow``s.

    ``cells()`` hands the same records to a caller that maps columns itself (the planner): each CSV or sheet row as
    ``(line, cells)``, with ``header`` set before the first one, which saves building a dict per row; a row that
    cannot be read, and every JSON or NDJSON record, still comes as a ``SourceRow``. A stream is read once, either
    way.

    ``recogniser``, set before reading, tells how many cells of a row name a column the caller would map (the
    planner's column map: ``table_shape.column_recogniser``); it finds a table's header below title rows. ``notices``
    fills as rows are skipped (above the header, summaries): one line each, naming the line.
    """

    def __init__(
        self, stream: IO[bytes], *, name: str | None, fmt: str | None, encoding: str | None, sheet: str | None = None
    ) -> None:
        self.header: tuple[str, ...] | None = None
        self.recogniser: Recogniser | None = None
        self.notices: list[str] = []
        self._stream = stream
        self._name = name
        self._fmt = fmt
        self._encoding = encoding
        self._sheet = sheet
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
        if self._fmt is not None:
            check_format(self._fmt)
        shape = TableShape(self.recogniser, self.notices)
        on_header = self._set_header if cells else None
        try:
            content = open_content(self._stream)
            if sniff_bytes(content.head, encoding=self._encoding) == "zip":
                from cvcsync.inputs.xlsx_rows import read_sheet  # openpyxl: only a workbook pays for its import

                yield from read_sheet(
                    content,
                    name=self._name,
                    sheet=self._sheet,
                    shape=shape,
                    max_record_chars=MAX_RECORD_CHARS,
                    on_header=on_header,
                )
                return
            if self._fmt == XLSX and content.head.strip():
                raise InvalidInputError(
                    "the file was given as xlsx but is not a workbook (an .xlsx starts like a zip archive): name its "
                    "format csv, json or ndjson, or leave the format to be told from the file",
                    code="NotAWorkbook",
                )
            yield from self._text_records(content, shape, on_header)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidInputError(f"the gzip data is damaged or truncated: {exc}", code="BadGzip") from exc

    def _text_records(self, content: Content, shape: TableShape, on_header: Any) -> Iterator[Any]:
        name = self._name
        limit = MAX_RECORD_CHARS
        text = DecodedText(content, self._encoding, chunk_size=max(16, min(CHUNK_BYTES, limit)))
        try:
            first, peeked = peek(text)
            if not first and text.exhausted:
                return
            kind = choose_format(name, None if self._fmt == XLSX else self._fmt, first, peeked)
            chunks = itertools.chain(peeked, text)
            if kind == "csv":
                prefer_tab = bool(name) and str(name).lower().removesuffix(".gz").endswith(".tsv")
                lines = Lines(chunks, text, max_record_chars=limit, leading_limit_refuses=True)
                yield from read_csv(
                    lines, prefer_tab=prefer_tab, max_record_chars=limit, on_header=on_header, shape=shape
                )
            elif kind == "ndjson":
                yield from read_ndjson(Lines(chunks, text, max_record_chars=limit))
            else:
                yield from JsonDocument(chunks, text, max_record_chars=limit).records()
        except UnicodeError as exc:  # UnicodeDecodeError, or UTF-16's missing-BOM error
            raise text.encoding_error(exc, 1) from exc
