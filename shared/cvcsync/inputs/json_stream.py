"""A JSON export's user objects, streamed from a list (or the one list an object wraps) without the whole document.

The document is a top-level list, or an object whose one list-valued key is ``users``, ``UserInfo`` or ``data``
(any case), e.g. ``{"UserInfo": [...]}``; any other list beside it is refused as ambiguous. An item that is not an
object, is not valid JSON, is nested too deeply or is too long is an error row with its line, and the list goes on.

Why hand-written and not ijson (measured for issue 11, ijson 3.6.0, yajl2_c backend, CPython 3.11): it installs
here (a 136 KB manylinux wheel), but ``import ijson`` costs about 20 ms (19.6-23.2 ms; it pulls in inspect, ast and
decimal) where ``json`` costs 7 ms, on every cold start; its events carry no position, so an item cannot be given
its line; and it stops at the first syntax error, with yajl's message and no line, where this reader turns the bad
item into an error row and reads on. The tests' line-numbered rows and messages could not be kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.decoding import DecodedText
from cvcsync.inputs.lines import line_breaks
from cvcsync.inputs.source_row import SourceRow

JSON_LIST_KEYS = ("users", "userinfo", "data")
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_JSON_SPACE_COMMAS = re.compile(r"[ \t\r\n,]*")
_JSON_STRUCTURE = re.compile(r'[\[\]{}",\\]')


class JsonDocument:
    """The user objects of a JSON list (or of the one list an object wraps), streamed without the whole document.

    Items are decoded one at a time from a sliding buffer. An item that cannot be decoded (invalid, nested too
    deeply, longer than ``max_record_chars``) is stepped over by a bracket scanner that counts depth iteratively and
    keeps nothing, and comes back as an error row; the list goes on after it.
    """

    def __init__(self, chunks: Iterable[str], text: DecodedText, *, max_record_chars: int) -> None:
        self._chunks = iter(chunks)
        self._text = text
        self._decoder = json.JSONDecoder()
        self._limit = max_record_chars
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
            self.line += line_breaks(self.buffer, self.pos, end)
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
        limit = self._limit
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
            self.line += line_breaks(self.buffer, self.pos, end)
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
        self.line += line_breaks(self.buffer, self.pos, end)
        self.pos = end
        return moved
