"""The HTTP API's settings, read from the environment variables named in ``config.py``.

The HMAC keys and bearer tokens come from a secret store when ``CVCSYNC_SECRET_HTTP_KEYS`` /
``CVCSYNC_SECRET_HTTP_TOKENS`` name one (``cvcsync.adapters.secrets``; cached per warm container, so a request
costs no store call), or, for local use, from ``CVCSYNC_HTTP_KEYS`` / ``CVCSYNC_HTTP_TOKENS`` themselves. Both set is
refused rather than guessed at: one of them would be silently ignored, and a key believed revoked could still work.

Parsing errors name the variable (or the secret) and the position of the bad entry, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.adapters.secrets import SecretReader
from cvcsync.config import (
    ENV_HTTP_CIRCUIT_COOLDOWN,
    ENV_HTTP_CLOCK_SKEW,
    ENV_HTTP_KEYS,
    ENV_HTTP_MAX_BATCH,
    ENV_HTTP_MAX_BODY,
    ENV_HTTP_SYNC_BUCKET,
    ENV_HTTP_TOKENS,
    ENV_SECRET_HTTP_KEYS,
    ENV_SECRET_HTTP_TOKENS,
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


def secret_or_plain(env: Mapping[str, str], plain: str, reference: str, secrets: SecretReader) -> tuple[str, str]:
    """The text of ``reference``'s secret, else of the ``plain`` variable, and how to name it in an error."""
    if env.get(plain, "").strip() and env.get(reference, "").strip():
        raise ConfigurationError(
            f"both {plain} and {reference} are set: keep {reference} (a secret store) on a deployed function, "
            f"{plain} only for local use, never both",
            code="AmbiguousSecret",
        )
    found = secrets.reference(reference)
    if found is None:
        return env.get(plain, ""), plain
    return secrets.read_reference(found), f"the secret {found} ({reference})"


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
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, fc_context: Any = None, secrets: SecretReader | None = None
    ) -> HttpSettings:
        """``fc_context`` (the invocation's, on FC) signs a ``kms:`` read with the role's current credentials."""
        env = os.environ if env is None else env
        secrets = SecretReader(env, fc_context=fc_context) if secrets is None else secrets
        keys, keys_name = secret_or_plain(env, ENV_HTTP_KEYS, ENV_SECRET_HTTP_KEYS, secrets)
        tokens, tokens_name = secret_or_plain(env, ENV_HTTP_TOKENS, ENV_SECRET_HTTP_TOKENS, secrets)
        return cls(
            keys=parse_keys(keys, name=keys_name),
            tokens=parse_tokens(tokens, name=tokens_name),
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
