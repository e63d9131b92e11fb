"""A resolved header applied to each row: the row's fields (cleaned up), its operation, and what was noticed.

The operation column's values: upsert/create/update/add/insert/新增/修改/更新/在职/正常 mean ``"upsert"``,
delete/remove/disable/删除/离职/停用 mean ``"delete"`` (case-insensitive, from ``presets/columns.json``); a blank cell
is ``None`` (not stated: the engine applies the mode's default); anything else is a ``RecordError`` naming the column
and value. The clean-up of values is ``cell_cleanup``'s.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.inputs.cell_cleanup import (
    RISKY_FIRST,
    clean_mobile,
    department_leaf,
    first_listed,
    is_blank,
    is_formula_like,
    preview,
)
from cvcsync.inputs.column_presets import OP_DELETE, OP_UPSERT
from cvcsync.inputs.records import FieldProblem, RecordError

DEPARTMENT_CACHE_SIZE = 4096


@dataclass(slots=True)
class MappedRow:
    """One row in the document's terms: fields for ``parse_user``, the operation (or None), and what was noticed."""

    fields: dict[str, Any]
    op: str | None
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeaderMapping:
    """How one header (or key set) maps: resolved once, applied to every row with ``apply``."""

    header: tuple[str, ...]
    field_of: dict[str, str]
    fallbacks: dict[str, tuple[str, ...]]
    op_column: str | None
    unmapped: tuple[str, ...]
    ignored: tuple[str, ...]
    preset: str | None
    notices: tuple[str, ...]
    literal: frozenset[str] = frozenset()  # fields filled from the document's own column name: taken as they are
    op_values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    _columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False, compare=False)
    _column_of: dict[str, str] = field(init=False, repr=False, compare=False)
    _mobile: bool = field(init=False, repr=False, compare=False)
    _department_name: bool = field(init=False, repr=False, compare=False)
    _department_id: bool = field(init=False, repr=False, compare=False)
    _department_cache: dict[tuple[str, str], tuple[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = tuple(self.field_of)
        set_ = functools.partial(object.__setattr__, self)
        set_("_columns", columns)
        set_("_names", tuple(self.field_of[c] for c in columns))
        set_("_column_of", {target: column for column, target in self.field_of.items()})
        set_("_mobile", "userMobile" in self._names)
        set_("_department_name", "departName" in self._names and "departName" not in self.literal)
        set_("_department_id", "departId" in self._names and "departId" not in self.literal)
        set_("_department_cache", {})  # a directory has few distinct departments: clean each once
        if len(columns) > 1:
            set_("_get", operator.itemgetter(*columns))
        elif columns:
            only = columns[0]
            set_("_get", lambda row: (row[only],))
        else:
            set_("_get", lambda row: ())

    def apply(self, row: Mapping[str, Any], *, position: str | None = None) -> MappedRow:
        """The row's fields (clean-up applied), operation and notices; a bad operation value is a ``RecordError``."""
        try:
            values = self._get(row)
        except KeyError:
            values = tuple(row.get(column) for column in self._columns)
        # Same length by construction; strict= would cost more than the rest of this line.
        fields: dict[str, Any] = dict(zip(self._names, values))  # noqa: B905
        if self.fallbacks:
            self._fill_blanks(fields, row)
            values = tuple(fields.values())
        notices: list[str] | None = None
        for value in values:
            if value and value.__class__ is str and value[0] in RISKY_FIRST and is_formula_like(value.strip()):
                notices = self._flag_formulas(fields)
                break
        if self._mobile:
            mobile = fields["userMobile"]
            if mobile.__class__ is not str or not (len(mobile) == 11 and mobile.isdigit() and mobile.isascii()):
                fields["userMobile"] = clean_mobile(mobile)
        if self._department_name:
            notices = self._clean_department(fields, "departName", notices, leaf=True)
        if self._department_id:
            notices = self._clean_department(fields, "departId", notices, leaf=False)
        op = self._operation(row, fields, position) if self.op_column is not None else None
        return MappedRow(fields, op, tuple(notices) if notices else ())

    def _flag_formulas(self, fields: Mapping[str, Any]) -> list[str] | None:
        notices = [
            f"column {self._column_of.get(target, target)!r}: starts like a spreadsheet formula "
            f"({preview(value.strip())}); kept as text, never evaluated"
            for target, value in fields.items()
            if isinstance(value, str) and is_formula_like(value.strip())
        ]
        return notices or None

    def _fill_blanks(self, fields: dict[str, Any], row: Mapping[str, Any]) -> None:
        for target, columns in self.fallbacks.items():
            if is_blank(fields.get(target)):
                for column in columns:
                    value = row.get(column)
                    if not is_blank(value):
                        fields[target] = value
                        break

    def _clean_department(
        self, fields: dict[str, Any], target: str, notices: list[str] | None, *, leaf: bool
    ) -> list[str] | None:
        value = fields[target]
        if value.__class__ is not str or value.isalnum():
            return notices
        cache = self._department_cache
        known = cache.get((target, value))
        if known is None:
            first, count = first_listed(value)
            if len(cache) >= DEPARTMENT_CACHE_SIZE:
                cache.clear()
            known = cache[(target, value)] = (department_leaf(first) if leaf else first, count)
        fields[target] = known[0]
        if known[1] > 1:
            notices = notices or []
            notices.append(
                f"column {self._column_of.get(target, target)!r} lists {known[1]} departments; the first is used"
            )
        return notices

    def _operation(self, row: Mapping[str, Any], fields: Mapping[str, Any], position: str | None) -> str | None:
        column = self.op_column
        assert column is not None
        raw = row.get(column)
        op = self.op_values.get(raw) if raw.__class__ is str else None
        if op is not None:
            return op
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        op = self.op_values.get(raw.strip().casefold()) if isinstance(raw, str) else None
        if op is None:
            upserts = ", ".join(k for k, v in self.op_values.items() if v == OP_UPSERT)
            deletes = ", ".join(k for k, v in self.op_values.items() if v == OP_DELETE)
            shown = preview(raw) if isinstance(raw, str) else repr(raw)
            user_id = fields.get("userId")
            raise RecordError(
                [FieldProblem(column, f"{shown} is not an operation: use {upserts} (upsert) or {deletes} (delete)")],
                position=position,
                user_id=str(user_id) if user_id not in (None, "") else None,
            )
        return op
