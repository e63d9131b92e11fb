"""The access keys the emulator knows, and how they are written on its command line and in its environment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AccessKey:
    """One key. With a ``token`` it is an STS key: every call must carry ``SecurityToken`` equal to it.

    ``disabled`` answers InvalidAccessKeyId.Inactive; ``denied`` answers Forbidden.RAM (the identity lacks the
    CVC policy). The ``repr`` never shows the secret or the token.
    """

    id: str
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    disabled: bool = False
    denied: bool = False


def parse_access_key(text: str) -> AccessKey:
    """``ID:SECRET`` or ``ID:SECRET:TOKEN``; ``ValueError`` (without the secret in it) for anything else."""
    parts = text.strip().split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1] or (len(parts) == 3 and not parts[2]):
        shown = parts[0] if parts and parts[0] else "(empty)"
        raise ValueError(f"an access key must be ID:SECRET or ID:SECRET:TOKEN (key id {shown})")
    return AccessKey(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def parse_access_keys(text: str) -> list[AccessKey]:
    """A comma-separated list of keys, as in the ``CVC_EMULATOR_ACCESS_KEYS`` environment variable."""
    return [parse_access_key(item) for item in text.split(",") if item.strip()]
