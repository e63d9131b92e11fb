"""The rows of a CSV/TSV export with a header row, read from its physical lines.

The delimiter is the most frequent of ``,`` ``;`` and tab outside quotes in the first non-blank line (ties: comma;
a ``.tsv`` name prefers tab), so Excel's tab-separated ``.txt``/``.tsv`` and European ``;`` files read as they are.
The header is found by ``table_shape``'s rule: with that delimiter, else with the others in turn, the first of the
first rows that names known columns (a title line above it, ``钉钉通讯录导出（导出时间：…）``, has no delimiter to go
by); failing that, the first non-blank row. The lines above the header are read once for the search, kept (at most
MAX_RECORD_CHARS of them), and never reach the rows; the real reader starts at the header, so line numbers and
the rules below are what they always were. Summary rows below it (``合计,4人``) are skipped with a notice.

A row that cannot be read (wrong cell count, a line ``Lines`` flagged, a quoted record over the limit once parsed,
a cell over csv's field limit) is an error row; a header that repeats a column or cannot be read, or a flagged line
before or in it, refuses the file.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.lines import Lines
from cvcsync.inputs.source_row import SourceRow
from cvcsync.inputs.table_shape import (
    HEADER_SEARCH_ROWS,
    SUMMARY_FIRST,
    Row,
    TableShape,
    header_cells,
    is_blank,
    summary_start,
)

DELIMITERS = (",", ";", "\t")
_QUOTED = re.compile(r'"[^"]*"?')

CsvCells = tuple[int, list[str]]  # (line, cells in the header's order) of a CSV row that was read


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


class _Replay:
    """The physical lines the header search reads, kept for the real reader; pulls more from ``source`` on demand
    while they total at most ``limit`` characters."""

    def __init__(self, first: str, source: Iterator[str], limit: int) -> None:
        self.lines = [first]
        self._size = len(first)
        self._source = source
        self._limit = limit

    def __iter__(self) -> Iterator[str]:
        index = 0
        while True:
            if index == len(self.lines):
                if self._size > self._limit:
                    return
                line = next(self._source, None)
                if line is None:
                    return
                self.lines.append(line)
                self._size += len(line)
            yield self.lines[index]
            index += 1


def _find_header(replay: _Replay, delimiter: str, shape: TableShape) -> tuple[int, list[Row]] | None:
    """With ``delimiter``: (physical lines before the header, the non-blank rows above it, by line from 1), if one
    of the first HEADER_SEARCH_ROWS non-blank rows names known columns."""
    reader = csv.reader(iter(replay), delimiter=delimiter)
    above: list[Row] = []
    start = 0
    try:
        for cells in reader:
            if not is_blank(cells):
                if shape.is_header(cells):
                    return start, above
                above.append((start + 1, cells))
                if len(above) >= HEADER_SEARCH_ROWS:
                    return None
            start = reader.line_num
    except csv.Error:
        return None
    return None


def read_csv(
    lines: Lines,
    *,
    prefer_tab: bool,
    max_record_chars: int,
    on_header: Callable[[list[str]], None] | None = None,
    shape: TableShape | None = None,
) -> Iterator[Any]:
    """The rows as ``SourceRow``; with ``on_header``, which is told the header, readable rows as ``(line, cells)``.

    ``shape`` finds the header and skips summary rows, leaving its notices."""
    shape = shape or TableShape(None, [])
    source = iter(lines)
    blanks = 0
    for first in source:
        if first.strip():
            break
        blanks += 1
    else:
        return
    sniffed = _sniff_delimiter(first, prefer_tab=prefer_tab)
    replay = _Replay(first, source, max_record_chars)
    delimiter, found = sniffed, None
    for candidate in (sniffed, *(d for d in DELIMITERS if d != sniffed)):
        found = _find_header(replay, candidate, shape)
        if found is not None:
            delimiter = candidate
            break
    skip = 0
    if found is not None:
        skip, above = found
        for line, cells in above:
            shape.skipped_above(blanks + line, cells)
    replayed = replay.lines[skip:] if skip else replay.lines
    padding = itertools.repeat("\n", blanks + skip)
    reader = csv.reader(itertools.chain(padding, replayed, source), delimiter=delimiter)
    flagged = lines.flagged
    header = _read_header(reader, flagged)
    if header is None:
        return
    cells_only = on_header is not None
    if on_header is not None:
        on_header(header)
    width = len(header)
    limit = max_record_chars
    end = reader.line_num
    first_chars, starts = SUMMARY_FIRST, summary_start
    labels = True  # the first filled row may label the header's columns (``TableShape.label_row``)
    while True:
        try:
            for cells in reader:
                line = end + 1
                end = reader.line_num
                if labels and any(cell.strip() for cell in cells):
                    labels = False
                    if shape.label_row(line, header, cells):
                        continue
                if len(cells) != width or not cells[0].strip() or (cells[0][:1] in first_chars and starts(cells[0])):
                    if flagged and (reason := _take_flag(flagged, line, end)):
                        yield SourceRow(line, error=reason)
                        continue
                    if not any(cell.strip() for cell in cells):
                        continue
                    if len(cells) <= width and shape.summary(line, cells, width):
                        continue
                    if len(cells) != width:
                        yield SourceRow(line, error=f"has {len(cells)} cells but the header has {width}")
                        continue
                elif flagged and (reason := _take_flag(flagged, line, end)):
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
            shape.finish()
            return
        except csv.Error as exc:
            line = end + 1
            end = reader.line_num
            reason = _take_flag(flagged, line, end) or f"cannot be read as CSV ({exc})"
            yield SourceRow(end, error=reason)


def _read_header(reader: Any, flagged: dict[int, str]) -> list[str] | None:
    """The first non-blank row (the search put the header first), trimmed; a header that repeats a column, or
    cannot be read, refuses the file."""
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            line = reader.line_num
            if flagged and (bad := min(flagged)) <= line:
                raise InvalidInputError(f"line {bad}: before or in the header, a line {flagged[bad]}", code="BadHeader")
            return header_cells(line, cells)
    except csv.Error as exc:
        line = reader.line_num
        reason = _take_flag(flagged, 1, line) or str(exc)
        raise InvalidInputError(f"line {line}: the header cannot be read: {reason}", code="BadHeader") from None
    return None
