"""Reading the loosely typed fields of event JSON, and the check every decoded object key must pass.

Events come from several platforms and pass through queues and hand-written tests, so a number may arrive as a
string and an ETag with or without quotes. These readers accept the harmless variations and return ``None`` for
anything else; they never raise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cvcsync.inputs.events.types import SKIP_HOSTILE_KEY, SKIP_INVALID_KEY
from cvcsync.logs import scrub_text

# C0 control characters (tab aside, which S3 allows and is harmless) and DEL: a key holding one is an attempt to
# forge log lines or HTTP headers, never an HR export.
_CONTROL = frozenset(chr(c) for c in range(0x20) if c != 0x09) | {"\x7f"}
# The longest key S3 and OSS accept, in UTF-8 bytes: a longer one names no object and only a forger sends it.
MAX_KEY_BYTES = 1024


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def size(value: Any) -> int | None:
    """A byte count: an int, or a string of digits (some samples and proxies quote numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def etag(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip().strip('"')
    return stripped or None


def event_name(value: Any, platform_prefix: str) -> str:
    """``ObjectCreated:Put`` whether or not the sender kept the ``s3:``/``oss:`` prefix of the configuration."""
    name = value if isinstance(value, str) else ""
    return name[len(platform_prefix) :] if name.startswith(platform_prefix) else name


def has_control(value: str) -> bool:
    return any(ch in _CONTROL for ch in value)


def key_problem(key: str) -> tuple[str, str] | None:
    """Why a decoded key must not be read, as ``(reason, description)``; ``None`` when it is fine.

    Hostile: a ``..`` segment (``../`` anywhere, or a trailing ``/..``), a leading ``/``, or a control character
    (NUL, CR, LF and the rest of C0 but tab). Invalid: empty, not Unicode text (a lone surrogate, which only a forged
    event decoded by a lenient JSON reader can hold), or longer than ``MAX_KEY_BYTES``, which no object can have. The
    description never repeats the key.
    """
    if not key:
        return SKIP_INVALID_KEY, "empty key"
    if has_control(key):
        return SKIP_HOSTILE_KEY, "key contains a control character"
    if key.startswith("/"):
        return SKIP_HOSTILE_KEY, "key starts with '/'"
    if ".." in key.split("/"):
        return SKIP_HOSTILE_KEY, "key has a '..' segment"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return SKIP_INVALID_KEY, "key is not valid Unicode text (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return SKIP_INVALID_KEY, f"key is {size} bytes long; S3 and OSS keys are at most {MAX_KEY_BYTES}"
    return None


def describe(bucket: str, key: str) -> str:
    """``bucket/key`` for a log line or a skip detail, without repeating a hostile key."""
    if key_problem(key) is not None:
        return f"{bucket}/<unsafe key, {len(key)} characters>"
    return f"{bucket}/{key}"


# Times in queue envelopes and change bodies: RFC 3339 (ISO 8601's profile with a zone), seconds optional, any
# fraction (beyond microseconds it is truncated). ASCII digits only: ``\d`` would also match other scripts' digits.
_ISO_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)"
)
# Epoch milliseconds this reader believes: from 1973-03-03 (anything smaller is almost surely epoch *seconds*, a
# common producer mistake that would otherwise read as January 1970) to the end of year 9999.
EPOCH_MILLIS_MIN = 100_000_000_000
EPOCH_MILLIS_MAX = 253_402_300_799_999


def iso_instant(value: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 date-time with a zone (``Z`` or ``±hh:mm``), in UTC; ``None`` for anything else,
    including a time without a zone (its instant is unknowable) and impossible dates (February 30th)."""
    match = _ISO_INSTANT.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_h, zone_m = match.groups()
    try:
        if zulu:
            zone = timezone.utc
        else:
            offset = timedelta(hours=int(zone_h), minutes=int(zone_m or 0))
            zone = timezone(-offset if sign == "-" else offset)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=zone,
        )
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def epoch_millis(value: int) -> datetime | None:
    """Epoch milliseconds as a UTC time; ``None`` outside ``EPOCH_MILLIS_MIN``..``EPOCH_MILLIS_MAX``."""
    if not EPOCH_MILLIS_MIN <= value <= EPOCH_MILLIS_MAX:
        return None
    return datetime.fromtimestamp(value // 1000, tz=timezone.utc) + timedelta(milliseconds=value % 1000)


def instant(value: Any) -> datetime | None:
    """A transport's timestamp, leniently: epoch milliseconds (a number or a string of digits, as SQS sends
    ``SentTimestamp``) or an ISO 8601 time with a zone. ``None`` for anything else; never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return epoch_millis(value)
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= 15:
            return epoch_millis(int(value))
        return iso_instant(value)
    return None


def attribute_text(value: Any) -> str:
    """A message attribute's value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return str(type(value).__name__)


def text_map(value: Any) -> dict[str, str]:
    """A mapping of attributes as ``str -> str`` (``attribute_text`` for the values); ``{}`` for anything else."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): attribute_text(item) for key, item in value.items()}


def keys_seen(obj: Mapping[Any, Any], limit: int = 20) -> str:
    """The keys of ``obj`` for an error message: sorted, scrubbed, cut short; never the values."""
    names = sorted(scrub_text(str(key))[:40] for key in obj)
    shown = ", ".join(repr(name) for name in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}]{more}" if names else "none"


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__
