"""The rows of a CSV/TSV export with a header row, read from its physical lines.

The delimiter is the most frequent of ``,`` ``;`` and tab outside quotes in the header line (ties: comma; a ``.tsv``
name prefers tab), so Excel's tab-separated ``.txt``/``.tsv`` and European ``;`` files read as they are. A row that
cannot be read (wrong cell count, a line ``Lines`` flagged, a quoted record over the limit once parsed, a cell over
csv's field limit) is an error row; a header that repeats a column or cannot be read refuses the file.
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


def read_csv(
    lines: Lines,
    *,
    prefer_tab: bool,
    max_record_chars: int,
    on_header: Callable[[list[str]], None] | None = None,
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
    limit = max_record_chars
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
