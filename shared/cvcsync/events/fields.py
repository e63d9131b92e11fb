"""Reading the loosely typed fields of event JSON, and the check every decoded object key must pass.

Events come from several platforms and pass through queues and hand-written tests, so a number may arrive as a
string and an ETag with or without quotes. These readers accept the harmless variations and return ``None`` for
anything else; they never raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .types import SKIP_HOSTILE_KEY, SKIP_INVALID_KEY

# C0 control characters (tab aside, which S3 allows and is harmless) and DEL: a key holding one is an attempt to
# forge log lines or HTTP headers, never an HR export.
_CONTROL = frozenset(chr(c) for c in range(0x20) if c != 0x09) | {"\x7f"}


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
    (NUL, CR, LF and the rest of C0 but tab). Invalid: empty. The description never repeats the key.
    """
    if not key:
        return SKIP_INVALID_KEY, "empty key"
    if has_control(key):
        return SKIP_HOSTILE_KEY, "key contains a control character"
    if key.startswith("/"):
        return SKIP_HOSTILE_KEY, "key starts with '/'"
    if ".." in key.split("/"):
        return SKIP_HOSTILE_KEY, "key has a '..' segment"
    return None


def describe(bucket: str, key: str) -> str:
    """``bucket/key`` for a log line or a skip detail, without repeating a hostile key."""
    if key_problem(key) is not None:
        return f"{bucket}/<unsafe key, {len(key)} characters>"
    return f"{bucket}/{key}"
