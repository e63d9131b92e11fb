"""Which format an export is in: CSV, JSON or NDJSON, from its name or, failing that, its first characters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.json_stream import JSON_LIST_KEYS
from cvcsync.inputs.lines import LINE_BREAK

FORMATS = ("csv", "json", "ndjson")
SNIFF_CHARS = 64 * 1024
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


def peek(text: Iterable[str]) -> tuple[str, list[str]]:
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


def choose_format(name: str | None, fmt: str | None, first_char: str, peeked: list[str]) -> str:
    """The format asked for, else the one the name or the first characters (``peek``'s answer) tell."""
    kind = fmt or detect_format(name, first_char)
    if fmt is None and kind == "ndjson" and not _named(name):
        kind = _json_or_ndjson("".join(peeked))
    if kind not in FORMATS:
        expected = ", ".join(FORMATS)
        raise InvalidInputError(f"unknown format {kind!r}; expected one of {expected}", code="UnknownFormat")
    return kind


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
    first_line = LINE_BREAK.split(head.lstrip(), 1)[0]
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
