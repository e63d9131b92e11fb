"""The one user model, and the validation every input path shares (files, queue messages, HTTP).

Field names are the API document's: camelCase going in (CreateUser's ``UserInfo``), PascalCase coming back
(GetUser, ListUsers). A bad record raises ``RecordError`` naming each field and why, with the line it came from;
unknown fields are kept as notices on the record rather than silently dropped.

Every value is first cleaned up by ``clean_field``, the same on every path (the rules are in ``cell_cleanup``'s
docstring: NFKC for codes, Excel's text marks and scientific notation, numbers as exact digits, spaces and line
breaks in names). Messages show enough of a value to find it: a short preview of ids and departments, and a mask
that says it is one for personal data (``(masked: 138****0110)``).

CVC publishes no length limits; the ones here are cvc-sync's own, generous enough for real directories and
tight enough to stop a column shift (a whole address landing in ``userId``) before it reaches CVC.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.cell_cleanup import (
    NAME_FIELDS,
    NFKC_FIELDS,
    NUMBER_FIELDS,
    exact_digits,
    is_scientific,
    name_spacing_changes,
    preview,
    replace_breaks,
    tidy_name,
    undo_excel_text,
)
from cvcsync.logs import mask_email, mask_mobile

REQUIRED_FIELDS = ("userId", "userName", "groupId", "groupName")
OPTIONAL_FIELDS = ("departId", "departName", "userEmail", "userTel", "userMobile", "userAvatarUrl")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

MAX_LENGTH = {
    "userId": 64,
    "userName": 128,
    "groupId": 64,
    "groupName": 128,
    "departId": 64,
    "departName": 256,
    "userEmail": 128,
    "userTel": 32,
    "userMobile": 32,
    "userAvatarUrl": 1024,
}

_PASCAL_TO_CAMEL = {name[0].upper() + name[1:]: name for name in FIELDS}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CODE_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # and the Unicode line breaks: a code is one line
_SURROGATE = re.compile("[\ud800-\udfff]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{2,30}$")
_PERSONAL = {"userEmail": mask_email, "userMobile": mask_mobile, "userTel": mask_mobile}


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class RecordError(InvalidInputError):
    """A record that cannot be sent to CVC; says where it came from, which fields are wrong and why."""

    code = "InvalidRecord"

    def __init__(self, problems: list[FieldProblem], *, position: str | None = None, user_id: str | None = None):
        self.problems = problems
        self.position = position
        self.user_id = user_id
        where = f"{position}: " if position else ""
        who = f"user {user_id!r}: " if user_id else ""
        super().__init__(where + who + "; ".join(str(p) for p in problems))

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "position": self.position,
            "userId": self.user_id,
            "problems": [{"field": p.field, "reason": p.reason} for p in self.problems],
        }


@dataclass(frozen=True, slots=True)
class User:
    """A CVC user, validated. Empty optional fields are ``""`` and are not sent."""

    user_id: str
    user_name: str
    group_id: str
    group_name: str
    depart_id: str = ""
    depart_name: str = ""
    user_email: str = ""
    user_tel: str = ""
    user_mobile: str = ""
    user_avatar_url: str = ""
    notices: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_cvc(self) -> dict[str, str]:
        """CreateUser's camelCase entry, leaving out empty optional fields."""
        values = (
            self.user_id,
            self.user_name,
            self.group_id,
            self.group_name,
            self.depart_id,
            self.depart_name,
            self.user_email,
            self.user_tel,
            self.user_mobile,
            self.user_avatar_url,
        )
        return {name: value for name, value in zip(FIELDS, values, strict=True) if value}

    def to_json(self) -> bytes:
        """``to_cvc`` as compact JSON, fields always in the document's order (so equal users give equal bytes)."""
        return orjson.dumps(self.to_cvc())

    def content_hash(self) -> str:
        """Stable digest of what CVC holds for this user: equal hashes mean no CreateUser is needed."""
        return content_hash(self.to_json())

    def masked(self) -> dict[str, str]:
        """The record as it may appear in a log line or a report: mobile, phone and e-mail masked."""
        out = self.to_cvc()
        for name, mask in _PERSONAL.items():
            if name in out:
                out[name] = mask(out[name]) or ""
        return out


def content_hash(user_json: bytes) -> str:
    return hashlib.blake2b(user_json, digest_size=16).hexdigest()


def clean_field(name: str, value: Any, problems: list[FieldProblem], notices: list[str]) -> str:
    """One field's value as text, cleaned up by the rules every path shares (``cell_cleanup``'s docstring); what
    cannot be used is added to ``problems``, what was changed and should be said to ``notices``."""
    if value is None:
        return ""
    if isinstance(value, float) and name in NUMBER_FIELDS and math.isfinite(value):
        digits = exact_digits(value)
        if digits is None:
            kind = "too large to be exact" if value.is_integer() else "with a fraction"
            problems.append(FieldProblem(name, f"is a number {kind} ({_shown(name, repr(value))}): send it as text"))
            return ""
        value = digits
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(FieldProblem(name, f"must be text, got {type(value).__name__}"))
        return ""
    try:
        text = str(value).strip()
    except ValueError:  # an integer beyond Python's 4300-digit conversion limit
        problems.append(FieldProblem(name, "is a number too large to be text"))
        return ""
    if _SURROGATE.search(text):  # a JSON "\ud800" escape without its pair: no UTF-8 (nor CVC) can hold it
        problems.append(FieldProblem(name, "is not valid Unicode text (a lone surrogate escape)"))
        return ""
    if name in NAME_FIELDS:
        text = _clean_name(name, text, problems, notices)
    else:
        if name in NFKC_FIELDS and not text.isascii():
            text = unicodedata.normalize("NFKC", text).strip()
        if name in NUMBER_FIELDS and text[:1] in ("'", "="):
            text = undo_excel_text(text)
        if name in NUMBER_FIELDS and is_scientific(text):
            problems.append(
                FieldProblem(
                    name,
                    # The same fix for CSV (Excel wrote 1.23457E+17) and .xlsx (a number cell): the digits are gone.
                    f"Excel turned this column into a number ({_shown_number(name, text)}), which loses digits: "
                    "format the column as Text, enter the ids again and export again",
                )
            )
            return text
        if _CODE_CONTROL.search(text):
            problems.append(
                FieldProblem(name, f"contains control characters (line breaks, tabs or NUL): {_shown(name, text)}")
            )
    limit = MAX_LENGTH[name]
    if len(text) > limit:
        problems.append(FieldProblem(name, f"is {len(text)} characters long; at most {limit} allowed"))
    return text


def _clean_name(name: str, text: str, problems: list[FieldProblem], notices: list[str]) -> str:
    text, replaced = replace_breaks(text)
    if replaced:
        notices.append(f"{name}: {replaced} inside the value was replaced by a space")
    if _CONTROL.search(text):
        reason = f"contains control characters (NUL or other invisible codes): {preview(text)}"
        problems.append(FieldProblem(name, reason))
    return tidy_name(text)


def _shown(name: str, text: str) -> str:
    """A value as an error message may show it: masked, and saying so, for personal data; else a short preview."""
    if name in _PERSONAL:
        return f"masked: {_PERSONAL[name](text) or '***'}"
    return preview(text)


def _shown_number(name: str, text: str) -> str:
    """Scientific notation as shown: in full for ids, with the digits hidden for phones (``masked: 1.38…E+10``)."""
    if name not in _PERSONAL:
        return text
    at = max(text.find("e"), text.find("E"))
    return f"masked: {text[: min(at, 4)]}…{text[at:]}"


def _check_formats(values: dict[str, str], problems: list[FieldProblem]) -> None:
    refused = {p.field for p in problems}
    email = values.get("userEmail")
    if email and "userEmail" not in refused and not _EMAIL.match(email):
        problems.append(FieldProblem("userEmail", f"is not an e-mail address ({_shown('userEmail', email)})"))
    for name in ("userMobile", "userTel"):
        phone = values.get(name)
        if phone and name not in refused and not _PHONE.match(phone):
            problems.append(FieldProblem(name, f"is not a phone number ({_shown(name, phone)}): digits, +, -, spaces"))
    url = values.get("userAvatarUrl")
    if url and "userAvatarUrl" not in refused and not url.startswith(("http://", "https://")):
        problems.append(FieldProblem("userAvatarUrl", "must start with http:// or https://"))


_LIMITS = tuple((name, MAX_LENGTH[name]) for name in FIELDS)
_ID_FLAGS = "'=0123456789"  # how an id Excel's text mark or scientific notation would change starts


_NO_DEFAULTS: Mapping[str, str] = {}


def fast_user_json(fields: Mapping[str, Any], defaults: Mapping[str, str] | None = None) -> tuple[str, bytes] | None:
    """The common case in one pass: ``(userId, CreateUser JSON)`` equal to ``parse_user(...).to_json()``.

    Returns None whenever anything would need a word of explanation (a non-text value, an unknown key, a value
    out of bounds or of the wrong shape): the caller then runs ``parse_user``, which explains. Planning a million
    rows spends most of its time here, so this path does the minimum and leaves the messages to the slow one.
    """
    for name in fields:
        if name not in MAX_LENGTH:
            return None
    defaults = defaults or _NO_DEFAULTS
    out: dict[str, str] = {}
    for name, limit in _LIMITS:
        value = fields.get(name)
        if value is None or value == "":
            value = defaults.get(name)
            if not value:
                continue
        if value.__class__ is not str:
            return None
        value = value.strip()
        if not value:
            value = defaults.get(name, "").strip()
            if not value:
                continue
        if len(value) > limit:
            return None
        out[name] = value
    if len(out) < 4 or "groupName" not in out or "userId" not in out or "userName" not in out or "groupId" not in out:
        return None
    joined = PLAIN_SEPARATOR.join(out.values())
    if not joined.isprintable() or name_spacing_changes(joined):
        return None  # a control character, a Unicode space, a line break, spaces tidy_name would change
    # Ids: NFKC, Excel's text marks or scientific notation, which parse_user cleans up or explains. (A phone that
    # matches _PHONE below is ASCII digits and punctuation: none of these apply.)
    for code in (out["userId"], out["groupId"], out.get("departId")):
        if code is not None and (
            not code.isascii()
            or (code[0] in _ID_FLAGS and (code[0] in "'=" or (("e" in code or "E" in code) and is_scientific(code))))
        ):
            return None
    email = out.get("userEmail")
    if email is not None and (not email.isascii() or not _EMAIL.match(email)):
        return None
    for phone in (out.get("userMobile"), out.get("userTel")):
        if phone is not None and not _PHONE.match(phone):
            return None
    url = out.get("userAvatarUrl")
    if url is not None and not url.startswith(("http://", "https://")):
        return None
    try:
        return out["userId"], orjson.dumps(out)
    except orjson.JSONEncodeError:  # a lone surrogate: parse_user names the field
        return None


# -- plain records: the planner's fastest path ---------------------------------------------------------------------
# A *plain* value is one ``parse_user`` keeps exactly as it is and accepts: stripped already, printable (so no control
# character, lone surrogate, or whitespace but the ASCII space), within its limit, of its field's shape, and holding
# nothing JSON escapes (``"``, ``\\``). A record of plain values is CreateUser JSON by putting them between constant
# pieces; the values of one record are checked together, joined by PLAIN_SEPARATOR, with ``str.isprintable``, two
# ``in`` tests and one regex. Whatever is not plain goes to ``fast_user_json``/``parse_user``, which clean up and
# explain.

PLAIN_SEPARATOR = "\u241f"  # SYMBOL FOR UNIT SEPARATOR: no field pattern matches it, so a value holding it is not plain


def _ascii_class(excluded: str) -> str:
    """A regex class of the printable ASCII characters but ``excluded``, as ranges (``[!-&(-~]``)."""
    kept = [c for c in range(0x20, 0x7F) if chr(c) not in excluded]
    runs: list[list[int]] = []
    for code in kept:
        if runs and runs[-1][1] == code - 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    spans = (re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in runs)
    return "[" + "".join(spans) + "]"


# An id starting like Excel's scientific notation (is_scientific), up to the end of its value.
_SCIENTIFIC_AHEAD = rf"(?![0-9](?:\.[0-9]+[eE][+-]?|[eE][+-])[0-9]+(?:{PLAIN_SEPARATOR}|\Z))"


def plain_value_pattern(name: str, *, not_first: str = "") -> str:
    """A regex for one non-empty plain value of ``name`` inside PLAIN_SEPARATOR-joined text that has passed
    ``plain_text``; ``not_first``: characters it may not start with either (a spreadsheet formula's, say). Codes
    (ids, phones, e-mail) are plain in printable ASCII only, which NFKC leaves as it is; ids and phones not with
    Excel's ``'`` in front, nor in scientific notation."""
    limit = MAX_LENGTH[name]
    sep = PLAIN_SEPARATOR
    first = re.escape(" " + not_first)
    within = rf"(?=[^{sep}]{{1,{limit}}}(?:{sep}|\Z))"  # the length, for patterns that do not count
    if name == "userEmail":  # _EMAIL, for text whose only whitespace can be the space
        part = _ascii_class("@ ")
        return rf"{within}{_ascii_class('@ ' + not_first)}{part}*@{part}+\.{part}+"
    if name in ("userMobile", "userTel"):  # _PHONE (at most 32 characters), without a trailing space
        plus = "" if "+" in not_first else r"\+?"
        return rf"{plus}[0-9][0-9 ()\-]{{1,29}}[0-9()\-]"
    if name == "userAvatarUrl":
        return rf"{within}https?://[^{sep}]*(?<! )"
    if name in NFKC_FIELDS:  # userId, groupId, departId
        first_code = _ascii_class(" ='" + not_first)
        return rf"{_SCIENTIFIC_AHEAD}{first_code}{_ascii_class('')}{{0,{limit - 1}}}(?<! )"
    return rf"[^{sep}{first}][^{sep}]{{0,{limit - 1}}}(?<! )"  # the lookbehind: no trailing space


def plain_text(joined: str) -> bool:
    """The checks a record's joined values pass together: printable, nothing JSON escapes."""
    return joined.isprintable() and '"' not in joined and "\\" not in joined


def plain_default(name: str, defaults: Mapping[str, Any]) -> str | None:
    """The value ``fast_user_json`` fills an empty ``name`` with: ``""`` for none; None when it is not plain."""
    value = defaults.get(name)
    if not value:
        return ""
    if value.__class__ is not str:
        return None
    value = value.strip()
    if value and not (plain_text(value) and re.fullmatch(plain_value_pattern(name), value)):
        return None
    return value


def json_pieces(names: tuple[str, ...], filled: Mapping[str, str]) -> list[str] | None:
    """The constant text around plain values of ``names`` (in FIELDS order) that makes the JSON ``fast_user_json``
    would: ``pieces[0] + values[0] + pieces[1] + ... + values[-1] + pieces[-1]``. ``filled`` holds the values of the
    other fields (defaults). None when a required field would be missing."""
    pieces = ["{"]
    for name in FIELDS:
        if name in names:
            pieces[-1] += f'"{name}":"'
            pieces.append('",')
        elif filled.get(name):
            pieces[-1] += f'"{name}":' + orjson.dumps(filled[name]).decode() + ","
        elif name in REQUIRED_FIELDS:
            return None
    pieces[-1] = pieces[-1].removesuffix(",") + "}"
    return pieces


def normalise_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the document's camelCase and GetUser's PascalCase; leave other keys as they are."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip()
        out[_PASCAL_TO_CAMEL.get(name, name)] = value
    return out


def parse_user(
    raw: Mapping[str, Any],
    *,
    position: str | None = None,
    defaults: Mapping[str, str] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> User:
    """Validate one record into a ``User`` or raise ``RecordError`` listing every problem at once.

    ``defaults`` fill empty fields (the enterprise's groupId/groupName, which HR exports rarely carry);
    ``ignore`` names extra keys the caller knows about (an operation column, ``CreateTime``) so they are not
    reported as unknown.
    """
    if not isinstance(raw, Mapping):
        raise RecordError([FieldProblem("(record)", f"must be an object, got {type(raw).__name__}")], position=position)
    record = normalise_keys(raw)
    problems: list[FieldProblem] = []
    notices: list[str] = []
    values: dict[str, str] = {}
    for name in FIELDS:
        value = clean_field(name, record.get(name), problems, notices)
        if not value and defaults:
            value = str(defaults.get(name, "") or "").strip()
        values[name] = value
    for name in REQUIRED_FIELDS:
        if not values[name] and not any(p.field == name for p in problems):
            problems.append(FieldProblem(name, "is required and empty" if name in record else "is required"))
    _check_formats(values, problems)
    user_id = values["userId"] or None
    if problems:
        raise RecordError(problems, position=position, user_id=user_id)
    unknown = sorted(k for k in record if k not in FIELDS and k not in ignore and k != "CreateTime")
    notices.extend(f"unknown field {k!r} ignored" for k in unknown)
    return User(
        values["userId"],
        values["userName"],
        values["groupId"],
        values["groupName"],
        values["departId"],
        values["departName"],
        values["userEmail"],
        values["userTel"],
        values["userMobile"],
        values["userAvatarUrl"],
        tuple(notices),
    )


def user_from_cvc(info: Mapping[str, Any]) -> dict[str, Any]:
    """GetUser/ListUsers' PascalCase ``UserInfo`` as the document's camelCase fields (plus ``createTime``)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key == "CreateTime":
            out["createTime"] = value
        elif key in _PASCAL_TO_CAMEL:
            out[_PASCAL_TO_CAMEL[key]] = value
        else:
            out[key] = value
    return out
