"""Clean-up of cell values: what every input path does to a value, what only files do, and how formulas are shown.

Every path (file, queue message, HTTP, CLI ``create``) ends in ``records.parse_user``, which applies the
*value rules* below through ``records.clean_field``; nothing else changes a value there.

- Codes (userId, groupId, departId, userMobile, userTel, userEmail) are NFKC-normalised, so full-width text
  becomes ASCII: ``ＢＳ００１`` -> ``BS001``, ``zhaomin＠corp.cn`` -> ``zhaomin@corp.cn``, ``１３８…`` -> ``138…``.
- Excel's ways of keeping a number as text are undone in ids and phones (userId, groupId, departId, userMobile,
  userTel; not e-mails, whose local part may hold an apostrophe): ``="13800138051"`` -> ``13800138051`` and a
  leading apostrophe ``'13800138052`` -> ``13800138052``.
- Scientific notation in the same fields (``1.21235E+09``, ``1.38001E+10``, ``1.2345678901234568e+17``: a digit,
  an optional fraction, ``e``, an exponent; with a fraction or a signed exponent, so an id like ``1E001`` stays an
  id) is refused: Excel turned the column into a number and the lost digits cannot be got back. Two people whose
  ids both became ``1.21235E+09`` are never merged into one.
- A number (a JSON integer, or an integral float such as ``13800138001.0`` from a spreadsheet library) in those
  fields becomes its exact digits; a float beyond 2**53, which has lost digits already, is refused.
- Names (userName, groupName, departName): a line break (CR, LF, CRLF, VT, FF, NEL, U+2028/U+2029) or tab inside
  becomes a space, with a notice (Excel's Alt+Enter); any Unicode space (the ideographic space U+3000, NBSP, …)
  becomes a space; runs of spaces become one; and a space between two Chinese or Japanese characters (Han, kana) is
  removed, as those scripts put none between words: ``黄　强`` -> ``黄强``, ``Li  Wei`` -> ``Li Wei``. Hangul keeps
  its spaces (Korean separates words). Other control characters (NUL, ESC, …) are still refused, and so is a line
  break or tab inside a code: an id or an e-mail address is one line.

File-only steps (``header_mapping``, on the mapped fields; ``SourceRow.data`` keeps what the file said):

- userMobile: separators (spaces, dashes, dots, brackets) and a ``+86``/``0086``/``86`` country prefix are removed
  when what is left is a Chinese mobile number (11 digits, 1[3-9]…); full-width digits, Excel's ``'``/``="…"`` and
  a spreadsheet's ``13800000001.0`` are undone on the way. Anything else (foreign numbers, landlines) is left as it
  was, for ``parse_user``.
- departName, from an alias column (部门, 部门全路径, Supervisory Organization, ...): a list becomes its first entry,
  with a notice, and a path becomes its last segment (CVC has one flat department name; the full path is kept
  nowhere but the raw row, so two 销售部 under different parents look alike: give them departIds). A path's
  separators are ``/``, ``\\``, ``>``, ``-`` and their full-width forms, spaces around them ignored. A list is
  separated by ``;``/``；`` always; by ``,``/``，``/``、`` or a line break only when every entry is itself a path
  (``总部/研发部,总部/质量部``), since a single department name may hold a comma (``Sales, Marketing & PR``) and a
  long name may be wrapped with Alt+Enter. departId from an alias column keeps its first entry the same way. A
  column with the document's own name (departName) is taken literally.
- Spreadsheet formulas: a mapped value starting with ``=``, ``@``, or ``+``/``-`` followed by something other than
  a number, is kept as text (it is data, and nothing here evaluates anything) and flagged in the row's notices, so
  a report can show it escaped (``spreadsheet_safe``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

NFKC_FIELDS = frozenset({"userId", "groupId", "departId", "userMobile", "userTel", "userEmail"})
NUMBER_FIELDS = frozenset({"userId", "groupId", "departId", "userMobile", "userTel"})  # Excel text, numbers
NAME_FIELDS = frozenset({"userName", "groupName", "departName"})
EXACT_FLOAT_LIMIT = 2**53  # below it an integral float is exactly the integer a spreadsheet held

_DEPARTMENT_LIST = re.compile(r"[;；]")
_DEPARTMENT_SOFT_LIST = re.compile(r"[,，、\r\n\u2028\u2029\x85]")
_DEPARTMENT_PATH = re.compile(r"[/／\\＼\-－>＞]")
_PHONE_NOISE = re.compile(r"[\s\-‐–—.()\[\]]")
_CHINESE_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_NUMBERISH = re.compile(r"[+\-][0-9\s().\-/]*")
_EXCEL_TEXT_FORMULA = re.compile(r'=\s*"([^"]*)"')
_SCIENTIFIC = re.compile(r"[0-9](?:\.[0-9]+[eE][+-]?|[eE][+-])[0-9]+")  # a fraction or a signed exponent
LINE_BREAKS = "\r\n\x0b\x0c\x85\u2028\u2029"
_BREAK = re.compile(r"\r\n|[\t\r\n\x0b\x0c\x85\u2028\u2029]")
_OTHER_SPACE = re.compile(r"[\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_SPACE_RUN = re.compile(r" {2,}")
# Han (with its radicals, 々〆〇 and the compatibility ideographs) and kana: scripts written without spaces.
_HAN_KANA = "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_KANA += "\U00020000-\U0003ffff"
RISKY_FIRST = "=+-@ \t\r\n\u3000\xa0"  # a formula's first character, or blank space a strip would remove
_PREVIEW = 32


# The patterns over the Han, kana and Hangul ranges take about 7 ms to compile together: compiled on first use, so
# a cold start whose names hold no space (and no given/family name to join) never pays for them.
@cache
def _space_in_han() -> re.Pattern[str]:
    return re.compile(rf"(?<=[{_HAN_KANA}]) (?=[{_HAN_KANA}])")


@cache
def _name_spacing() -> re.Pattern[str]:
    """What ``tidy_name`` would change: two spaces, or one between Han or kana."""
    return re.compile(rf" {{2}}|(?<=[{_HAN_KANA}]) (?=[{_HAN_KANA}])")


@cache
def _cjk() -> re.Pattern[str]:
    """Han, kana and Hangul."""
    return re.compile(rf"[{_HAN_KANA}\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


# -- formulas ----------------------------------------------------------------------------------------------------


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


# -- the value rules (records.clean_field) ------------------------------------------------------------------------


def undo_excel_text(text: str) -> str:
    """``="0123"`` and ``'0123`` as ``0123``: the two ways a spreadsheet is told a number is text."""
    if text.startswith("'"):
        return text[1:].strip()
    if text.startswith("="):
        found = _EXCEL_TEXT_FORMULA.fullmatch(text)
        if found is not None:
            return found[1].strip()
    return text


def is_scientific(text: str) -> bool:
    """``1.21235E+09``: a number Excel wrote in scientific notation, its lost digits gone for good."""
    return _SCIENTIFIC.fullmatch(text) is not None


def exact_digits(value: float) -> str | None:
    """An integral float's digits (``13800138001.0`` -> ``13800138001``); None when it is not one exactly."""
    if not value.is_integer() or abs(value) >= EXACT_FLOAT_LIMIT:  # NaN and infinities are not integers
        return None
    return str(int(value))


def replace_breaks(text: str) -> tuple[str, str | None]:
    """Line breaks and tabs inside a text as single spaces, and what was replaced ("a line break", "a tab")."""
    found = _BREAK.search(text)
    if found is None:
        return text, None
    what = "a tab" if found[0] == "\t" and not any(c in text for c in LINE_BREAKS) else "a line break"
    return _BREAK.sub(" ", text), what


def tidy_name(text: str) -> str:
    """Unicode spaces as one ASCII space, none between two Han or kana characters (``黄　强`` -> ``黄强``)."""
    if not text.isascii():
        text = _OTHER_SPACE.sub(" ", text)
    if "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    if " " in text and not text.isascii():
        text = _space_in_han().sub("", text)
    return text.strip()


def name_spacing_changes(text: str) -> bool:
    """Would ``tidy_name`` change this printable text? (Two spaces, or a space between Han or kana.)"""
    return " " in text and _name_spacing().search(text) is not None


def has_cjk(text: str) -> bool:
    return _cjk().search(text) is not None


def join_name(given: str, family: str, order: str) -> str:
    """A full name from its parts. ``auto``: family + given with no space when either part holds a Chinese,
    Japanese or Korean character (王 + 小明 -> 王小明), else "Given Family" (Jane + Doe -> Jane Doe);
    ``given-family`` / ``family-given`` fix the order (the space rule stays). One part blank: the other alone."""
    given, family = given.strip(), family.strip()
    if not given or not family:
        return given or family
    cjk = has_cjk(given) or has_cjk(family)
    family_first = order == "family-given" or (order == "auto" and cjk)
    first, second = (family, given) if family_first else (given, family)
    return first + ("" if cjk else " ") + second


# -- file-only steps (header_mapping) -----------------------------------------------------------------------------


def normalise_mobile(value: str) -> str:
    """A Chinese mobile number as 11 digits; any other value stripped but otherwise as it was."""
    text = value.strip()
    if len(text) == 11 and text.isascii() and _CHINESE_MOBILE.fullmatch(text):
        return text
    candidate = text if text.isascii() else unicodedata.normalize("NFKC", text)
    candidate = undo_excel_text(candidate)
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


def is_path(text: str) -> bool:
    return _DEPARTMENT_PATH.search(text) is not None


def first_listed(value: str) -> tuple[str, int]:
    """The first of several departments in one cell, and how many there were (blank entries aside): ``;``/``；``
    always separate; ``,``/``，``/``、`` and line breaks only when every entry is a path."""
    listed = [part.strip() for part in _DEPARTMENT_LIST.split(value)]
    listed = [part for part in listed if part]
    if listed and _DEPARTMENT_SOFT_LIST.search(listed[0]):
        soft = [part.strip() for part in _DEPARTMENT_SOFT_LIST.split(listed[0])]
        soft = [part for part in soft if part]
        if len(soft) > 1 and all(is_path(part) for part in soft):
            listed = soft + listed[1:]
    return (listed[0] if listed else ""), len(listed)


def department_leaf(value: str) -> str:
    """The last segment of a department path (``总部/研发部`` -> ``研发部``, ``A > B > C`` -> ``C``); a bare
    placeholder ``-`` is blank."""
    segments = [part.strip() for part in _DEPARTMENT_PATH.split(value)]
    named = [part for part in segments if part]
    return named[-1] if named else ""


def preview(value: str) -> str:
    shown = repr(value[:_PREVIEW])
    return shown + "…" if len(value) > _PREVIEW else shown


def clean_mobile(value: Any) -> Any:
    """Mobile clean-up for text and numbers (an integral float as its digits); other types (and integers too long
    for ``str``, no phone number either) are left for ``parse_user`` to refuse."""
    if isinstance(value, float):
        digits = exact_digits(value)
        return value if digits is None else normalise_mobile(digits)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return value
    try:
        return normalise_mobile(str(value))
    except ValueError:
        return value


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
