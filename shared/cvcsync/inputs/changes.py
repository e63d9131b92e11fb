"""The user-change event: what one queue message asks cvc-sync to do, in a documented, versioned format.

Version ``"1"`` (JSON Schema: ``docs/user-change-event.schema.json``; fields: ``docs/user-change-event.md``):

* a change: ``{"specversion": "1", "type": "upsert" | "delete", "user": {...}, "userId", "eventId",
  "occurredAt", "source"}``; ``action`` is accepted for ``type`` (the FC samples' spelling), not both;
* a batch: ``{"changes": [<change>, ...]}``, at most ``change_message.MAX_CHANGES``;
* for ease of integration: a bare user object (the API document's ``UserInfo``: ``userId`` and ``userName``, no
  ``type``) is an upsert, and a JSON list of changes or of user objects is a batch without its wrapper.

A field set to ``null`` is as if it were absent (``type`` and ``action`` excepted: they say what to do).
``occurredAt`` is an RFC 3339 time with a zone or epoch milliseconds; a change without one takes the transport's
time (``received_at``), else ``None``. Beyond the schema, the reader also accepts what ``records.parse_user`` always
has: numbers for user fields, GetUser's PascalCase names, unknown user fields (kept as notices).

Batches are atomic: one bad change makes the whole message malformed, and nothing in it is applied. A message is
the unit every transport acknowledges, retries and dead-letters, so a half-applied message could only be
dead-lettered whole, and replaying that dead letter would apply the good half again. A producer batches changes
that belong together (a move is a delete of the old id and an upsert of the new one), so half a batch is a state
nobody asked for. And a bad change in a message is a producer's bug rather than a typing slip in an HR export (where
bad rows are isolated instead), so the rest of the message is suspect too. ``MalformedMessage`` lists every
problem at once, so the producer can fix them all in one go.

Nothing here performs I/O; nothing echoes a personal value (e-mail addresses and phone numbers are masked by
``records.parse_user``; other values are never quoted, bar a ``type`` or ``specversion`` too short and plain to be
personal data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from cvcsync.inputs.change_message import (
    CHANGE_MARKERS,
    ChangeProblem,
    MalformedMessage,
    decode_body,
    field_name,
    message_items,
    shown,
    version_problem,
)
from cvcsync.inputs.events.fields import EPOCH_MILLIS_MAX, EPOCH_MILLIS_MIN, epoch_millis, iso_instant, json_type
from cvcsync.inputs.records import (
    MAX_LENGTH,
    FieldProblem,
    RecordError,
    User,
    clean_field,
    normalise_keys,
    parse_user,
)

__all__ = [
    "CHANGE_FIELDS",
    "DELETE",
    "UPSERT",
    "ChangeOp",
    "ChangeProblem",
    "MalformedMessage",
    "UserChange",
    "looks_like_change_body",
    "parse_changes",
]

ChangeOp = Literal["upsert", "delete"]
UPSERT: ChangeOp = "upsert"
DELETE: ChangeOp = "delete"

MAX_EVENT_ID_LENGTH = 128
MAX_SOURCE_LENGTH = 256

CHANGE_FIELDS = frozenset({"specversion", "type", "action", "user", "userId", "eventId", "occurredAt", "source"})
# Keys that give an event the outline of a change body, for telling it from an envelope it is not.
_OUTLINE_KEYS = ("changes", "user", "userId", "userName", "UserId", "UserName", "eventId", "occurredAt", "specversion")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ZONELESS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?")
_MAX_INT_BITS = 256  # an integer id longer than this is no id; str() of a huge one could even raise


@dataclass(frozen=True)
class UserChange:
    """One change to apply: an upsert carries the validated ``user``; a delete only the ``user_id``.

    ``occurred_at`` is timezone-aware UTC (or ``None`` when neither the body nor the transport gave a time);
    ``position`` says where the change came from, for logs and dead letters (``message <id> change 2``).
    """

    op: ChangeOp
    user_id: str
    user: User | None
    event_id: str | None
    occurred_at: datetime | None
    source: str | None
    position: str


def parse_changes(
    body: str | bytes | Mapping[str, Any] | list[Any],
    *,
    message_id: str | None = None,
    defaults: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
) -> list[UserChange]:
    """Every change in one message body, in order, or ``MalformedMessage`` naming every problem.

    ``body`` is the text the transport delivered (already out of its envelope) or that text decoded.
    ``defaults`` fill empty user fields (the enterprise's ``groupId``/``groupName``), as for files.
    ``received_at`` stands in for a missing ``occurredAt``: the transport's publish time. It must be timezone-aware
    (a naive one is the caller's bug, a ``ValueError``, not a malformed message).
    """
    fallback = _as_utc(received_at)
    items = message_items(decode_body(body, message_id), message_id)
    problems: list[ChangeProblem] = []
    changes: list[UserChange] = []
    for index, item in enumerate(items, start=1):
        reader = _ChangeReader(index, message_id, defaults, fallback, problems)
        change = reader.read(item)
        if change is not None:
            changes.append(change)
    if problems:
        raise MalformedMessage(problems, message_id=message_id)
    return changes


def looks_like_change_body(document: Any) -> bool:
    """Whether a decoded event has the outline of a change body (its contents are ``parse_changes``' business).

    True for an object with ``changes``, ``user``, a user's ``userId``/``userName`` (either case), ``eventId``,
    ``occurredAt``, ``specversion``, or ``type``/``action`` set to ``upsert`` or ``delete``; and for a non-empty
    list of such objects.
    """
    if isinstance(document, Mapping):
        return _has_change_outline(document)
    if isinstance(document, list):
        return bool(document) and all(isinstance(item, Mapping) and _has_change_outline(item) for item in document)
    return False


def _has_change_outline(obj: Mapping[Any, Any]) -> bool:
    if obj.get("type") in (UPSERT, DELETE) or obj.get("action") in (UPSERT, DELETE):
        return True
    return any(key in obj for key in _OUTLINE_KEYS)


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    return moment.astimezone(timezone.utc)


# Validation is by hand, not by a compiled JSON Schema (fastjsonschema 2.22.3 against
# docs/user-change-event.schema.json, measured): it stops at the first error, where MalformedMessage names every
# problem at once; the schema's top-level oneOf (change, batch, user, list) turns any error into "data must be valid
# exactly by one definition" with no field; its additionalProperties message quotes unknown keys, which may be
# e-mail addresses; and the schema leaves out checks the reader needs anyway (calendar dates, userId agreement,
# size, group defaults), so it could not be the single truth. It would also cost every cold start 13-15 ms of import
# and 21-27 ms to compile the schema (87 kB of generated code). tests/unit/test_changes.py holds the reader and the
# schema to agreement with jsonschema, a test dependency only.
class _ChangeReader:
    """Reads one item of a message into a ``UserChange``, adding every problem it finds to the shared list."""

    def __init__(
        self,
        index: int,
        message_id: str | None,
        defaults: Mapping[str, str] | None,
        fallback: datetime | None,
        problems: list[ChangeProblem],
    ) -> None:
        self.index = index
        self.defaults = defaults
        self.fallback = fallback
        self.problems = problems
        self.position = f"message {message_id} change {index}" if message_id else f"change {index}"
        self.clean = True

    def problem(self, field: str, reason: str) -> None:
        self.problems.append(ChangeProblem(self.index, field, reason))
        self.clean = False

    def read(self, item: Any) -> UserChange | None:
        if not isinstance(item, Mapping):
            self.problem("", f"must be an object, got {json_type(item)}")
            return None
        if any(key in item for key in CHANGE_MARKERS):
            return self._change(item)
        user = self._user(dict(item))
        if user is None:
            return None
        return UserChange(UPSERT, user.user_id, user, None, self.fallback, None, self.position)

    def _change(self, raw: Mapping[Any, Any]) -> UserChange | None:
        for key in raw:
            if key == "changes":
                self.problem("changes", "batches do not nest: a change holds no changes")
            elif key not in CHANGE_FIELDS:
                self.problem(field_name(key), 'is not a field of a change (a user\'s fields go inside "user")')
        version = version_problem(raw.get("specversion"))
        if version:
            self.problem("specversion", version)
        op = self._op(raw)
        id_given = raw.get("userId") is not None
        user_id = self._user_id("userId", raw.get("userId"))
        event_id = self._text("eventId", raw.get("eventId"), MAX_EVENT_ID_LENGTH)
        source = self._text("source", raw.get("source"), MAX_SOURCE_LENGTH)
        occurred_at = self._occurred_at(raw.get("occurredAt"))
        user_field = raw.get("user")
        if user_field is not None and not isinstance(user_field, Mapping):
            self.problem("user", f"must be an object, got {json_type(user_field)}")
            user_field = None
        if op == UPSERT:
            user = self._upsert_user(user_field, user_id, id_given, raw.get("user") is not None)
            if user is None or not self.clean:
                return None
            return UserChange(UPSERT, user.user_id, user, event_id, occurred_at, source, self.position)
        if op == DELETE:
            target = self._delete_target(user_field, user_id, id_given)
            if target is None or not self.clean:
                return None
            return UserChange(DELETE, target, None, event_id, occurred_at, source, self.position)
        return None

    def _op(self, raw: Mapping[Any, Any]) -> ChangeOp | None:
        given = [name for name in ("type", "action") if name in raw]
        if not given:
            self.problem("type", 'is required: "upsert" or "delete"')
            return None
        if len(given) > 1:
            self.problem("action", 'stands for "type": give one of them, not both')
            return None
        value = raw[given[0]]
        if value == UPSERT:
            return UPSERT
        if value == DELETE:
            return DELETE
        self.problem(given[0], f'must be "upsert" or "delete", got {shown(value)}')
        return None

    def _text(self, field: str, value: Any, limit: int) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(field, f"must be text, got {json_type(value)}")
            return None
        text = value.strip()
        if not text:
            self.problem(field, "is empty (leave it out instead)")
        elif len(text) > limit:
            self.problem(field, f"is {len(text)} characters long; at most {limit} allowed")
        elif _CONTROL.search(text):
            self.problem(field, "contains control characters (line breaks, tabs or NUL)")
        elif _SURROGATE.search(text):  # only a decoded body can hold one: JSON text with it is refused earlier
            self.problem(field, "is not valid Unicode text (a lone surrogate escape)")
        else:
            return text
        return None

    def _user_id(self, field: str, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > _MAX_INT_BITS:
                self.problem(field, "is a number too large to be an id")
                return None
            value = str(value)
        text = self._text(field, value, MAX_LENGTH["userId"])
        if text is None:
            return None
        # The clean-up every path shares (``records.clean_field``): a delete of ``ＢＳ００１`` deletes BS001, the user
        # its upsert created; an id Excel turned into 1.21235E+09 is refused, never deleted.
        problems: list[FieldProblem] = []
        cleaned = clean_field("userId", text, problems, [])
        for found in problems:
            self.problem(field, found.reason)
        return None if problems else cleaned

    def _occurred_at(self, value: Any) -> datetime | None:
        field = "occurredAt"
        if value is None:
            return self.fallback
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            kind = "a number with a fraction" if isinstance(value, float) else json_type(value)
            self.problem(field, f"must be an ISO-8601 time with a timezone or epoch milliseconds, got {kind}")
            return None
        if isinstance(value, int):
            moment = epoch_millis(value)
            if moment is None:
                if 0 <= value < EPOCH_MILLIS_MIN:
                    self.problem(field, "is before 1973 in epoch milliseconds: epoch seconds? send milliseconds")
                else:
                    self.problem(
                        field, f"is out of range for epoch milliseconds ({EPOCH_MILLIS_MIN}..{EPOCH_MILLIS_MAX})"
                    )
            return moment
        moment = iso_instant(value)
        if moment is None:
            if _ZONELESS.fullmatch(value.strip()):
                self.problem(field, "not an ISO-8601 time with a timezone (add Z or an offset such as +08:00)")
            else:
                self.problem(field, "not an ISO-8601 time with a timezone")
        return moment

    def _upsert_user(
        self, user_field: Mapping[Any, Any] | None, user_id: str | None, id_given: bool, user_given: bool
    ) -> User | None:
        if user_given and user_field is None:
            return None  # not an object: reported already
        if user_field is None and not id_given:
            self.problem("user", "is required for an upsert: an object with the user's fields")
            return None
        record = normalise_keys(user_field or {})
        inner = record.get("userId")
        if user_id is not None:
            if inner is None or inner == "":
                record["userId"] = user_id
            elif self._id_text(inner) not in (None, user_id):
                self.problem("userId", "differs from user.userId")
        elif id_given:
            return None  # the top-level userId is bad: reported already
        return self._user(record)

    def _delete_target(self, user_field: Mapping[Any, Any] | None, user_id: str | None, id_given: bool) -> str | None:
        inner = normalise_keys(user_field).get("userId") if user_field is not None else None
        inner_id = self._user_id("user.userId", inner) if inner is not None else None
        if user_id is not None and inner_id is not None and inner_id != user_id:
            self.problem("userId", "differs from user.userId")
            return None
        if not id_given and inner is None:
            self.problem("userId", "is required for a delete")
        return user_id or inner_id

    @staticmethod
    def _id_text(value: Any) -> str | None:
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= _MAX_INT_BITS:
            return str(value)
        return None

    def _user(self, record: dict[str, Any]) -> User | None:
        """``records.parse_user``, its problems reported under ``user``; huge numbers refused before it sees them."""
        for name, value in list(record.items()):
            if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
                self.problem(f"user.{field_name(name)}", "is a number too large to be text")
                record[name] = None
        try:
            user = parse_user(record, position=self.position, defaults=self.defaults)
        except RecordError as exc:
            for found in exc.problems:
                self.problem(f"user.{found.field}", found.reason)
            return None
        return user if self.clean else None
