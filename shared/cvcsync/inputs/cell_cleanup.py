"""Clean-up of mapped values, and how a cell that looks like a spreadsheet formula is told and shown.

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

import re
import unicodedata
from typing import Any

_DEPARTMENT_LIST = re.compile(r"[;；]")
_DEPARTMENT_PATH = re.compile(r"[/／\-－>＞]")
_PHONE_NOISE = re.compile(r"[\s\-‐–—.()\[\]]")
_CHINESE_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_NUMBERISH = re.compile(r"[+\-][0-9\s().\-/]*")
RISKY_FIRST = "=+-@ \t\r\n\u3000\xa0"  # a formula's first character, or blank space a strip would remove
_PREVIEW = 32


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


def preview(value: str) -> str:
    shown = repr(value[:_PREVIEW])
    return shown + "…" if len(value) > _PREVIEW else shown


def clean_mobile(value: Any) -> Any:
    """Mobile clean-up for text and JSON numbers; other types (and integers too long for ``str``, no phone number
    either) are left for ``parse_user`` to refuse."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    try:
        return normalise_mobile(str(value))
    except ValueError:
        return value


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
