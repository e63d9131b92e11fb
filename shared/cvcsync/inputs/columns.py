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
员工状态, 在职状态; ``header_mapping`` reads its values. A full snapshot's 状态 column goes through the same rule, so a
离职 row comes back as ``"delete"``: the engine treats that user as absent.

Value clean-up and formula flags are ``cell_cleanup``'s, applied by ``header_mapping.HeaderMapping``; the
planner's fast path for plain rows is ``plain_rows.PlainRows``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cvcsync.config import ENV_COLUMN_MAP, ENV_COLUMN_PRESET
from cvcsync.errors import ConfigurationError
from cvcsync.inputs.column_presets import AUTO, NONE, header_key, load_presets
from cvcsync.inputs.header_mapping import HeaderMapping, MappedRow
from cvcsync.inputs.plain_rows import PlainRows
from cvcsync.inputs.records import FIELDS

__all__ = ["ColumnMap", "HeaderMapping", "MappedRow", "PlainRows"]  # what the planner and callers take from here

OP_TARGET = "op"
FALLBACK_FIELDS = ("userEmail", "userMobile", "userTel", "userAvatarUrl")
REQUIRED_COLUMNS = ("userId", "userName")  # groupId/groupName usually come from configuration
CACHE_SIZE = 256

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
