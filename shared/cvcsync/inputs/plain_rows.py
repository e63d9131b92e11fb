"""The planner's fast path: rows whose mapped values are all plain, turned into CreateUser JSON without a dict.

Plain means nothing would change it or need a word: ``HeaderMapping.apply`` (formulas, mobiles, departments, name
parts, line breaks, the operation and status) nor ``records.clean_field`` (NFKC, Excel's text marks and scientific
notation, Unicode spaces, spaces between Han characters). The cheap checks run first, on the joined values: one
``isprintable`` (controls, line breaks, Unicode spaces), two ``in`` tests (JSON escapes), one ``in`` for a space;
ids, phones and e-mails are held to printable ASCII by their patterns, which NFKC leaves as it is.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cvcsync.inputs.cell_cleanup import name_spacing_changes
from cvcsync.inputs.column_presets import OP_UPSERT
from cvcsync.inputs.header_mapping import HeaderMapping
from cvcsync.inputs.records import (
    FIELDS,
    MAX_LENGTH,
    PLAIN_SEPARATOR,
    json_pieces,
    plain_default,
    plain_value_pattern,
)

_FORMULA_FIRST = "=+-@"
_MAX_PLAIN_SHAPES = 64


class PlainRows:
    """One header's rows at full speed, when every mapped value is plain (see ``records``): for such a row
    ``HeaderMapping.apply`` changes and notices nothing (no formula, a mobile of 11 digits already, a department
    without a path or a list, no blank field to fall back on, a name from its own column, an operation and status
    that say upsert) and ``fast_user_json`` takes each value as it is, so the CreateUser JSON is the values between
    constant pieces. Any other row gets None and the full path.

    Rows are cell lists in ``header``'s order (CSV) or dicts (JSON); either way the values are taken in FIELDS
    order with one ``itemgetter`` call. A shape (which mapped values are blank) is compiled once, when first seen.
    """

    def __init__(self, mapping: HeaderMapping, defaults: Mapping[str, Any], header: Sequence[str] | None) -> None:
        columns = sorted(mapping.field_of, key=lambda column: FIELDS.index(mapping.field_of[column]))
        self.names = tuple(mapping.field_of[column] for column in columns)
        if len(columns) < 2 or self.names[0] != "userId":
            raise ValueError("a plain row needs a userId column and one more")
        keys: list[Any] = [header.index(column) for column in columns] if header is not None else list(columns)
        self.get: Callable[[Any], tuple[Any, ...]] = operator.itemgetter(*keys)
        if mapping.name_from_parts and "userName" not in self.names:
            raise ValueError("every userName is joined from its parts")
        self._op: Callable[[Any], Any] | None = None
        if mapping.op_column is not None:
            op_key = header.index(mapping.op_column) if header is not None else mapping.op_column
            self._op = operator.itemgetter(op_key)
        self._upserts = frozenset(["", *(value for value, op in mapping.op_values.items() if op == OP_UPSERT)])
        self._status: Callable[[Any], Any] | None = None
        if mapping.status_column is not None:
            status_key = header.index(mapping.status_column) if header is not None else mapping.status_column
            self._status = operator.itemgetter(status_key)
        self._actives = frozenset(["", *mapping.status.plain_active])
        no_blank = {"userId", *mapping.fallbacks, *(["userName"] if mapping.name_from_parts else [])}
        self._no_blank = frozenset(no_blank)  # a blank one is filled in by the full path
        self._filled: dict[str, str] = {}
        for name in FIELDS:
            default = plain_default(name, defaults)
            if default is None:
                raise ValueError(f"the default for {name} is not plain")
            self._filled[name] = default
        self._patterns = {}
        for name in self.names:
            if name == "userMobile":
                self._patterns[name] = "[0-9]{11}"  # what HeaderMapping.apply leaves as it is
            elif name == "departName" and name not in mapping.literal:
                self._patterns[name] = rf"[^\W_]{{1,{MAX_LENGTH[name]}}}"  # isalnum(): no path, no list to clean
            elif name == "departId" and name not in mapping.literal:
                self._patterns[name] = rf"[0-9A-Za-z]{{1,{MAX_LENGTH[name]}}}"  # and ASCII, as NFKC leaves it
            else:
                self._patterns[name] = plain_value_pattern(name, not_first=_FORMULA_FIRST)
        self._shapes: dict[tuple[bool, ...], tuple[Callable[[str], Any], list[str | None]] | None] = {}
        everything = self._shape((True,) * len(self.names))
        if everything is None:
            raise ValueError("a row with every mapped value would still miss a required field")
        self._match, self._parts = everything

    def user_json(self, row: Any) -> tuple[str, str] | None:
        """(userId, CreateUser JSON) of a plain row, else None."""
        if self._op is not None:
            raw = self._op(row)
            if raw.__class__ is not str or raw not in self._upserts:
                return None  # a delete, or an operation the full path has to read
        if self._status is not None:
            raw = self._status(row)
            if raw.__class__ is not str or raw not in self._actives:
                return None  # gone, or a status the full path has to read
        values = self.get(row)
        try:
            joined = PLAIN_SEPARATOR.join(values)
        except TypeError:  # a JSON number, null, list...: the full path converts or refuses it
            return None
        if not joined.isprintable() or '"' in joined or "\\" in joined or name_spacing_changes(joined):
            return None
        if self._match(joined) is not None:
            parts = self._parts.copy()
        else:
            if "" not in values:
                return None
            shape = tuple(map(bool, values))
            compiled = self._shapes[shape] if shape in self._shapes else self._shape(shape)
            if compiled is None:
                return None
            present = tuple(filter(None, values))
            if compiled[0](PLAIN_SEPARATOR.join(present)) is None:
                return None
            parts, values = compiled[1].copy(), present
        parts[1::2] = values
        return values[0], "".join(parts)  # type: ignore[arg-type]

    def _shape(self, shape: tuple[bool, ...]) -> tuple[Callable[[str], Any], list[str | None]] | None:
        """The regex and the JSON pieces (with a slot between each two for a value) of rows of this shape."""
        names = tuple(name for name, present in zip(self.names, shape, strict=True) if present)
        pieces = None
        if not self._no_blank.difference(names).intersection(self.names):
            pieces = json_pieces(names, self._filled)
        compiled = None
        if pieces is not None:
            pattern = re.compile(PLAIN_SEPARATOR.join(self._patterns[name] for name in names))
            parts: list[str | None] = [None] * (2 * len(pieces) - 1)
            parts[0::2] = pieces
            compiled = pattern.fullmatch, parts
        if len(self._shapes) < _MAX_PLAIN_SHAPES:
            self._shapes[shape] = compiled
        return compiled
