"""A resolved header applied to each row: the row's fields (cleaned up), its operation, and what was noticed.

The operation column's values: upsert/create/update/add/insert/新增/修改/更新/在职/正常 mean ``"upsert"``,
delete/remove/disable/删除/离职/停用 mean ``"delete"`` (case-insensitive, from ``presets/columns.json``); a blank cell
is ``None`` (not stated: the engine applies the mode's default); anything else is a ``RecordError`` naming the column
and value.

The status column's values (在职, 试用, Active, On Leave … in service; 离职, 退休, Terminated, Inactive … gone; see
``presets/columns.json`` and ``CVCSYNC_STATUS_VALUES``) are read the same way: in service is ``"upsert"``, gone is
``"delete"``, blank is not stated, and an unknown value refuses the row with the known values, grouped. A file may
hold both columns (a delta with 操作 and 任职状态): **a delete in either wins**. A departed person must not be
re-created because the row says 修改 (HR edits the status itself), and an explicit 删除 is an instruction whatever
the person's status; a conflict is noted. A delete row's userId is cleaned up as ``parse_user`` would
(``records.clean_field``): deletes never reach ``parse_user``.

A name in two columns (``First Name``/``Last Name``, ``名``/``姓``) fills userName where no userName column has a
value, joined by ``cell_cleanup.join_name`` in the configured order. Line breaks and tabs inside a name or
department are replaced here (with a notice naming the column, for the report) before ``parse_user`` would. The
rest of the clean-up of values is ``cell_cleanup``'s (file-only steps) and ``records.clean_field``'s (every path).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.inputs.cell_cleanup import (
    NUMBER_FIELDS,
    RISKY_FIRST,
    clean_mobile,
    department_leaf,
    first_listed,
    is_blank,
    is_formula_like,
    join_name,
    preview,
    replace_breaks,
    undo_excel_text,
)
from cvcsync.inputs.column_presets import AUTO, OP_DELETE, OP_UPSERT, StatusVocabulary, status_key, status_vocabulary
from cvcsync.inputs.records import FieldProblem, RecordError, clean_field

DEPARTMENT_CACHE_SIZE = 4096
_NO_STATUS = status_vocabulary(())


def _excel_text(target: str, text: str) -> bool:
    """``="0123"`` in an id or phone: Excel's way of keeping a number as text, undone by ``clean_field``."""
    return target in NUMBER_FIELDS and undo_excel_text(text) != text


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
    status_column: str | None = None
    status: StatusVocabulary = field(default=_NO_STATUS, repr=False, compare=False)
    name_parts: tuple[str | None, str | None] = (None, None)  # the given-name and family-name columns
    name_order: str = AUTO
    _columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False, compare=False)
    _column_of: dict[str, str] = field(init=False, repr=False, compare=False)
    _mobile: bool = field(init=False, repr=False, compare=False)
    _department_name: bool = field(init=False, repr=False, compare=False)
    _department_id: bool = field(init=False, repr=False, compare=False)
    _text_fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _department_cache: dict[tuple[str, str], tuple[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = tuple(self.field_of)
        set_ = functools.partial(object.__setattr__, self)
        set_("_columns", columns)
        set_("_names", tuple(self.field_of[c] for c in columns))
        column_of = {target: column for column, target in self.field_of.items()}
        if "userName" not in column_of and self.name_parts != (None, None):
            column_of["userName"] = " + ".join(column for column in self.name_parts if column is not None)
        set_("_column_of", column_of)
        set_("_mobile", "userMobile" in self._names)
        set_("_department_name", "departName" in self._names and "departName" not in self.literal)
        set_("_department_id", "departId" in self._names and "departId" not in self.literal)
        set_("_text_fields", tuple(name for name in ("userName", "groupName", "departName") if name in column_of))
        set_("_department_cache", {})  # a directory has few distinct departments: clean each once
        if len(columns) > 1:
            set_("_get", operator.itemgetter(*columns))
        elif columns:
            only = columns[0]
            set_("_get", lambda row: (row[only],))
        else:
            set_("_get", lambda row: ())

    @property
    def name_from_parts(self) -> bool:
        """Whether userName may be joined from a given-name and a family-name column."""
        return self.name_parts != (None, None)

    def apply(self, row: Mapping[str, Any], *, position: str | None = None) -> MappedRow:
        """The row's fields (clean-up applied), operation and notices; a bad operation or status value, or a delete
        whose userId cannot be used, is a ``RecordError``."""
        try:
            values = self._get(row)
        except KeyError:
            values = tuple(row.get(column) for column in self._columns)
        # Same length by construction; strict= would cost more than the rest of this line.
        fields: dict[str, Any] = dict(zip(self._names, values))  # noqa: B905
        column_of = self._column_of
        if self.fallbacks:
            filled = self._fill_blanks(fields, row)
            if filled:
                column_of = {**column_of, **filled}  # a notice names the column the value came from
            values = tuple(fields.values())
        notices: list[str] | None = None
        for value in values:
            if value and value.__class__ is str and value[0] in RISKY_FIRST and is_formula_like(value.strip()):
                notices = self._flag_formulas(fields, column_of)
                break
        if self._mobile:
            mobile = fields["userMobile"]
            if mobile.__class__ is not str or not (len(mobile) == 11 and mobile.isdigit() and mobile.isascii()):
                fields["userMobile"] = clean_mobile(mobile)
        if self._department_name:
            notices = self._clean_department(fields, "departName", notices, column_of, leaf=True)
        if self._department_id:
            notices = self._clean_department(fields, "departId", notices, column_of, leaf=False)
        if self.name_parts != (None, None) and is_blank(fields.get("userName")):
            self._join_name(fields, row)
        for name in self._text_fields:
            text = fields.get(name)
            if text.__class__ is str and not text.isprintable():
                notices = self._replace_breaks(fields, name, text, notices, column_of)
        op = self._operation(row, fields, position) if self.op_column is not None else None
        if self.status_column is not None:
            op, notices = self._with_status(row, fields, op, position, notices)
        if op == OP_DELETE:
            self._clean_user_id(fields, position)
        return MappedRow(fields, op, tuple(notices) if notices else ())

    @staticmethod
    def _flag_formulas(fields: Mapping[str, Any], column_of: Mapping[str, str]) -> list[str] | None:
        notices = [
            f"column {column_of.get(target, target)!r}: starts like a spreadsheet formula "
            f"({preview(value.strip())}); kept as text, never evaluated"
            for target, value in fields.items()
            if isinstance(value, str) and is_formula_like(value.strip()) and not _excel_text(target, value.strip())
        ]
        return notices or None

    def _fill_blanks(self, fields: dict[str, Any], row: Mapping[str, Any]) -> dict[str, str] | None:
        """Blank fields filled from their fallback columns; which column filled which field."""
        filled = None
        for target, columns in self.fallbacks.items():
            if is_blank(fields.get(target)):
                for column in columns:
                    value = row.get(column)
                    if not is_blank(value):
                        fields[target] = value
                        filled = filled or {}
                        filled[target] = column
                        break
        return filled

    def _clean_department(
        self,
        fields: dict[str, Any],
        target: str,
        notices: list[str] | None,
        column_of: Mapping[str, str],
        *,
        leaf: bool,
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
            notices.append(f"column {column_of.get(target, target)!r} lists {known[1]} departments; the first is used")
        return notices

    def _join_name(self, fields: dict[str, Any], row: Mapping[str, Any]) -> None:
        given, family = (row.get(column) if column is not None else None for column in self.name_parts)
        given = given if isinstance(given, str) else ""
        family = family if isinstance(family, str) else ""
        joined = join_name(given, family, self.name_order)
        if joined:
            fields["userName"] = joined

    def _replace_breaks(
        self,
        fields: dict[str, Any],
        name: str,
        text: str,
        notices: list[str] | None,
        column_of: Mapping[str, str],
    ) -> list[str] | None:
        cleaned, replaced = replace_breaks(text.strip())
        if replaced is None:
            return notices
        fields[name] = cleaned
        notices = notices or []
        column = column_of.get(name, name)
        notices.append(f"column {column!r}: {replaced} inside the cell was replaced by a space")
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
            raise self._refusal(
                column, raw, f"is not an operation: use {upserts} (upsert) or {deletes} (delete)", fields, position
            )
        return op

    def _with_status(
        self,
        row: Mapping[str, Any],
        fields: Mapping[str, Any],
        op: str | None,
        position: str | None,
        notices: list[str] | None,
    ) -> tuple[str | None, list[str] | None]:
        """The row's operation once its status is read: a delete in either column wins."""
        column = self.status_column
        assert column is not None
        raw = row.get(column)
        status = self.status.values.get(raw) if raw.__class__ is str else None
        if status is None:
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return op, notices
            text = raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, (bool, int)) else None
            status = self.status.values.get(status_key(text)) if text is not None else None
            if status is None:
                reason = f"is not a known employment status ({self.status.describe()}; CVCSYNC_STATUS_VALUES adds more)"
                raise self._refusal(column, raw, reason, fields, position)
        if op is None or op == status:
            return status, notices
        notices = notices or []
        said = preview(str(raw).strip())
        if status == OP_DELETE:
            notices.append(
                f"column {column!r} says the person has left ({said}): a delete, whatever column "
                f"{self.op_column!r} says"
            )
        else:
            notices.append(f"column {self.op_column!r} says delete: a delete, although column {column!r} says {said}")
        return OP_DELETE, notices

    def _clean_user_id(self, fields: dict[str, Any], position: str | None) -> None:
        """A delete's userId as ``parse_user`` would have it (full-width, Excel text), or why it cannot be used."""
        problems: list[FieldProblem] = []
        user_id = clean_field("userId", fields.get("userId"), problems, [])
        if problems:
            raise RecordError(problems, position=position, user_id=user_id or None)
        fields["userId"] = user_id

    @staticmethod
    def _refusal(column: str, raw: Any, reason: str, fields: Mapping[str, Any], position: str | None) -> RecordError:
        shown = preview(raw) if isinstance(raw, str) else repr(raw)
        user_id = fields.get("userId")
        return RecordError(
            [FieldProblem(column, f"{shown} {reason}")],
            position=position,
            user_id=str(user_id) if user_id not in (None, "") else None,
        )
