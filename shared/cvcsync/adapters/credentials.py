"""AccessKey credentials from a chain of providers; first found wins. A key is never paired with a token not its own.

Order: explicit arguments; the secret ``CVCSYNC_SECRET_CVC_ACCESS_KEY`` names (a RAM user's long-term key, JSON
``{"accessKeyId": ..., "accessKeySecret": ...}``); the standard ``ALIBABA_CLOUD_*`` environment variables (local
use); then the Function Compute context's STS credentials (the function's role), which is the default on FC.

Why the pairing rule matters: on Function Compute (2.0 and 3.0) the runtime puts the role's temporary key into the
environment, all three of ``ALIBABA_CLOUD_ACCESS_KEY_ID``, ``..._SECRET`` and ``..._SECURITY_TOKEN``, and hands the
same role's triple to every invocation on ``context.credentials`` (refreshed; the environment's is the copy taken
when the instance started). A key configured beside it would be sent with the role's token. So:

- a token is used only with the key id it came with: the FC context's credentials are one triple; the
  environment's is a triple only when its key is temporary (an STS key id starts with ``STS.``, a long-term key's
  never does, and a long-term key never takes a token);
- a long-term key (from a secret, or from the environment) is used without any token; a token beside a long-term
  key in the environment is dropped, with a warning;
- a temporary key in the environment while an FC context has credentials is the runtime's copy of the role's key:
  the context's triple is used instead.

On Lambda the role's AWS credentials are not CVC credentials: there the key comes from a secret.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync.config import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECRET_CVC_ACCESS_KEY, ENV_SECURITY_TOKEN
from cvcsync.errors import ConfigurationError

if TYPE_CHECKING:
    from cvcsync.adapters.secrets import SecretReader, SecretReference

log = logging.getLogger(__name__)

STS_KEY_PREFIX = "STS."


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


def is_temporary(access_key_id: str) -> bool:
    """An STS key (``STS.``...), which needs its token; a RAM user's long-term key (``LTAI``...) takes none."""
    return access_key_id.startswith(STS_KEY_PREFIX)


def from_explicit(
    access_key_id: str | None, access_key_secret: str | None, security_token: str | None = None
) -> Provider:
    """What the caller passed, as one triple: the caller vouches that the token (if any) is the key's."""

    def provide() -> Credentials | None:
        if not access_key_id and not access_key_secret:
            return None
        return Credentials(access_key_id or "", access_key_secret or "", security_token or None, "arguments")

    return provide


def access_key_from_secret(text: str, reference: SecretReference) -> Credentials:
    """A long-term key from a secret's JSON value; no token, ever. Accepts KMS's RAM-credential secrets too
    (``AccessKeyId``/``AccessKeySecret``). Messages name the reference and the fields, never a value."""
    from cvcsync.adapters.secrets import UNUSABLE

    shape = 'JSON {"accessKeyId": "...", "accessKeySecret": "..."}'
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise reference.error(UNUSABLE, f"is not JSON: store {shape}") from None
    if not isinstance(data, dict):
        raise reference.error(UNUSABLE, f"is JSON but not an object: store {shape}")
    key_id = data.get("accessKeyId", data.get("AccessKeyId"))
    secret = data.get("accessKeySecret", data.get("AccessKeySecret"))
    if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
        raise reference.error(UNUSABLE, f"lacks accessKeyId or accessKeySecret (text): store {shape}")
    if data.get("securityToken") or data.get("SecurityToken") or is_temporary(key_id):
        raise reference.error(
            UNUSABLE,
            "holds a temporary (STS) key, which expires within hours: store a RAM user's long-term key, or leave "
            f"{ENV_SECRET_CVC_ACCESS_KEY} unset on Function Compute to call CVC with the function role's credentials",
        )
    return Credentials(key_id, secret, None, f"secret {reference}")


def from_secret(
    env: Mapping[str, str] | None = None, *, secrets: SecretReader | None = None, fc_context: Any = None
) -> Provider:
    """The key in the secret ``CVCSYNC_SECRET_CVC_ACCESS_KEY`` names; None when it is unset. An unreadable secret
    raises: a configured secret is never silently replaced by another identity."""

    def provide() -> Credentials | None:
        from cvcsync.adapters.secrets import SecretReader

        reader = secrets or SecretReader(os.environ if env is None else env, fc_context=fc_context)
        reference = reader.reference(ENV_SECRET_CVC_ACCESS_KEY)
        if reference is None:
            return None
        return access_key_from_secret(reader.read_reference(reference), reference)

    return provide


def _read(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def from_environment(env: Mapping[str, str] | None = None, *, fc_context: Any = None) -> Provider:
    """``ALIBABA_CLOUD_*``, with the pairing rule of the module docstring."""

    def provide() -> Credentials | None:
        source = os.environ if env is None else env
        key_id = source.get(ENV_ACCESS_KEY_ID, "").strip()
        secret = source.get(ENV_ACCESS_KEY_SECRET, "").strip()
        if not key_id and not secret:
            return None
        token = source.get(ENV_SECURITY_TOKEN, "").strip() or None
        if is_temporary(key_id):
            if from_fc_context(fc_context)() is not None:
                return None  # the runtime's copy of the role's key: the context's triple is the current one
            return Credentials(key_id, secret, token, "environment")
        if token is not None:
            log.warning(
                "a security token is set beside a long-term AccessKey, which never takes one: the key is used "
                "without it (on Function Compute the token is the role's, set by the runtime)",
                extra={"variables": [ENV_ACCESS_KEY_ID, ENV_SECURITY_TOKEN]},
            )
        return Credentials(key_id, secret, None, "environment")

    return provide


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
        f"no CVC credentials: on Function Compute give the function a role; elsewhere name a secret holding a RAM "
        f"user's key in {ENV_SECRET_CVC_ACCESS_KEY}, or (local use) set {ENV_ACCESS_KEY_ID} and "
        f"{ENV_ACCESS_KEY_SECRET} (and {ENV_SECURITY_TOKEN} for an STS key)",
        code="NoCredentials",
    )


def default_credentials(
    *,
    access_key_id: str | None = None,
    access_key_secret: str | None = None,
    security_token: str | None = None,
    fc_context: Any = None,
    env: Mapping[str, str] | None = None,
    secrets: SecretReader | None = None,
) -> Credentials:
    return resolve(
        [
            from_explicit(access_key_id, access_key_secret, security_token),
            from_secret(env, secrets=secrets, fc_context=fc_context),
            from_environment(env, fc_context=fc_context),
            from_fc_context(fc_context),
        ]
    )
