"""A text's physical lines, for the CSV and NDJSON readers.

Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (old Mac exports), never at U+2028 and the like, which are data.
A line longer than the record limit is never held whole: it is skipped as it streams past and flagged; for CSV
(``leading_limit_refuses``) one before any non-blank line refuses the file at once, as soon as it is that long: no
title or header is a million characters, and a file with no line break in that many (a 200 MB single line) is no
line-based export; skipping it would read the whole file and find no rows at all.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable, Iterator

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.decoding import DecodedText

LINE_BREAK = re.compile(r"\r\n?|\n")
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")  # str.splitlines splits there


def line_breaks(text: str, start: int = 0, end: int | None = None) -> int:
    stop = len(text) if end is None else end
    return text.count("\n", start, stop) + text.count("\r", start, stop) - text.count("\r\n", start, stop)


class Lines:
    """The text's physical lines, handed out a chunk at a time as C-level iterators (csv reads them at full speed).

    Counts lines as it goes (for error lines), and records in ``flagged`` (line -> why) each line that must not be
    trusted: one longer than ``max_record_chars``, which is replaced by an empty line and never held whole, and one
    holding a NUL byte.
    """

    def __init__(
        self, chunks: Iterable[str], text: DecodedText, *, max_record_chars: int, leading_limit_refuses: bool = False
    ) -> None:
        self.flagged: dict[int, str] = {}
        self.count = 0
        self._chunks = chunks
        self._text = text
        self._limit = max_record_chars
        self._leading = leading_limit_refuses  # no non-blank line yet, and a long one there refuses the file

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterable[str]]:
        limit = self._limit
        pending = ""
        skipped = -1  # characters of an over-long line skipped so far; -1 when not skipping
        try:
            for chunk in self._chunks:
                if skipped >= 0:
                    found = LINE_BREAK.search(chunk)
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
                        self._check_leading()
                        skipped, pending = len(text), ""
                    else:
                        pending = text
                    continue
                block = text[:cut] if cut < len(text) else text
                if pending and len(text) > limit:
                    found = LINE_BREAK.search(block)
                    if found is not None and found.start() > limit:
                        self._check_leading()
                        yield self._flag_long(found.start())
                        block = block[found.end() :]
                pending = text[cut:]
                if block:
                    if self._leading and not block.isspace():
                        self._leading = False
                    yield self._split(block)
                if len(pending) > limit:
                    self._check_leading()
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
            self.count += line_breaks(block) + (0 if block.endswith(("\n", "\r")) else 1)
            return io.StringIO(block, newline="")
        lines = block.splitlines(keepends=True)
        self.count += len(lines)
        return lines

    def _check_leading(self) -> None:
        if self._leading:
            raise InvalidInputError(
                f"line {self.count + 1}: before or in the header, a line is over {self._limit} characters long "
                "before its first line break: not a line-based export (CSV or TSV). A spreadsheet or a JSON document "
                "named .csv? Name it for what it is",
                code="BadHeader",
            )

    def _flag_long(self, length: int) -> tuple[str]:
        self.count += 1
        self.flagged[self.count] = f"is {length} characters long; at most {self._limit} allowed"
        return ("\n",)

    def _check_nul(self, block: str) -> None:
        """Flag each line holding a NUL (csv refuses them before Python 3.11, and they are never user data).

        One pass whatever the count: a binary file renamed .csv is all NULs.
        """
        line = self.count + 1
        start = 0
        at = block.find("\x00")
        while at >= 0:
            line += line_breaks(block, start, at)
            self.flagged.setdefault(line, "contains a NUL byte (binary data, or a damaged export)")
            found = LINE_BREAK.search(block, at)
            if found is None:
                return
            line += 1
            start = found.end()
            at = block.find("\x00", start)
