"""AccessKey credentials from a chain of providers; first found wins.

Order: explicit arguments, the standard ``ALIBABA_CLOUD_*`` environment variables, then the Function Compute
context's STS credentials (the service role). On Lambda the role's AWS credentials are not CVC credentials, so
there the environment (set from a secret at deploy time) is the way in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvcsync.config import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN
from cvcsync.errors import ConfigurationError


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, and an STS token when the key is temporary. ``repr`` never shows the secret."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    source: str = "explicit"

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.access_key_secret:
            raise ConfigurationError(f"credentials from {self.source} lack an AccessKey id or secret")


Provider = Callable[[], "Credentials | None"]


def from_explicit(
    access_key_id: str | None, access_key_secret: str | None, security_token: str | None = None
) -> Provider:
    def provide() -> Credentials | None:
        if not access_key_id and not access_key_secret:
            return None
        return Credentials(access_key_id or "", access_key_secret or "", security_token or None, "arguments")

    return provide


def from_environment(env: Mapping[str, str] | None = None) -> Provider:
    def provide() -> Credentials | None:
        source = os.environ if env is None else env
        key_id = source.get(ENV_ACCESS_KEY_ID, "").strip()
        secret = source.get(ENV_ACCESS_KEY_SECRET, "").strip()
        if not key_id and not secret:
            return None
        token = source.get(ENV_SECURITY_TOKEN, "").strip() or None
        return Credentials(key_id, secret, token, "environment")

    return provide


def _read(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def from_fc_context(context: Any) -> Provider:
    """FC hands the service role's STS credentials on ``context.credentials`` (attributes, or a dict locally)."""

    def provide() -> Credentials | None:
        creds = _read(context, "credentials") if context is not None else None
        if creds is None:
            return None
        key_id = _read(creds, "access_key_id") or _read(creds, "accessKeyId")
        secret = _read(creds, "access_key_secret") or _read(creds, "accessKeySecret")
        token = _read(creds, "security_token") or _read(creds, "securityToken")
        if not key_id or not secret:
            return None
        return Credentials(str(key_id), str(secret), str(token) if token else None, "fc-context")

    return provide


def resolve(providers: Sequence[Provider]) -> Credentials:
    for provide in providers:
        found = provide()
        if found is not None:
            return found
    raise ConfigurationError(
        f"no CVC credentials: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} "
        f"(and {ENV_SECURITY_TOKEN} for STS keys), or run on Function Compute with a service role",
        code="NoCredentials",
    )


def default_credentials(
    *,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    fc_context: Any = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    return resolve(
        [
            from_explicit(access_key_id, access_key_secret, security_token),
            from_environment(env),
            from_fc_context(fc_context),
        ]
    )
