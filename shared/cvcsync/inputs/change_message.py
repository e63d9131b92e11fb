"""A user-change message as a whole, before its changes are read one by one.

Its body decoded within the transports' limits (size, UTF-8, no NUL, JSON, nesting) and told apart by its shape:
one change or bare user, a batch ``{"changes": [...]}``, or a list of either. Whatever is wrong is a
``ChangeProblem``; ``MalformedMessage`` carries them all. A problem never quotes a value that could be personal data:
``shown`` and ``field_name`` show a value or a key only when it is short, plain and cannot be one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events.fields import json_type, keys_seen

SPEC_VERSION = "1"
MAX_BODY_BYTES = 256 * 1024  # MNS's and SQS's own message limit: a larger body came from somewhere else
MAX_CHANGES = 1000
MAX_NESTING = 8  # a batch, its list, a change, its user, a value: 5; deeper is not a user change

BATCH_FIELDS = frozenset({"specversion", "changes"})
# Keys that make an object a change rather than a bare user (``source`` is too common a word to count).
CHANGE_MARKERS = ("type", "action", "specversion", "user", "eventId", "occurredAt")
_SHOWN_PROBLEMS = 10
_DIGIT_RUN = re.compile(r"[0-9]{5}")


@dataclass(frozen=True)
class ChangeProblem:
    """What is wrong, and where: ``change`` is the 1-based index in the message (``None``: the body as a whole),
    ``field`` a dotted path (``user.userName``), empty when the change as a whole is wrong."""

    change: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"change {self.change}: " if self.change is not None else ""
        what = f"{self.field.replace('.', ': ')}: " if self.field else ""
        return f"{where}{what}{self.reason}"


class MalformedMessage(InvalidInputError):
    """A message body that can never be applied as it is: dead-letter it at once, never retry it.

    The message names each change, field and reason (the first ``10``; ``problems`` holds them all).
    """

    code = "MalformedMessage"
    retryable = False

    def __init__(self, problems: Sequence[ChangeProblem], *, message_id: str | None = None) -> None:
        self.problems = list(problems)
        self.message_id = message_id
        text = "; ".join(str(problem) for problem in self.problems[:_SHOWN_PROBLEMS])
        if len(self.problems) > _SHOWN_PROBLEMS:
            text += f"; and {len(self.problems) - _SHOWN_PROBLEMS} more problems"
        super().__init__(text or "malformed message")

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "messageId": self.message_id,
            "problems": [{"change": p.change, "field": p.field, "reason": p.reason} for p in self.problems],
        }


def _malformed(field: str, reason: str, message_id: str | None) -> MalformedMessage:
    return MalformedMessage([ChangeProblem(None, field, reason)], message_id=message_id)


def decode_body(body: Any, message_id: str | None) -> Any:
    """JSON text (bytes or str, at most ``MAX_BODY_BYTES``) decoded; a decoded body checked for nesting."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        _check_size(len(data), message_id)
        if b"\x00" in data:
            raise _malformed("body", "contains a NUL byte", message_id)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed("body", f"is not UTF-8 text (bad byte at offset {exc.start})", message_id) from None
    elif isinstance(body, str):
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError:
            raise _malformed("body", "is not valid Unicode text (it holds a lone surrogate)", message_id) from None
        _check_size(size, message_id)
        if "\x00" in body:
            raise _malformed("body", "contains a NUL byte", message_id)
        text = body
    elif isinstance(body, (Mapping, list)):
        _check_nesting(body, message_id)
        return body
    else:
        raise _malformed("body", f"must be JSON text, an object or a list, not {json_type(body)}", message_id)
    text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows tool: harmless, and orjson refuses it
    if not text.strip():
        raise _malformed("body", "is empty", message_id)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg or "recursion" in exc.msg:
            raise _malformed("body", f"is nested deeper than {MAX_NESTING} levels", message_id) from None
        # orjson's messages name the kind of error and never quote the text, which may hold personal data.
        raise _malformed("body", f"is not JSON ({exc.msg} at character {exc.pos})", message_id) from None
    _check_nesting(document, message_id)
    return document


def _check_size(size: int, message_id: str | None) -> None:
    if size > MAX_BODY_BYTES:
        raise _malformed("body", f"is {size} bytes; at most {MAX_BODY_BYTES} allowed", message_id)


def _check_nesting(document: Any, message_id: str | None) -> None:
    """Refuse documents nested deeper than ``MAX_NESTING`` (without recursion: a cyclic mapping terminates too)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            raise _malformed("body", f"is nested deeper than {MAX_NESTING} levels", message_id)
        stack.extend((child, depth + 1) for child in children)


def message_items(document: Any, message_id: str | None) -> list[Any]:
    """The changes (or bare users) of a decoded body, by its shape; body-level problems raise at once."""
    if isinstance(document, Mapping):
        if "changes" in document:
            return _batch_items(document, message_id)
        if any(key in document for key in CHANGE_MARKERS) or _is_user(document):
            return [document]
        raise _malformed(
            "body",
            "is not a user change: expected an object with type (upsert or delete), a batch {changes: [...]}, "
            f"a user object with userId and userName, or a list of these; keys seen {keys_seen(document)}",
            message_id,
        )
    if isinstance(document, list):
        return _list_items(document, None, message_id)
    raise _malformed("body", f"is a JSON {json_type(document)}, not a change object or a list of changes", message_id)


def _batch_items(batch: Mapping[str, Any], message_id: str | None) -> list[Any]:
    problems = [
        ChangeProblem(None, field_name(key), 'is not a field of a batch (it holds "changes" and "specversion")')
        for key in batch
        if key not in BATCH_FIELDS
    ]
    version = version_problem(batch.get("specversion"))
    if version:
        problems.append(ChangeProblem(None, "specversion", version))
    if problems:
        raise MalformedMessage(problems, message_id=message_id)
    return _list_items(batch.get("changes"), "changes", message_id)


def _list_items(items: Any, field: str | None, message_id: str | None) -> list[Any]:
    name = field or "body"
    if not isinstance(items, list):
        raise _malformed(name, f"must be an array of changes, got {json_type(items)}", message_id)
    if not items:
        raise _malformed(name, "holds no change", message_id)
    if len(items) > MAX_CHANGES:
        raise _malformed(name, f"holds {len(items)} changes; at most {MAX_CHANGES} in one message", message_id)
    return items


def _is_user(obj: Mapping[Any, Any]) -> bool:
    return any(key in obj for key in ("userId", "userName", "UserId", "UserName"))


def version_problem(value: Any) -> str | None:
    if value is None or value == SPEC_VERSION:
        return None
    return f'is {shown(value)}; this reader knows version "{SPEC_VERSION}" only'


def shown(value: Any) -> str:
    """A value that is not supposed to be personal data (a ``type``, a ``specversion``), shown only when it cannot
    be any: short, made of letters, ASCII digits and ``_.-``, with no run of five digits and no ``@``."""
    if isinstance(value, str):
        return repr(value) if _is_safe_name(value, 24) else f"a text of {len(value)} characters"
    return f"a JSON {json_type(value)}"


def field_name(key: Any) -> str:
    """An unknown key, shown under the same rule as ``shown`` (a key could be an e-mail address or a number)."""
    name = str(key)
    return name if _is_safe_name(name, 40) else f"<a field name of {len(name)} characters>"


def _is_safe_name(text: str, limit: int) -> bool:
    return (
        0 < len(text) <= limit
        and all(ch.isalpha() or ch in "0123456789_.-" for ch in text)
        and _DIGIT_RUN.search(text) is None
    )
