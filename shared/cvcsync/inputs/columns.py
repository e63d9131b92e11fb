"""Column mapping: from however an HR export names its columns to the document's camelCase fields.

A ``ColumnMap`` (preset choice plus configured aliases) resolves a file's header once into a ``HeaderMapping``;
``HeaderMapping.apply`` then turns each raw row into a ``MappedRow``: the fields for ``records.parse_user``, the
row's operation, and per-row notices. Columns it does not use are listed in ``HeaderMapping.unmapped`` so they can
be reported, never silently dropped. JSON and NDJSON records have no header: their key sets are resolved the same
way and cached, so a file of a million records resolves a handful of times, not a million.

Which column fills a field, in priority order:

1. a column named in ``CVCSYNC_COLUMN_MAP`` (a JSON object, e.g. ``{"人员编码": "userId", "变更": "op",
   "备注": null}``; ``null`` means "ignore this column, do not report it");
2. the document's own name, case-insensitively (``userId``, ``UserId``, ``USERID``, ``user_id``);
3. an alias of the preset: ``CVCSYNC_COLUMN_PRESET`` names one (``wecom``, ``dingtalk``, ``hr``), ``none`` uses
   none, and ``auto`` (the default) picks, per file, the preset that recognises most header columns (a preset that
   finds userId first; ties in the data file's order). Each field's aliases are in priority order in
   ``presets/columns.json`` (企业邮箱 before 个人邮箱, 员工编号 before 工号, ...).

Ties go to the leftmost column. When two columns fill one field the loser is reported as a notice; for contact
fields (userEmail, userMobile, userTel, userAvatarUrl) it is also a fallback, used where the winner's cell is blank.
Identity fields never fall back: mixing two id columns would mix two id schemes.

The operation column (delta mode) is the first present of op, operation, action, 操作, 操作类型, type, 状态,
员工状态, 在职状态. Its values: upsert/create/update/add/insert/新增/修改/更新/在职/正常 mean ``"upsert"``,
delete/remove/disable/删除/离职/停用 mean ``"delete"`` (case-insensitive); a blank cell is ``None`` (not stated: the
engine applies the mode's default); anything else is a ``RecordError`` naming the column and value. A full
snapshot's 状态 column goes through the same rule, so a 离职 row comes back as ``"delete"``: the engine treats that
user as absent.

Value clean-up (only on the mapped fields; ``SourceRow.data`` keeps what the file said):

- userMobile: separators (spaces, dashes, dots, brackets) and a ``+86``/``0086``/``86`` country prefix are removed
  when what is left is a Chinese mobile number (11 digits, 1[3-9]…); full-width digits are made ASCII and Excel's
  ``13800000001.0`` loses its ``.0``. Anything else (foreign numbers, landlines) is left as it was.
- departName, from an alias column (部门, 部门名称 ...): several departments separated by ``;``/``；`` become the
  first one, with a notice; a path (``总部/研发部``, ``总部-研发部``, ``／``, ``－``, ``>``) becomes its last
  segment, as CVC has one flat department name. The full path is kept nowhere but the raw row (two 销售部 under
  different parents look alike in CVC: give them departIds). departId from an alias column keeps its first entry
  the same way. A column with the document's own name (departName) is taken literally.
- Spreadsheet formulas: a mapped value starting with ``=``, ``@``, or ``+``/``-`` followed by something other than
  a number, is kept as text (it is data, and nothing here evaluates anything) and flagged in the row's notices, so
  a report can show it escaped (``spreadsheet_safe``).
"""

from __future__ import annotations

import functools
import operator
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from cvcsync.config import ENV_COLUMN_MAP, ENV_COLUMN_PRESET
from cvcsync.errors import ConfigurationError
from cvcsync.inputs.records import (
    FIELDS,
    MAX_LENGTH,
    PLAIN_SEPARATOR,
    FieldProblem,
    RecordError,
    json_pieces,
    plain_default,
    plain_value_pattern,
)

OP_UPSERT = "upsert"
OP_DELETE = "delete"
OP_TARGET = "op"
AUTO = "auto"
NONE = "none"
FALLBACK_FIELDS = ("userEmail", "userMobile", "userTel", "userAvatarUrl")
REQUIRED_COLUMNS = ("userId", "userName")  # groupId/groupName usually come from configuration
PRESET_FILE = "presets/columns.json"
CACHE_SIZE = 256
DEPARTMENT_CACHE_SIZE = 4096

_NAME_NOISE = re.compile(r"[\s_\-*]|\((?:必填|选填|可选|required|optional)\)")
_DEPARTMENT_LIST = re.compile(r"[;；]")
_DEPARTMENT_PATH = re.compile(r"[/／\-－>＞]")
_PHONE_NOISE = re.compile(r"[\s\-‐–—.()\[\]]")
_CHINESE_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_NUMBERISH = re.compile(r"[+\-][0-9\s().\-/]*")
_RISKY_FIRST = "=+-@ \t\r\n\u3000\xa0"  # a formula's first character, or blank space a strip would remove
_PREVIEW = 32


def header_key(name: str) -> str:
    """How column names are compared: NFKC (full-width to ASCII), case-folded, without spaces, ``_``, ``-``, ``*``
    and required/optional markers such as ``(必填)``."""
    return _NAME_NOISE.sub("", unicodedata.normalize("NFKC", str(name)).casefold())


def is_formula_like(text: str) -> bool:
    """Would a spreadsheet read this cell as a formula? ``=…``, ``@…``, or ``+``/``-`` not followed by a number."""
    if len(text) < 2:
        return False
    first = text[0]
    if first == "=":
        return True
    if first == "@":
        return not text[1].isspace()
    if first in "+-":
        return _NUMBERISH.fullmatch(text) is None
    return False


def spreadsheet_safe(text: str) -> str:
    """The text as a report may show it: formula-like cells get a leading ``'``, which spreadsheets read as text."""
    return "'" + text if is_formula_like(text.strip()) else text


def normalise_mobile(value: str) -> str:
    """A Chinese mobile number as 11 digits; any other value stripped but otherwise as it was."""
    text = value.strip()
    if len(text) == 11 and text.isascii() and _CHINESE_MOBILE.fullmatch(text):
        return text
    candidate = text if text.isascii() else unicodedata.normalize("NFKC", text)
    if candidate.endswith(".0") and candidate[:-2].isdigit():
        candidate = candidate[:-2]
    digits = _PHONE_NOISE.sub("", candidate)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    if digits.isascii() and _CHINESE_MOBILE.fullmatch(digits):
        return digits
    return text


def first_listed(value: str) -> tuple[str, int]:
    """The first of several entries separated by ``;``/``；``, and how many there were (blank entries aside)."""
    parts = [part.strip() for part in _DEPARTMENT_LIST.split(value)]
    listed = [part for part in parts if part]
    return (listed[0] if listed else ""), len(listed)


def department_leaf(value: str) -> str:
    """The last segment of a department path (``总部/研发部`` -> ``研发部``); a bare placeholder ``-`` is blank."""
    segments = [part.strip() for part in _DEPARTMENT_PATH.split(value)]
    named = [part for part in segments if part]
    return named[-1] if named else ""


def _preview(value: str) -> str:
    shown = repr(value[:_PREVIEW])
    return shown + "…" if len(value) > _PREVIEW else shown


# --- the preset data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Presets:
    """``presets/columns.json``, checked: per preset, header key -> (field, rank); and the operation vocabulary."""

    names: tuple[str, ...]
    titles: dict[str, str]
    aliases: dict[str, dict[str, tuple[str, int]]]
    op_columns: dict[str, int]
    op_values: dict[str, str]

    @property
    def choices(self) -> tuple[str, ...]:
        return (AUTO, NONE, *self.names)


@functools.cache
def load_presets() -> Presets:
    """Read and check the preset data shipped with the package (once per process)."""
    raw = orjson.loads((resources.files("cvcsync.inputs") / PRESET_FILE).read_bytes())
    names: list[str] = []
    titles: dict[str, str] = {}
    aliases: dict[str, dict[str, tuple[str, int]]] = {}
    for name, preset in raw["presets"].items():
        table: dict[str, tuple[str, int]] = {}
        for target, columns in preset["fields"].items():
            if target not in FIELDS:
                raise ConfigurationError(f"{PRESET_FILE}: preset {name!r} maps to unknown field {target!r}")
            for rank, column in enumerate(columns):
                key = header_key(column)
                if key in table and table[key][0] != target:
                    raise ConfigurationError(f"{PRESET_FILE}: preset {name!r} maps {column!r} to two fields")
                table.setdefault(key, (target, rank))
        names.append(name)
        titles[name] = str(preset.get("title", name))
        aliases[name] = table
    operation = raw["operation"]
    op_columns = {header_key(column): rank for rank, column in enumerate(operation["columns"])}
    op_values: dict[str, str] = {}
    for op in (OP_UPSERT, OP_DELETE):
        for value in operation[op]:
            op_values[str(value).casefold()] = op
    return Presets(tuple(names), titles, aliases, op_columns, op_values)


# --- configuration ---------------------------------------------------------------------------------------------

_FIELD_BY_KEY = {name.casefold(): name for name in FIELDS}


def _check_aliases(aliases: Mapping[str, Any], source: str) -> dict[str, str | None]:
    """Configured aliases as header key -> field, ``"op"`` or None (ignore), refusing anything else."""
    checked: dict[str, str | None] = {}
    for column, target in aliases.items():
        if not isinstance(column, str) or not header_key(column):
            raise ConfigurationError(f"{source}: column names must be non-empty text, got {column!r}")
        if target is None:
            checked[header_key(column)] = None
            continue
        name = _FIELD_BY_KEY.get(str(target).casefold()) if isinstance(target, str) else None
        if name is None and isinstance(target, str) and target.casefold() == OP_TARGET:
            name = OP_TARGET
        if name is None:
            expected = ", ".join((*FIELDS, OP_TARGET))
            raise ConfigurationError(
                f"{source}: column {column!r} maps to {target!r}; expected one of {expected}, or null to ignore it"
            )
        checked[header_key(column)] = name
    return checked


@dataclass(slots=True)
class MappedRow:
    """One row in the document's terms: fields for ``parse_user``, the operation (or None), and what was noticed."""

    fields: dict[str, Any]
    op: str | None
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Candidate:
    column: str
    target: str
    rank: tuple[int, int, int]  # (source: 0 configured, 1 document name, 2 preset), alias rank, column position


class ColumnMap:
    """The column-mapping configuration: a preset choice and configured aliases; resolves headers, with a cache."""

    def __init__(self, preset: str = AUTO, aliases: Mapping[str, Any] | None = None, *, source: str = "aliases"):
        presets = load_presets()
        chosen = (preset or AUTO).strip().lower()
        if chosen not in presets.choices:
            raise ConfigurationError(f"unknown column preset {preset!r}; expected one of {', '.join(presets.choices)}")
        self.preset = chosen
        self.aliases = _check_aliases(aliases or {}, source)
        self._presets = presets
        self._cache: dict[tuple[str, ...], HeaderMapping] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ColumnMap:
        """From CVCSYNC_COLUMN_PRESET (auto|none|wecom|dingtalk|hr) and CVCSYNC_COLUMN_MAP (a JSON object)."""
        env = os.environ if env is None else env
        preset = env.get(ENV_COLUMN_PRESET, "").strip() or AUTO
        if preset.lower() not in load_presets().choices:
            choices = "|".join(load_presets().choices)
            raise ConfigurationError(f"{ENV_COLUMN_PRESET} must be one of {choices}, got {preset!r}")
        raw = env.get(ENV_COLUMN_MAP, "").strip()
        aliases: Any = {}
        if raw:
            try:
                aliases = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                # The value itself is not echoed: configuration values stay out of messages and logs.
                raise ConfigurationError(
                    f'{ENV_COLUMN_MAP} is not valid JSON ({exc.msg}); expected an object like {{"人员编码": "userId"}}'
                ) from None
            if not isinstance(aliases, dict):
                raise ConfigurationError(
                    f"{ENV_COLUMN_MAP} must be a JSON object of column name -> field, got {type(aliases).__name__}"
                )
        return cls(preset, aliases, source=ENV_COLUMN_MAP)

    def for_header(self, header: Sequence[str]) -> HeaderMapping:
        """The mapping for a file's header (or a record's key set), resolved once and cached."""
        key = tuple(header)
        mapping = self._cache.get(key)
        if mapping is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            mapping = self._cache[key] = self._resolve(key)
        return mapping

    def for_record(self, record: Mapping[str, Any]) -> HeaderMapping:
        """The mapping for a JSON/NDJSON record's keys (records sharing a key set share one resolution)."""
        return self.for_header(tuple(record))

    def apply(self, record: Mapping[str, Any], *, position: str | None = None) -> MappedRow:
        """Map one record whatever its key set: ``for_record(record).apply(record)``."""
        return self.for_header(tuple(record)).apply(record, position=position)

    def _resolve(self, header: tuple[str, ...]) -> HeaderMapping:
        keys = [header_key(column) for column in header]
        notices: list[str] = []
        preset = self._choose_preset(keys, notices)
        table = self._presets.aliases.get(preset, {}) if preset else {}
        candidates: list[_Candidate] = []
        ignored: list[str] = []
        op_candidates: list[_Candidate] = []
        for position, (column, key) in enumerate(zip(header, keys, strict=True)):
            if key in self.aliases:
                target = self.aliases[key]
                if target is None:
                    ignored.append(column)
                elif target == OP_TARGET:
                    op_candidates.append(_Candidate(column, OP_TARGET, (0, 0, position)))
                else:
                    candidates.append(_Candidate(column, target, (0, 0, position)))
            elif key in _FIELD_BY_KEY:
                candidates.append(_Candidate(column, _FIELD_BY_KEY[key], (1, 0, position)))
            elif key in self._presets.op_columns:
                op_candidates.append(_Candidate(column, OP_TARGET, (1, self._presets.op_columns[key], position)))
            elif key in table:
                target, rank = table[key]
                candidates.append(_Candidate(column, target, (2, rank, position)))
        field_of: dict[str, str] = {}
        fallbacks: dict[str, tuple[str, ...]] = {}
        literal: set[str] = set()
        used: set[str] = set()
        for target in FIELDS:
            ranked = sorted((c for c in candidates if c.target == target), key=lambda c: c.rank)
            if not ranked:
                continue
            winner, losers = ranked[0], ranked[1:]
            field_of[winner.column] = target
            used.add(winner.column)
            if winner.rank[0] == 1:
                literal.add(target)
            if losers:
                names = ", ".join(repr(c.column) for c in losers)
                if target in FALLBACK_FIELDS:
                    fallbacks[target] = tuple(c.column for c in losers)
                    used.update(fallbacks[target])
                    notices.append(
                        f"{target}: columns {winner.column!r} and {names} could fill it; {winner.column!r} has "
                        f"priority, then {names} where it is blank"
                    )
                else:
                    notices.append(
                        f"{target}: columns {winner.column!r} and {names} could fill it; {winner.column!r} has "
                        f"priority, {names} not used"
                    )
        op_column = None
        if op_candidates:
            ranked = sorted(op_candidates, key=lambda c: c.rank)
            op_column = ranked[0].column
            used.add(op_column)
            notices.append(f"column {op_column!r} holds each row's operation")
            if len(ranked) > 1:
                names = ", ".join(repr(c.column) for c in ranked[1:])
                notices.append(f"columns {names} also look like an operation column; {op_column!r} is used")
        for required in REQUIRED_COLUMNS:
            if required not in field_of.values():
                notices.append(
                    f"no column fills {required}, which is required: name the column in {ENV_COLUMN_MAP} "
                    f'(e.g. {{"人员编码": "{required}"}})'
                )
        unmapped = tuple(column for column in header if column not in used and column not in ignored)
        if unmapped:
            notices.append(f"columns not used: {', '.join(repr(c) for c in unmapped)}")
        return HeaderMapping(
            header=header,
            field_of=field_of,
            fallbacks=fallbacks,
            op_column=op_column,
            unmapped=unmapped,
            ignored=tuple(ignored),
            preset=preset,
            notices=tuple(notices),
            literal=frozenset(literal),
            op_values=self._presets.op_values,
        )

    def _choose_preset(self, keys: list[str], notices: list[str]) -> str | None:
        if self.preset == NONE:
            return None
        if self.preset != AUTO:
            return self.preset
        best: tuple[bool, int, int] | None = None
        chosen = None
        for order, name in enumerate(self._presets.names):
            table = self._presets.aliases[name]
            found = [table[key][0] for key in keys if key in table and key not in self.aliases]
            if not found:
                continue
            score = ("userId" in found, len(found), -order)
            if best is None or score > best:
                best, chosen = score, name
        if chosen is not None and best is not None:
            notices.append(
                f"column preset {chosen!r} ({self._presets.titles[chosen]}) chosen from the header: "
                f"it recognises {best[1]} of {len(keys)} columns"
            )
        return chosen


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
            if value and value.__class__ is str and value[0] in _RISKY_FIRST and is_formula_like(value.strip()):
                notices = self._flag_formulas(fields)
                break
        if self._mobile:
            mobile = fields["userMobile"]
            if mobile.__class__ is not str or not (len(mobile) == 11 and mobile.isdigit() and mobile.isascii()):
                fields["userMobile"] = _clean_mobile(mobile)
        if self._department_name:
            notices = self._clean_department(fields, "departName", notices, leaf=True)
        if self._department_id:
            notices = self._clean_department(fields, "departId", notices, leaf=False)
        op = self._operation(row, fields, position) if self.op_column is not None else None
        return MappedRow(fields, op, tuple(notices) if notices else ())

    def _flag_formulas(self, fields: Mapping[str, Any]) -> list[str] | None:
        notices = [
            f"column {self._column_of.get(target, target)!r}: starts like a spreadsheet formula "
            f"({_preview(value.strip())}); kept as text, never evaluated"
            for target, value in fields.items()
            if isinstance(value, str) and is_formula_like(value.strip())
        ]
        return notices or None

    def _fill_blanks(self, fields: dict[str, Any], row: Mapping[str, Any]) -> None:
        for target, columns in self.fallbacks.items():
            if _blank(fields.get(target)):
                for column in columns:
                    value = row.get(column)
                    if not _blank(value):
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
            shown = _preview(raw) if isinstance(raw, str) else repr(raw)
            user_id = fields.get("userId")
            raise RecordError(
                [FieldProblem(column, f"{shown} is not an operation: use {upserts} (upsert) or {deletes} (delete)")],
                position=position,
                user_id=str(user_id) if user_id not in (None, "") else None,
            )
        return op


_FORMULA_FIRST = "=+-@"
_MAX_PLAIN_SHAPES = 64


class PlainRows:
    """One header's rows at full speed, when every mapped value is plain (see ``records``): for such a row
    ``HeaderMapping.apply`` changes and notices nothing (no formula, a mobile of 11 digits already, a department
    without a path or a list, no blank contact field to fall back on) and ``fast_user_json`` takes each value as it
    is, so the CreateUser JSON is the values between constant pieces. Any other row gets None and the full path.

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
        self._op: Callable[[Any], Any] | None = None
        if mapping.op_column is not None:
            op_key = header.index(mapping.op_column) if header is not None else mapping.op_column
            self._op = operator.itemgetter(op_key)
        self._upserts = frozenset(["", *(value for value, op in mapping.op_values.items() if op == OP_UPSERT)])
        self._no_blank = frozenset(mapping.fallbacks) | {"userId"}
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
            elif name in ("departId", "departName") and name not in mapping.literal:
                self._patterns[name] = rf"[^\W_]{{1,{MAX_LENGTH[name]}}}"  # isalnum(): no path, no list to clean
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
        values = self.get(row)
        try:
            joined = PLAIN_SEPARATOR.join(values)
        except TypeError:  # a JSON number, null, list...: the full path converts or refuses it
            return None
        if not joined.isprintable() or '"' in joined or "\\" in joined:
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


def _clean_mobile(value: Any) -> Any:
    """Mobile clean-up for text and JSON numbers; other types (and integers too long for ``str``, no phone number
    either) are left for ``parse_user`` to refuse."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    try:
        return normalise_mobile(str(value))
    except ValueError:
        return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
