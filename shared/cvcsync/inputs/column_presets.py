"""The column presets shipped in ``presets/columns.json``, loaded and checked once; and the status vocabulary.

Each preset (wecom, dingtalk, hr, beisen, moka, successfactors, workday) maps header names to targets, each
target's names in priority order (企业邮箱 before 个人邮箱, 员工编号 before 工号, ...). A target is a document field,
``status`` (the employment status column), or ``givenName``/``familyName`` (a name split in two columns). The
``common`` section lists names every preset knows after its own (name parts, department path columns); the
operation and status sections list their columns (known whatever the preset) and their values. Header names are
compared by ``header_key``, status values by ``status_key``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from cvcsync.errors import ConfigurationError
from cvcsync.inputs.records import FIELDS

OP_UPSERT = "upsert"
OP_DELETE = "delete"
AUTO = "auto"
NONE = "none"
PRESET_FILE = "presets/columns.json"

OP_TARGET = "op"
STATUS_TARGET = "status"
GIVEN_NAME = "givenName"
FAMILY_NAME = "familyName"
NAME_PARTS = (GIVEN_NAME, FAMILY_NAME)
TARGETS = (*FIELDS, STATUS_TARGET, *NAME_PARTS)  # what a preset or a configured alias may name (and OP_TARGET)
ACTIVE = "active"  # a status value: the person is in service (upsert)
GONE = "gone"  # the person has left (delete)
NAME_ORDERS = (AUTO, "given-family", "family-given")
COMMON_RANK = 1000  # common names rank after every preset's own

_NAME_NOISE = re.compile(r"[\s_\-*]|\((?:必填|选填|可选|required|optional)\)")
_VALUE_NOISE = re.compile(r"[\s_\-]")


def header_key(name: str) -> str:
    """How column names are compared: NFKC (full-width to ASCII), case-folded, without spaces, ``_``, ``-``, ``*``
    and required/optional markers such as ``(必填)``."""
    return _NAME_NOISE.sub("", unicodedata.normalize("NFKC", str(name)).casefold())


def status_key(value: str) -> str:
    """How status values are compared: NFKC, case-folded, without spaces, ``_`` and ``-`` (On Leave = on_leave)."""
    return _VALUE_NOISE.sub("", unicodedata.normalize("NFKC", value).casefold())


@dataclass(frozen=True)
class StatusVocabulary:
    """Status values: key -> OP_UPSERT/OP_DELETE, their spellings for messages, and the in-service spellings the
    fast path may take as they are."""

    values: dict[str, str]
    active: tuple[str, ...]
    gone: tuple[str, ...]
    plain_active: frozenset[str]

    def describe(self) -> str:
        return f"in service: {', '.join(self.active)}; gone: {', '.join(self.gone)}"


def status_vocabulary(labelled: Iterable[tuple[str, str]]) -> StatusVocabulary:
    """The vocabulary of (value, ACTIVE|GONE) pairs; a later pair for the same value wins (configuration over the
    shipped values)."""
    chosen: dict[str, tuple[str, str]] = {}
    for label, meaning in labelled:
        key = status_key(label)
        chosen.pop(key, None)  # re-inserted: a value moved to the other group is listed there, last
        chosen[key] = (label, meaning)
    values = {key: (OP_UPSERT if meaning == ACTIVE else OP_DELETE) for key, (_, meaning) in chosen.items()}
    active = tuple(label for label, meaning in chosen.values() if meaning == ACTIVE)
    gone = tuple(label for label, meaning in chosen.values() if meaning == GONE)
    plain = set()
    for label in active:
        for form in (label, label.casefold(), label.lower(), label.upper(), label.title(), label.capitalize()):
            if values.get(status_key(form)) == OP_UPSERT and form == form.strip():
                plain.add(form)
    return StatusVocabulary(values, active, gone, frozenset(plain))


def check_status_values(raw: Any, source: str) -> list[tuple[str, str]]:
    """Configured status values (a JSON object of value -> "active" | "gone") as pairs, refusing anything else."""
    if not isinstance(raw, dict):
        raise ConfigurationError(
            f'{source} must be a JSON object of status value -> "active" or "gone", got {type(raw).__name__}'
        )
    pairs: list[tuple[str, str]] = []
    for value, meaning in raw.items():
        if not isinstance(value, str) or not status_key(value):
            raise ConfigurationError(f"{source}: status values must be non-empty text, got {value!r}")
        if not isinstance(meaning, str) or meaning.strip().lower() not in (ACTIVE, GONE):
            raise ConfigurationError(f'{source}: {value!r} maps to {meaning!r}; expected "active" or "gone"')
        pairs.append((value.strip(), meaning.strip().lower()))
    return pairs


@dataclass(frozen=True)
class Presets:
    """``presets/columns.json``, checked: per preset, header key -> (target, rank) with the common names after its
    own, and the keys that are its own (what ``auto`` counts); the operation and status columns and values."""

    names: tuple[str, ...]
    titles: dict[str, str]
    aliases: dict[str, dict[str, tuple[str, int]]]
    own: dict[str, frozenset[str]]
    common: dict[str, tuple[str, int]]  # what ``auto`` knows when no preset recognises the header
    op_columns: dict[str, int]
    op_values: dict[str, str]
    status_columns: dict[str, int]
    status_pairs: tuple[tuple[str, str], ...]
    yes_no_columns: frozenset[str]
    yes_no_pairs: tuple[tuple[str, str], ...]

    @property
    def choices(self) -> tuple[str, ...]:
        return (AUTO, NONE, *self.names)


def _table(name: str, fields: Mapping[str, list[str]], offset: int, table: dict[str, tuple[str, int]]) -> None:
    for target, columns in fields.items():
        if target not in TARGETS:
            raise ConfigurationError(f"{PRESET_FILE}: preset {name!r} maps to unknown target {target!r}")
        for rank, column in enumerate(columns, start=offset):
            key = header_key(column)
            if key in table and table[key][0] != target:
                if table[key][1] < COMMON_RANK <= rank:
                    continue  # a preset's own name wins over a common one
                raise ConfigurationError(f"{PRESET_FILE}: preset {name!r} maps {column!r} to two targets")
            table.setdefault(key, (target, rank))


@functools.cache
def load_presets() -> Presets:
    """Read and check the preset data shipped with the package (once per process)."""
    raw = orjson.loads((resources.files("cvcsync.inputs") / PRESET_FILE).read_bytes())
    names: list[str] = []
    titles: dict[str, str] = {}
    aliases: dict[str, dict[str, tuple[str, int]]] = {}
    own: dict[str, frozenset[str]] = {}
    common = raw["common"]["fields"]
    common_table: dict[str, tuple[str, int]] = {}
    _table("common", common, COMMON_RANK, common_table)
    for name, preset in raw["presets"].items():
        table: dict[str, tuple[str, int]] = {}
        _table(name, preset["fields"], 0, table)
        own[name] = frozenset(table)
        _table(name, common, COMMON_RANK, table)
        names.append(name)
        titles[name] = str(preset.get("title", name))
        aliases[name] = table
    operation = raw["operation"]
    op_columns = {header_key(column): rank for rank, column in enumerate(operation["columns"])}
    op_values: dict[str, str] = {}
    for op in (OP_UPSERT, OP_DELETE):
        for value in operation[op]:
            op_values[str(value).casefold()] = op
    status = raw["status"]
    status_columns = {header_key(column): rank for rank, column in enumerate(status["columns"])}
    pairs = tuple((str(v), meaning) for meaning in (ACTIVE, GONE) for v in status[meaning])
    yes_no = tuple((str(v), meaning) for meaning, key in ((ACTIVE, "yes"), (GONE, "no")) for v in status[key])
    return Presets(
        tuple(names),
        titles,
        aliases,
        own,
        common_table,
        op_columns,
        op_values,
        status_columns,
        pairs,
        frozenset(header_key(column) for column in status["yes_no_columns"]),
        yes_no,
    )
