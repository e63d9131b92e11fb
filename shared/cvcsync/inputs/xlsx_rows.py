"""The rows of an .xlsx/.xlsm workbook's sheet, streamed, each cell as the text a person sees in it.

Why openpyxl (``read_only=True``) and not python-calamine, measured on one 100,000-row, 8-column sheet (text ids with
leading zeros, Chinese names and departments, mobiles as numbers, e-mails, dates; 4.6 MB), CPython 3.11, x86_64,
openpyxl 3.1.5 and python-calamine 0.9.1, each in a fresh process, three runs:

=====================  =====================  =========================================
                       openpyxl 3.1.5         python-calamine 0.9.1
=====================  =====================  =========================================
all rows iterated      11.6-11.8 s            0.61-0.64 s
peak RSS               34 MB                  85 MB
  at 500,000 rows      68 MB (74.6 s)         383 MB (3.6 s)
import                 80-100 ms              1 ms
wheel                  251 KB, pure Python    959 KB, compiled: cp311/cp312 manylinux
                       (py2.py3-none-any):    x86_64 and aarch64, none for cp310; 0.8.3
                       CPython 3.10-3.12,     is the last with cp310 (and has cp312), so
                       x86_64 and aarch64     FC's python3.10 and Lambda's 3.12 would
                                              share a pin one release behind
=====================  =====================  =========================================

calamine is twenty times faster, but it builds the whole sheet in memory before the first row: about 0.75 KB a row,
so Excel's largest sheet (1,048,576 rows) would take some 800 MB of the upload function's 1024 MB, beside the
SQLite plan workspace. openpyxl streams the sheet's XML, holding only the shared strings table (that is what grows:
34 to 68 MB), so memory stays flat as every other reader here promises; its speed (some 8,600 rows a second, two
minutes for the largest sheet) fits the upload function's 900 s, and its 80-100 ms import is paid only on this path
(``readers`` imports this module only for a workbook). Pure Python also means one ``constraints.txt`` pin serves both
platforms and both architectures with nothing compiled to ship.

How cells become text (``cell_text``), so a spreadsheet says what its CSV export would:

- text as it is (``00123`` keeps its zeros; no stripping); an empty cell is ``""``;
- integers, and floats with no fraction below 1e16, as plain digits (``13800138001``, never ``13800138001.0``);
  other floats as Python's shortest repr (``0.5``), except those Python would print with an exponent, which are
  written as Excel writes them (``1.23456789012346E+17``, 15 significant digits), so the value clean-up can tell a
  long id that Excel already mangled;
- dates as ISO 8601: ``2026-03-01`` (a date cell is a datetime at midnight), ``2026-03-01T09:30:00``; times
  ``09:30:00``; durations ``[h]:mm:ss``; booleans ``TRUE``/``FALSE``; error cells as their code (``#N/A``);
- a formula cell as the value Excel last computed (none, from a writer that computes nothing: ``""``).

A number cell formatted as a zero-padded number (format ``000000`` on 123, how employee numbers are often kept)
reads ``000123``, as Excel shows it and its CSV export writes it: the sheet is read with cells, not bare values, for
their number formats (resolved once per style; measured on 50,000 rows of five cells: 3.5 to 4.0 s either way,
no difference beyond the noise).

Each row's line is its row number in the sheet, so "line 7" is Excel's row 7. The sheet is the first visible one,
or the one ``CVCSYNC_SHEET`` names (exactly, else ignoring case and width); an unknown name lists the sheets there
are. Rows end at their last non-empty cell: a row shorter than the header is padded with ``""``; one with a value
beyond the header's last column is an error row, as in CSV. A damaged workbook is refused, not a traceback: every
exception openpyxl raises while reading is turned into one ``InvalidInputError`` at this module's edge.

A zip archive needs its central directory, at its end: a stream that cannot seek (an S3 or OSS body) is first copied
to a temporary file; a seekable one (a local file, bytes in memory) is read in place.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import IO, Any

from cvcsync.config import ENV_SHEET
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.decoding import Content
from cvcsync.inputs.formats import zip_format
from cvcsync.inputs.source_row import SourceRow
from cvcsync.inputs.table_shape import TableShape, header_cells, is_blank

SPOOL_CHUNK = 1024 * 1024
PLAIN_FLOAT_BELOW = 1e16  # repr() switches to an exponent from here on
EXCEL_DIGITS = 15
_MIDNIGHT = datetime.time()


def _excel_exponent(value: float) -> str:
    """``1.2345678901234568e+17`` as Excel writes it: ``1.23456789012346E+17``."""
    mantissa, exponent = f"{value:.{EXCEL_DIGITS - 1}E}".split("E")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}E{sign}{abs(int(exponent)):02d}"


def cell_text(value: Any) -> str:
    """A cell's value as text (see the module's rules)."""
    if value is None:
        return ""
    kind = value.__class__
    if kind is str:
        return str(value)
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):
            return repr(value)
        if value.is_integer() and abs(value) < PLAIN_FLOAT_BELOW:
            return str(int(value))
        shortest = repr(value)
        return _excel_exponent(value) if "e" in shortest else shortest
    if kind is datetime.datetime:
        if value.time() == _MIDNIGHT and value.tzinfo is None:
            return str(value.date().isoformat())
        return str(value.isoformat(timespec="milliseconds" if value.microsecond else "seconds"))
    if kind is datetime.date:
        return str(value.isoformat())
    if kind is datetime.time:
        return str(value.isoformat(timespec="milliseconds" if value.microsecond else "seconds"))
    if kind is datetime.timedelta:
        seconds = round(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return str(value)


def _cell(cell: Any, widths: dict[Any, int]) -> str:
    """A read-only cell as text: ``cell_text`` of its value, with the zeros of a zero-padded number format."""
    value: Any = getattr(cell, "value", None)  # an EmptyCell has a value of None too
    kind = value.__class__
    if kind is str:
        return str(value)
    if (kind is int or kind is float) and value == value // 1 and value >= 0:
        # openpyxl's read-only cell keeps its style's index as ``_style_id`` (3.1): the cache key; without it, the
        # format is looked up per cell.
        style = getattr(cell, "_style_id", None)
        width = widths.get(style) if style is not None else None
        if width is None:
            width = _zero_padding(str(getattr(cell, "number_format", "") or ""))
            if style is not None:
                widths[style] = width
        if width:
            return cell_text(value).zfill(width)
    return cell_text(value)


def _zero_padding(number_format: str) -> int:
    """The width a format like ``000000`` pads integers to (0 for any other format: General, ``0``, ``0.00``...)."""
    return len(number_format) if len(number_format) > 1 and set(number_format) == {"0"} else 0


def _seekable(content: Content, stack: ExitStack) -> IO[bytes]:
    """The workbook's bytes, seekable: the original stream rewound, or a temporary copy of a stream that cannot."""
    if content.start is not None:
        content.original.seek(content.start)
        return content.original
    spooled = stack.enter_context(tempfile.TemporaryFile(prefix="cvcsync-sheet-"))  # noqa: SIM115 - closed by the stack
    spooled.write(content.head)
    shutil.copyfileobj(content.rest, spooled, SPOOL_CHUNK)
    spooled.seek(0)
    return spooled


def _damaged(exc: Exception, *, named: str | None) -> InvalidInputError:
    what = f"the workbook {named!r}" if named else "the workbook"
    return InvalidInputError(
        f"{what} is damaged or not a valid .xlsx ({type(exc).__name__}: {str(exc)[:120]}): open it in Excel or WPS "
        "and save it again as .xlsx, or as CSV (UTF-8)",
        code="BadWorkbook",
    )


def _check_zip(source: IO[bytes], name: str | None) -> None:
    """Refuse a zip that is no workbook (or that is damaged) before openpyxl meets it."""
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            zip_format(names, archive.read, name=name)
    except InvalidInputError:
        raise
    except Exception as exc:  # zipfile's edge: whatever a damaged archive makes it raise (struct, zlib, OSError...)
        raise InvalidInputError(
            f"the file starts like a zip archive (an .xlsx?) but cannot be opened as one ({exc}): it is damaged or "
            "truncated; upload it again, or save it again as .xlsx or CSV (UTF-8)",
            code="BadWorkbook",
        ) from exc


def _same_name(a: str, b: str) -> bool:
    return unicodedata.normalize("NFKC", a).strip().casefold() == unicodedata.normalize("NFKC", b).strip().casefold()


def _choose_sheet(workbook: Any, wanted: str | None) -> Any:
    sheets = list(workbook.worksheets)
    if not sheets:
        raise InvalidInputError("the workbook has no worksheet (only charts?)", code="NoSheet")
    if wanted:
        for match in (lambda title: title == wanted, lambda title: _same_name(title, wanted)):
            for sheet in sheets:
                if match(sheet.title):
                    return sheet
        there = ", ".join(repr(sheet.title) for sheet in sheets)
        raise InvalidInputError(
            f"{ENV_SHEET} names the sheet {wanted[:60]!r}, which the workbook does not have; its sheets: {there}",
            code="UnknownSheet",
        )
    return next((sheet for sheet in sheets if sheet.sheet_state == "visible"), sheets[0])


def sheet_rows(content: Content, *, name: str | None, sheet: str | None) -> Iterator[tuple[int, list[str]]]:
    """Each row of the sheet as (row number, cells as text, trailing empty cells dropped)."""
    import openpyxl  # here, not at the top: a cold start reading CSV never pays for it

    wanted = sheet if sheet is not None else os.environ.get(ENV_SHEET, "").strip() or None
    with ExitStack() as stack:
        source = _seekable(content, stack)
        _check_zip(source, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no default style", unsupported extensions: nothing a run can use
                workbook = openpyxl.load_workbook(source, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:  # openpyxl's edge: any failure to load is a damaged workbook
            raise _damaged(exc, named=None) from exc
        stack.callback(workbook.close)
        chosen = _choose_sheet(workbook, wanted)
        chosen.reset_dimensions()  # the stored size is often wrong (some writers say A1): read what is there
        rows = chosen.iter_rows(min_row=1, min_col=1)
        number = 0
        widths: dict[Any, int] = {}  # style id -> the zero padding its number format asks for (0: none)
        while True:
            try:
                found = next(rows)
            except StopIteration:
                return
            except Exception as exc:  # openpyxl's edge, as above
                raise _damaged(exc, named=chosen.title) from exc
            number += 1
            cells = [_cell(cell, widths) for cell in found]
            while cells and not cells[-1]:
                cells.pop()
            yield number, cells


def read_sheet(
    content: Content,
    *,
    name: str | None,
    sheet: str | None,
    shape: TableShape,
    max_record_chars: int,
    on_header: Callable[[list[str]], None] | None = None,
) -> Iterator[Any]:
    """The sheet's records as ``SourceRow``s; with ``on_header`` (told the header), readable rows as
    ``(line, cells)`` with exactly the header's cell count, as ``csv_rows`` hands them on."""
    found = shape.split(sheet_rows(content, name=name, sheet=sheet))
    if found is None:
        return
    line, cells, rows = found
    header = header_cells(line, cells)
    if on_header is not None:
        on_header(header)
    width = len(header)
    limit = max_record_chars
    for line, cells in rows:
        count = len(cells)
        if count != width:
            if count > width:
                yield SourceRow(line, error=f"has {count} cells but the header has {width}")
                continue
            if not count:
                continue
            cells.extend([""] * (width - count))
        if is_blank(cells) or shape.summary(line, cells, width):
            continue
        if (size := sum(map(len, cells))) > limit:
            yield SourceRow(line, error=f"is {size} characters long; at most {limit} allowed")
            continue
        if on_header is not None:
            yield line, cells
        else:
            yield SourceRow(line, dict(zip(header, cells, strict=True)))
    shape.finish()
