"""Column mapping: from however an HR export names its columns to the document's camelCase fields.

A ``ColumnMap`` (preset choice, configured aliases, status values, name order) resolves a file's header once into
a ``HeaderMapping``; ``HeaderMapping.apply`` then turns each raw row into a ``MappedRow``: the fields for
``records.parse_user``, the row's operation, and per-row notices. Columns it does not use are listed in
``HeaderMapping.unmapped`` so they can be reported, never silently dropped. JSON and NDJSON records have no header:
their key sets are resolved the same way and cached, so a file of a million records resolves a handful of times.

Which column fills a field, in priority order:

1. a column named in ``CVCSYNC_COLUMN_MAP`` (a JSON object, e.g. ``{"人员编码": "userId", "变更": "op",
   "在岗情况": "status", "名字": "givenName", "备注": null}``; ``null`` means "ignore this column, do not report it");
2. the document's own name, case-insensitively (``userId``, ``UserId``, ``USERID``, ``user_id``), except that the
   chosen preset may claim a name spelled otherwise than the document does: SuccessFactors' ``USERNAME`` is a
   login, so that preset makes it a userId column, while a column spelled ``userName`` is always the name;
3. an alias of the preset: ``CVCSYNC_COLUMN_PRESET`` names one (``wecom``, ``dingtalk``, ``hr``, ``beisen``,
   ``moka``, ``successfactors``, ``workday``), ``none`` uses none, and ``auto`` (the default) picks, per file, the
   preset that recognises most header columns (a preset that finds userId first; ties in the data file's order;
   only a preset's own names count, not the common ones nor the document's spellings). Each target's aliases are in
   priority order in ``presets/columns.json`` (企业邮箱 before 个人邮箱, 员工编号 before 工号, ...); every preset
   also knows the common names after its own (a name in two columns, department path columns), and so does
   ``auto`` when no preset recognises the header.

Ties go to the leftmost column. When two columns fill one field the loser is reported as a notice; for userName,
departName and the contact fields (userEmail, userMobile, userTel, userAvatarUrl) it is also a fallback, used where
the winner's cell is blank: a plain department column (部门) has priority over a path column (部门全路径), which
fills in. Identity fields never fall back: mixing two id columns would mix two id schemes.

A name in two columns (given: ``First Name``, ``Given Name``, ``Legal Name - First Name``, ``名``; family:
``Last Name``, ``Surname``, ``Legal Name - Last Name``, ``姓``) fills userName where no userName column has a
value, joined as ``CVCSYNC_NAME_ORDER`` says (``cell_cleanup.join_name``: ``auto`` puts the family name first
without a space when either part is Chinese, Japanese or Korean, else "Given Family").

The operation column (delta mode) is the first present of op, operation, action, 操作, 操作类型, type; the status
column the first of 任职状态, 在职状态, 员工状态, 人员状态, …, 状态, Worker Status, Employment Status, …, Status
(``presets/columns.json``). They are two concepts: a file may have both, and then a delete in either wins
(``header_mapping``). Status values are the shipped ones with ``CVCSYNC_STATUS_VALUES`` (a JSON object, value ->
``"active"`` | ``"gone"``) over them; a full snapshot's 离职 row comes back as ``"delete"``: the engine treats that
user as absent.

Value clean-up and formula flags are ``cell_cleanup``'s and ``records.clean_field``'s, applied by
``header_mapping.HeaderMapping`` and ``records.parse_user``; the planner's fast path for plain rows is
``plain_rows.PlainRows``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cvcsync.config import ENV_COLUMN_MAP, ENV_COLUMN_PRESET, ENV_NAME_ORDER, ENV_STATUS_VALUES
from cvcsync.errors import ConfigurationError
from cvcsync.inputs.column_presets import (
    AUTO,
    FAMILY_NAME,
    GIVEN_NAME,
    NAME_ORDERS,
    NAME_PARTS,
    NONE,
    OP_TARGET,
    STATUS_TARGET,
    check_status_values,
    header_key,
    load_presets,
    status_vocabulary,
)
from cvcsync.inputs.header_mapping import HeaderMapping, MappedRow
from cvcsync.inputs.plain_rows import PlainRows
from cvcsync.inputs.records import FIELDS

__all__ = ["ColumnMap", "HeaderMapping", "MappedRow", "PlainRows"]  # what the planner and callers take from here

FALLBACK_FIELDS = ("userName", "departName", "userEmail", "userMobile", "userTel", "userAvatarUrl")
REQUIRED_COLUMNS = ("userId", "userName")  # groupId/groupName usually come from configuration
CACHE_SIZE = 256

_FIELD_BY_KEY = {name.casefold(): name for name in FIELDS}
_TARGET_BY_KEY = {name.casefold(): name for name in (*FIELDS, STATUS_TARGET, *NAME_PARTS, OP_TARGET)}
_DOCUMENT_SPELLINGS = frozenset([*FIELDS, *(name[0].upper() + name[1:] for name in FIELDS)])


def _check_aliases(aliases: Mapping[str, Any], source: str) -> dict[str, str | None]:
    """Configured aliases as header key -> target (a field, op, status, givenName, familyName) or None (ignore),
    refusing anything else."""
    checked: dict[str, str | None] = {}
    for column, target in aliases.items():
        if not isinstance(column, str) or not header_key(column):
            raise ConfigurationError(f"{source}: column names must be non-empty text, got {column!r}")
        if target is None:
            checked[header_key(column)] = None
            continue
        name = _TARGET_BY_KEY.get(target.casefold()) if isinstance(target, str) else None
        if name is None:
            expected = ", ".join(_TARGET_BY_KEY.values())
            raise ConfigurationError(
                f"{source}: column {column!r} maps to {target!r}; expected one of {expected}, or null to ignore it"
            )
        checked[header_key(column)] = name
    return checked


def _json_env(env: Mapping[str, str], name: str, example: str) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # The value itself is not echoed: configuration values stay out of messages and logs.
        raise ConfigurationError(f"{name} is not valid JSON ({exc.msg}); expected an object like {example}") from None


@dataclass(frozen=True)
class _Candidate:
    column: str
    target: str
    rank: tuple[int, int, int]  # (source: 0 configured, 1 document name, 2 preset), alias rank, column position


class ColumnMap:
    """The column-mapping configuration: a preset choice, configured aliases, status values and the order of a
    name in two columns; resolves headers, with a cache."""

    def __init__(
        self,
        preset: str = AUTO,
        aliases: Mapping[str, Any] | None = None,
        *,
        source: str = "aliases",
        status_values: Mapping[str, Any] | None = None,
        name_order: str = AUTO,
        status_source: str = "status values",
    ):
        presets = load_presets()
        chosen = (preset or AUTO).strip().lower()
        if chosen not in presets.choices:
            raise ConfigurationError(f"unknown column preset {preset!r}; expected one of {', '.join(presets.choices)}")
        order = (name_order or AUTO).strip().lower()
        if order not in NAME_ORDERS:
            raise ConfigurationError(f"unknown name order {name_order!r}; expected one of {', '.join(NAME_ORDERS)}")
        self.preset = chosen
        self.aliases = _check_aliases(aliases or {}, source)
        self.name_order = order
        configured = check_status_values(dict(status_values), status_source) if status_values else []
        self._status = status_vocabulary([*presets.status_pairs, *configured])
        self._status_yes_no = status_vocabulary([*presets.status_pairs, *presets.yes_no_pairs, *configured])
        self._presets = presets
        self._cache: dict[tuple[str, ...], HeaderMapping] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ColumnMap:
        """From CVCSYNC_COLUMN_PRESET (auto|none|a preset), CVCSYNC_COLUMN_MAP (a JSON object), CVCSYNC_STATUS_VALUES
        (a JSON object) and CVCSYNC_NAME_ORDER (auto|given-family|family-given)."""
        env = os.environ if env is None else env
        preset = env.get(ENV_COLUMN_PRESET, "").strip() or AUTO
        if preset.lower() not in load_presets().choices:
            choices = "|".join(load_presets().choices)
            raise ConfigurationError(f"{ENV_COLUMN_PRESET} must be one of {choices}, got {preset!r}")
        order = env.get(ENV_NAME_ORDER, "").strip() or AUTO
        if order.lower() not in NAME_ORDERS:
            raise ConfigurationError(f"{ENV_NAME_ORDER} must be one of {'|'.join(NAME_ORDERS)}, got {order!r}")
        aliases = _json_env(env, ENV_COLUMN_MAP, '{"人员编码": "userId"}') or {}
        if not isinstance(aliases, dict):
            raise ConfigurationError(
                f"{ENV_COLUMN_MAP} must be a JSON object of column name -> field, got {type(aliases).__name__}"
            )
        status_values = _json_env(env, ENV_STATUS_VALUES, '{"待入职": "gone", "Suspended": "active"}')
        if status_values is not None:
            check_status_values(status_values, ENV_STATUS_VALUES)
        return cls(
            preset,
            aliases,
            source=ENV_COLUMN_MAP,
            status_values=status_values,
            name_order=order,
            status_source=ENV_STATUS_VALUES,
        )

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
        preset = self._choose_preset(header, keys, notices)
        candidates, ignored = self._candidates(header, keys, preset, notices)
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
        given = self._first(candidates, GIVEN_NAME, used, notices)
        parts = (given, self._first(candidates, FAMILY_NAME, used, notices))
        if parts != (None, None):
            named = " and ".join(repr(column) for column in parts if column is not None)
            rule = f"joined as CVCSYNC_NAME_ORDER={self.name_order} says"
            name_column = next((column for column, target in field_of.items() if target == "userName"), None)
            if name_column is None:
                notices.append(f"userName: from {named}, {rule}")
            else:
                notices.append(f"userName: column {name_column!r} has priority, then {named} where it is blank")
        op_column = self._first(candidates, OP_TARGET, used, notices, what="an operation")
        status_column = self._first(candidates, STATUS_TARGET, used, notices, what="an employment status")
        if op_column is not None:
            notices.append(f"column {op_column!r} holds each row's operation")
        if status_column is not None:
            notices.append(f"column {status_column!r} holds each row's employment status")
        if op_column is not None and status_column is not None:
            notices.append(
                f"columns {op_column!r} and {status_column!r} both say what to do with a row: a delete in either "
                "makes the row a delete"
            )
        for required in REQUIRED_COLUMNS:
            if required not in field_of.values() and not (required == "userName" and parts != (None, None)):
                notices.append(
                    f"no column fills {required}, which is required: name the column in {ENV_COLUMN_MAP} "
                    f'(e.g. {{"人员编码": "{required}"}})'
                )
        unmapped = tuple(column for column in header if column not in used and column not in ignored)
        if unmapped:
            notices.append(f"columns not used: {', '.join(repr(c) for c in unmapped)}")
        yes_no = status_column is not None and header_key(status_column) in self._presets.yes_no_columns
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
            status_column=status_column,
            status=self._status_yes_no if yes_no else self._status,
            name_parts=parts,
            name_order=self.name_order,
        )

    def _candidates(
        self, header: tuple[str, ...], keys: list[str], preset: str | None, notices: list[str]
    ) -> tuple[list[_Candidate], list[str]]:
        """Every column that could fill a target, ranked; and the columns configured to be ignored."""
        if preset is not None:
            table = self._presets.aliases[preset]
        else:  # auto, when no preset recognises the header, still knows the common names; none knows none
            table = self._presets.common if self.preset == AUTO else {}
        candidates: list[_Candidate] = []
        ignored: list[str] = []
        for position, (column, key) in enumerate(zip(header, keys, strict=True)):
            if key in self.aliases:
                target = self.aliases[key]
                if target is None:
                    ignored.append(column)
                else:
                    candidates.append(_Candidate(column, target, (0, 0, position)))
            elif key in _FIELD_BY_KEY and (key not in table or table[key][0] == _FIELD_BY_KEY[key] or
                                           column.strip() in _DOCUMENT_SPELLINGS):  # fmt: skip
                candidates.append(_Candidate(column, _FIELD_BY_KEY[key], (1, 0, position)))
            elif key in table and key in _FIELD_BY_KEY:  # SuccessFactors' USERNAME is a login: the preset says so
                target, rank = table[key]
                candidates.append(_Candidate(column, target, (2, rank, position)))
                notices.append(f"column {column!r} fills {target} as preset {preset!r} says, not {_FIELD_BY_KEY[key]}")
            elif key in self._presets.op_columns:
                candidates.append(_Candidate(column, OP_TARGET, (1, self._presets.op_columns[key], position)))
            elif key in self._presets.status_columns:
                candidates.append(_Candidate(column, STATUS_TARGET, (1, self._presets.status_columns[key], position)))
            elif key in table:
                target, rank = table[key]
                candidates.append(_Candidate(column, target, (2, rank, position)))
        return candidates, ignored

    @staticmethod
    def _first(
        candidates: list[_Candidate], target: str, used: set[str], notices: list[str], *, what: str = ""
    ) -> str | None:
        """The column that wins ``target`` (one column only: no fallback), the others reported."""
        ranked = sorted((c for c in candidates if c.target == target), key=lambda c: c.rank)
        if not ranked:
            return None
        column = ranked[0].column
        used.add(column)
        if len(ranked) > 1:
            names = ", ".join(repr(c.column) for c in ranked[1:])
            if what:
                notices.append(f"columns {names} also look like {what} column; {column!r} is used")
            else:
                notices.append(f"{target}: columns {column!r} and {names} could fill it; {column!r} has priority, "
                               f"{names} not used")  # fmt: skip
        return column

    def _choose_preset(self, header: tuple[str, ...], keys: list[str], notices: list[str]) -> str | None:
        if self.preset == NONE:
            return None
        if self.preset != AUTO:
            return self.preset
        best: tuple[bool, int, int] | None = None
        chosen = None
        for order, name in enumerate(self._presets.names):
            table, own = self._presets.aliases[name], self._presets.own[name]
            found = [
                table[key][0]
                for column, key in zip(header, keys, strict=True)
                if key in own and key not in self.aliases and column.strip() not in _DOCUMENT_SPELLINGS
            ]
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
