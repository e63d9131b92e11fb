"""Hostile input for the fuzz tests (``tests/fuzz``): strings, JSON-ish values, raw bytes and sample mutations.

One place for what an attacker or a broken producer sends, so every parser is fed the same nasty things: control
characters, lone surrogates, path traversal, spreadsheet formulas, huge and deeply nested values, numbers beyond
64 bits, invalid UTF-8.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

# Strings that have broken parsers somewhere: traversal, control characters, encodings, formulas, JSON look-alikes.
HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\r\n",
    "a\rb\nc",
    "\t",
    "\x1b[31m",
    "\x7f",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\ud800",
    "\udcff",
    "../../etc/passwd",
    "..",
    "a/../../b",
    "/etc/passwd",
    "//x",
    "%2e%2e%2f",
    "%00",
    "%ZZ",
    "=cmd|' /C calc'!A0",
    "+1+1",
    "@SUM(1)",
    "-2+3",
    "NaN",
    "Infinity",
    "1e999",
    "-0",
    "null",
    "[",
    '{"a":',
    "张三",
    "𝟘𝟙",
    "ﬀ",
    "x" * 5000,
]

_ANY_CHAR = st.characters()  # surrogates included: a Lambda event decoded by Python's json may hold them
hostile_text = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(_ANY_CHAR, max_size=40), st.text(max_size=40))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**300) | st.integers(min_value=-(2**300), max_value=-(2**64)),
    st.floats(),  # NaN and infinities included
    hostile_text,
)


def json_ish(keys: list[str] | None = None, values: list[Any] | None = None, max_leaves: int = 25) -> Any:
    """Values as a decoded event or body may be: scalars, lists, objects whose keys are often ``keys``, and
    JSON text of any of those (an envelope's string body)."""
    key = st.one_of(st.sampled_from(keys), hostile_text) if keys else hostile_text
    leaf = st.one_of(scalars, st.sampled_from(values)) if values else scalars

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(key, children, max_size=5),
            children.map(_dumps),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (ValueError, TypeError):  # lone surrogates are fine for json.dumps; this is for anything else
        return repr(value)


def deep(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


# Raw bytes as a platform may hand them over: invalid UTF-8, NUL, BOMs, huge, deeply nested, truncated.
RAW_PAYLOADS = [
    b"",
    b"\x00",
    b"\xff\xfe\x00",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8 (CESU), which UTF-8 forbids
    b"\xef\xbb\xbf{}",
    b'{"a": "\x00"}',
    b'"\\ud800"',
    b"[" * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"Records": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'"' + b"x" * 2_000_000 + b'"',
    b"1" * 5000,
    b"NaN",
    b"[1e99999]",
    b'{"events": [{"eventName": "ObjectCreated:Put", "oss": ',
]
raw_bytes = st.one_of(st.sampled_from(RAW_PAYLOADS), st.binary(max_size=300))


def paths_in(document: Any) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) to a value inside ``document``, the empty path (the whole) first."""
    found: list[tuple[Any, ...]] = [()]

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for name, child in items:
            found.append((*path, name))
            walk(child, (*path, name))

    walk(document, ())
    return found


MUTATIONS = ("remove", "replace", "wrap-list", "wrap-object", "as-text", "hostile", "null", "empty")


@st.composite
def mutated(draw: st.DrawFn, sample: Any, values: st.SearchStrategy[Any] | None = None) -> Any:
    """``sample`` with one to three values anywhere changed: removed, replaced, nested one level deeper (in a list
    or an object), turned into JSON text, or replaced by a hostile string, null or an empty container."""
    document = copy.deepcopy(sample)
    replacement = values if values is not None else json_ish(max_leaves=8)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths_in(document)))
        how = draw(st.sampled_from(MUTATIONS))
        if not path:
            if how in ("wrap-list", "wrap-object", "as-text"):
                document = _mutate(document, how, draw, replacement)
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        name = path[-1]
        if how == "remove":
            del parent[name]
            continue
        parent[name] = _mutate(parent[name], how, draw, replacement)
    return document


def _mutate(value: Any, how: str, draw: st.DrawFn, replacement: st.SearchStrategy[Any]) -> Any:
    if how == "wrap-list":
        return [value]
    if how == "wrap-object":
        return {draw(hostile_text): value}
    if how == "as-text":
        return _dumps(value)
    if how == "hostile":
        return draw(hostile_text)
    if how == "null":
        return None
    if how == "empty":
        return draw(st.sampled_from(["", [], {}]))
    return draw(replacement)
