"""The HTTP API's settings, read from the environment variables named in ``config.py``.

Parsing errors name the variable and the position of the bad entry, never its value: these variables hold secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cvcsync.config import (
    ENV_HTTP_CIRCUIT_COOLDOWN,
    ENV_HTTP_CLOCK_SKEW,
    ENV_HTTP_KEYS,
    ENV_HTTP_MAX_BATCH,
    ENV_HTTP_MAX_BODY,
    ENV_HTTP_SYNC_BUCKET,
    ENV_HTTP_TOKENS,
    ENV_STATE_BUCKET,
    _float,
    _int,
)
from cvcsync.errors import ConfigurationError

DEFAULT_CLOCK_SKEW = 300
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_BATCH = 1000
DEFAULT_CIRCUIT_COOLDOWN = 60.0
MIN_SECRET_LENGTH = 16
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what fits an Authorization header unquoted


def parse_keys(text: str, *, name: str = ENV_HTTP_KEYS) -> dict[str, tuple[str, ...]]:
    """``id:secret[,id:secret...]`` -> {id: (secret, ...)}. An id may repeat: both secrets verify (rotation)."""
    keys: dict[str, tuple[str, ...]] = {}
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, secret = entry.partition(":")
        if not sep or not KEY_ID.fullmatch(key_id):
            raise ConfigurationError(f"{name}: entry {position} must be id:secret, the id of A-Z a-z 0-9 . _ -")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(f"{name}: the secret of key {key_id!r} is shorter than {MIN_SECRET_LENGTH}")
        keys[key_id] = (*keys.get(key_id, ()), secret)
    return keys


def parse_tokens(text: str, *, name: str = ENV_HTTP_TOKENS) -> tuple[str, ...]:
    tokens = []
    for position, token in enumerate((t.strip() for t in text.split(",")), start=1):
        if not token:
            continue
        if len(token) < MIN_SECRET_LENGTH or not _TOKEN.fullmatch(token):
            raise ConfigurationError(
                f"{name}: token {position} must be at least {MIN_SECRET_LENGTH} visible ASCII characters"
            )
        tokens.append(token)
    return tuple(tokens)


@dataclass(frozen=True)
class HttpSettings:
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    tokens: tuple[str, ...] = field(default=(), repr=False)
    clock_skew: int = DEFAULT_CLOCK_SKEW
    max_body: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH
    sync_bucket: str | None = None
    state_bucket: str | None = None
    circuit_cooldown: float = DEFAULT_CIRCUIT_COOLDOWN

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpSettings:
        env = os.environ if env is None else env
        return cls(
            keys=parse_keys(env.get(ENV_HTTP_KEYS, "")),
            tokens=parse_tokens(env.get(ENV_HTTP_TOKENS, "")),
            clock_skew=_int(env, ENV_HTTP_CLOCK_SKEW, DEFAULT_CLOCK_SKEW),
            max_body=_int(env, ENV_HTTP_MAX_BODY, DEFAULT_MAX_BODY),
            max_batch=_int(env, ENV_HTTP_MAX_BATCH, DEFAULT_MAX_BATCH),
            sync_bucket=env.get(ENV_HTTP_SYNC_BUCKET, "").strip() or None,
            state_bucket=env.get(ENV_STATE_BUCKET, "").strip() or None,
            circuit_cooldown=_float(env, ENV_HTTP_CIRCUIT_COOLDOWN, DEFAULT_CIRCUIT_COOLDOWN),
        )

    @property
    def auth_configured(self) -> bool:
        return bool(self.keys or self.tokens)

    @property
    def default_bucket(self) -> str | None:
        """Where ``POST /sync`` reads when the request names no bucket, and where run reports are looked up."""
        return self.sync_bucket or self.state_bucket

    @property
    def sync_buckets(self) -> frozenset[str]:
        """The only buckets a request may name: the configured ones, never an arbitrary bucket the role can read."""
        return frozenset(b for b in (self.sync_bucket, self.state_bucket) if b)

    @property
    def reports_bucket(self) -> str | None:
        """Where a run's outputs are: the state bucket when set, else the bucket synced from (``build_context``)."""
        return self.state_bucket or self.sync_bucket
