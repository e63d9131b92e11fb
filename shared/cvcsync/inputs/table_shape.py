"""The shape of a table around its users: where the header is, and the rows above and below that are not users.

Real HR exports (DingTalk, WeCom, HR systems) put a title, notes and blank rows above the header
(``钉钉通讯录导出（导出时间：2026-11-30 10:00）``, ``说明：1. 带*为必填项…``) and a total below the users
(``合计,4人``, ``共 3 条记录``). The same rules serve CSV rows (``csv_rows``) and spreadsheet rows (``xlsx_rows``):

- The header is the first of the first HEADER_SEARCH_ROWS non-blank rows that names at least two known columns. What
  is known is the planner's to say (``column_recogniser``: what its ``ColumnMap`` would map); without it, the
  document's field names, every header name of every preset in ``presets/columns.json`` and the operation columns'
  names. When no row qualifies, the first non-blank row is the header, as it always was, so a file whose columns are
  all unknown still gets the column map's own advice. The rows above a found header are skipped with a notice each.
- Below the header, a summary row is skipped with a notice, never planned as a user: its first non-blank cell is a
  total marker (合计, 总计, 小计, 共计, Total, Grand Total, Sum, Count; a colon after it allowed) or a count phrase
  (``共 3 条记录``, ``共3人``, ``合计：4人``, ``Total: 3``), compared after NFKC and case folding, AND at most half of
  the header's cells are filled. A user called "Total" in a filled row is still a user.

- Right below the header, a row of the columns' labels is skipped with a notice (SuccessFactors' user data file
  has two header rows: ``USERID, FIRSTNAME, STATUS`` and then ``User ID, First Name, Status``; a file pasted twice
  repeats its header): at least two and at least half of its filled cells name their own column, compared without
  case, width, spaces or punctuation.

Notices are short previews, with mobile numbers and e-mail addresses masked (``138****8001``); after MAX_NOTICES
more skipped rows are only counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from cvcsync.errors import InvalidInputError
from cvcsync.logs import scrub_text

if TYPE_CHECKING:
    from cvcsync.inputs.columns import ColumnMap

Recogniser = Callable[[Sequence[str]], int]  # cells -> how many of them name a known column
Row = tuple[int, list[str]]  # (line, cells)

HEADER_SEARCH_ROWS = 20
MIN_HEADER_COLUMNS = 2
MAX_NOTICES = 20
MAX_COLUMN_NAME = 64  # longer cells are notes, not column names: not normalised, not counted
PREVIEW_CHARS = 40

_MARKERS = ("合计", "总计", "小计", "共计", "total", "grand total", "sum", "count")
_UNITS = r"条记录|条数据|条|人|名|位|个|行|records?|rows?|users?|people|persons?|members?|employees?|entries"
_COUNT_PHRASE = re.compile(rf"(?:共|{'|'.join(_MARKERS)})\s*:?\s*\d[\d,]*\s*(?:{_UNITS})?")
_MARKER = re.compile(rf"(?:{'|'.join(_MARKERS)})\s*:?")
_SPACE = " \t\u3000\xa0"
_STARTS = ("合计", "总计", "小计", "共", "total", "grand", "sum", "count")


def _forms(char: str) -> set[str]:
    """The characters NFKC and case folding turn into ``char``'s folded form: either case, ASCII or full-width."""
    if not (char.isascii() and char.isalpha()):
        return {char}
    cases = {char.lower(), char.upper()}
    return cases | {chr(ord(case) + 0xFEE0) for case in cases}


# Where a row may be a summary, before the real test: a first cell starting with one of SUMMARY_FIRST (one set
# lookup, which nearly every user row fails), then with a marker's first word (``summary_start``).
SUMMARY_FIRST = frozenset(set(_SPACE).union(*(_forms(word[0]) for word in _STARTS)))
_STARTS_PATTERN = "|".join("".join("[" + "".join(sorted(_forms(char))) + "]" for char in word) for word in _STARTS)
summary_start = re.compile(f"[{_SPACE}]*(?:{_STARTS_PATTERN})").match


def is_blank(cells: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _preset_keys(preset: str) -> frozenset[str]:
    """Header keys the column map knows without configuration: field names, operation and status columns, preset
    names."""
    # Imported here: what the presets know is first needed at a table's header (the planner imports them anyway).
    from cvcsync.inputs.column_presets import AUTO, NONE, load_presets
    from cvcsync.inputs.records import FIELDS

    presets = load_presets()
    keys = {name.casefold() for name in FIELDS} | set(presets.op_columns) | set(presets.status_columns)
    keys |= presets.yes_no_columns
    if preset == AUTO:
        for table in presets.aliases.values():
            keys.update(table)
    elif preset != NONE:
        keys.update(presets.aliases.get(preset, {}))
    return frozenset(keys)


def _counter(known: frozenset[str]) -> Recogniser:
    from cvcsync.inputs.column_presets import header_key

    def count(cells: Sequence[str]) -> int:
        return len({key for cell in cells if len(cell) <= MAX_COLUMN_NAME and (key := header_key(cell)) in known})

    return count


def default_recogniser() -> Recogniser:
    """Known columns when the caller names none: the document's fields and everything the presets know."""
    from cvcsync.inputs.column_presets import AUTO

    return _counter(_preset_keys(AUTO))


def column_recogniser(mapper: ColumnMap) -> Recogniser:
    """How many cells name a column ``mapper`` would map: configured aliases (not those it ignores), the document's
    field names, the operation columns, and the aliases of its preset (of every preset for ``auto``)."""
    known = set(_preset_keys(mapper.preset))
    for key, target in mapper.aliases.items():
        if target is None:
            known.discard(key)
        else:
            known.add(key)
    return _counter(frozenset(known))


def preview(cells: Sequence[str]) -> str:
    """A row's non-blank cells on one line, short, quoted, personal data masked: ``'钉钉通讯录导出（导出时间：…'``."""
    text = scrub_text(" ".join(", ".join(cell.strip() for cell in cells if cell.strip()).split()))
    if len(text) > PREVIEW_CHARS:
        return f"'{text[:PREVIEW_CHARS]}…'"
    return f"'{text}'"


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _loose(text: str) -> str:
    """A column name without case, width, spaces or punctuation: ``USER_ID``, ``User ID`` and ``userid`` agree."""
    return "".join(char for char in unicodedata.normalize("NFKC", text).casefold() if char.isalnum())


def is_label_row(header: Sequence[str], cells: Sequence[str]) -> bool:
    """Whether ``cells`` label the header's columns (the module's rule): a user's values name no columns."""
    pairs = [
        (_loose(name), _loose(cell)) for name, cell in zip(header, cells, strict=False) if cell.strip()
    ]  # a short row too
    same = sum(1 for name, cell in pairs if name and name == cell)
    return same >= 2 and 2 * same >= len(pairs)


def header_cells(line: int, cells: Sequence[str]) -> list[str]:
    """The header's column names, trimmed; a header that repeats a column refuses the file."""
    header = [cell.strip().lstrip("\ufeff") for cell in cells]
    if len(set(header)) != len(header):
        duplicates = sorted({h for h in header if header.count(h) > 1})
        named = ", ".join(duplicate or "(a blank name)" for duplicate in duplicates)
        raise InvalidInputError(f"line {line}: the header repeats column(s) {named}")
    return header


class TableShape:
    """One table's header finding and row skipping, with the notices they leave (appended to ``notices``)."""

    def __init__(self, recognise: Recogniser | None, notices: list[str]) -> None:
        self.notices = notices
        self._recognise = recognise  # None: ``default_recogniser``, made at the first header a table needs
        self._skipped = 0

    def is_header(self, cells: Sequence[str]) -> bool:
        if self._recognise is None:
            self._recognise = default_recogniser()
        return self._recognise(cells) >= MIN_HEADER_COLUMNS

    def split(self, rows: Iterator[Row]) -> tuple[int, list[str], Iterator[Row]] | None:
        """(line, cells) of the header and the rows after it; the rows above it are noticed. None: no rows."""
        seen: list[Row] = []
        for line, cells in rows:
            if is_blank(cells):
                continue
            if self.is_header(cells):
                for above in seen:
                    self.skipped_above(*above)
                return line, cells, self._without_labels(cells, rows)
            seen.append((line, cells))
            if len(seen) >= HEADER_SEARCH_ROWS:
                break
        if not seen:
            return None
        line, cells = seen[0]
        return line, cells, _chain(seen[1:], rows)

    def _without_labels(self, header: Sequence[str], rows: Iterator[Row]) -> Iterator[Row]:
        """``rows``, but for a row of the columns' labels right below the header (see the module's rule)."""
        for line, cells in rows:
            if is_blank(cells):
                yield line, cells
                continue
            if not self.label_row(line, header, cells):
                yield line, cells
            break
        yield from rows

    def label_row(self, line: int, header: Sequence[str], cells: Sequence[str]) -> bool:
        """Is this first row below the header a row of labels (then it is noticed)? See the module's rule."""
        if not is_label_row(header, cells):
            return False
        self._notice(f"line {line}: skipped a second header row (the columns' labels): {preview(cells)}")
        return True

    def skipped_above(self, line: int, cells: Sequence[str]) -> None:
        self._notice(f"line {line}: skipped above the header: {preview(cells)}")

    def summary(self, line: int, cells: Sequence[str], width: int) -> bool:
        """Is this a summary row (then it is noticed)? See the module's rule."""
        filled = [cell for cell in cells if cell.strip()]
        if not filled or 2 * len(filled) > width:
            return False
        first = _normal(filled[0])
        if not (_MARKER.fullmatch(first) or _COUNT_PHRASE.fullmatch(first)):
            return False
        self._notice(f"line {line}: skipped a summary row, not a user: {preview(cells)}")
        return True

    def finish(self) -> None:
        """Count the skipped rows that had no notice of their own."""
        if self._skipped > MAX_NOTICES:
            self.notices.append(f"{self._skipped - MAX_NOTICES} more rows skipped above the header or as summaries")
        self._skipped = 0

    def _notice(self, notice: str) -> None:
        self._skipped += 1
        if self._skipped <= MAX_NOTICES:
            self.notices.append(notice)


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest
