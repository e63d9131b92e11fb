"""The column presets shipped in ``presets/columns.json`` (wecom, dingtalk, hr), loaded and checked once.

Each preset maps header names to document fields, each field's aliases in priority order (企业邮箱 before 个人邮箱,
员工编号 before 工号, ...); the file also holds the operation column's names and values. Header names are compared by
``header_key``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

import orjson

from cvcsync.errors import ConfigurationError
from cvcsync.inputs.records import FIELDS

OP_UPSERT = "upsert"
OP_DELETE = "delete"
AUTO = "auto"
NONE = "none"
PRESET_FILE = "presets/columns.json"

_NAME_NOISE = re.compile(r"[\s_\-*]|\((?:必填|选填|可选|required|optional)\)")


def header_key(name: str) -> str:
    """How column names are compared: NFKC (full-width to ASCII), case-folded, without spaces, ``_``, ``-``, ``*``
    and required/optional markers such as ``(必填)``."""
    return _NAME_NOISE.sub("", unicodedata.normalize("NFKC", str(name)).casefold())


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
