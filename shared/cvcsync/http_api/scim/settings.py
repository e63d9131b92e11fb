"""The SCIM endpoint's settings, read from the variables named in ``config.py`` on every request (cheap).

The bearer tokens come from a secret store when ``CVCSYNC_SECRET_SCIM_TOKENS`` names one (cached per warm
container by ``adapters.secrets``), or from ``CVCSYNC_SCIM_TOKENS`` for local use; both set is refused, as for the
HTTP API's tokens (``http_api.settings.secret_or_plain``). They are separate from the HTTP API's tokens: an IdP's
token can provision users and nothing else (no ``POST /sync``, no run reports).

The rest is shared with the HTTP function: the body limit, the bucket of the state and reports (the SCIM resource
documents live beside them), the circuit's cool-down, the group defaults and the name order of the file path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.adapters.secrets import SecretReader
from cvcsync.config import (
    ENV_HTTP_CIRCUIT_COOLDOWN,
    ENV_HTTP_MAX_BODY,
    ENV_HTTP_SYNC_BUCKET,
    ENV_NAME_ORDER,
    ENV_SCIM_MAX_DELETES_PER_HOUR,
    ENV_SCIM_TOKENS,
    ENV_SCIM_USER_ID,
    ENV_SECRET_SCIM_TOKENS,
    ENV_STATE_BUCKET,
    _float,
    _int,
)
from cvcsync.errors import ConfigurationError
from cvcsync.http_api.settings import (
    DEFAULT_CIRCUIT_COOLDOWN,
    DEFAULT_MAX_BODY,
    HttpSettings,
    parse_tokens,
    secret_or_plain,
)

USER_NAME, EXTERNAL_ID = "userName", "externalId"
USER_ID_SOURCES = (USER_NAME, EXTERNAL_ID)
DEFAULT_MAX_DELETES_PER_HOUR = 100
NAME_ORDERS = ("auto", "given-family", "family-given")  # cell_cleanup.join_name's, as CVCSYNC_NAME_ORDER takes them


@dataclass(frozen=True)
class ScimSettings:
    tokens: tuple[str, ...] = field(default=(), repr=False)
    user_id_source: str = USER_NAME
    max_deletes_per_hour: int = DEFAULT_MAX_DELETES_PER_HOUR
    name_order: str = "auto"
    max_body: int = DEFAULT_MAX_BODY
    sync_bucket: str | None = None
    state_bucket: str | None = None
    circuit_cooldown: float = DEFAULT_CIRCUIT_COOLDOWN

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, fc_context: Any = None) -> ScimSettings:
        secrets = SecretReader(env, fc_context=fc_context)
        tokens, tokens_name = secret_or_plain(env, ENV_SCIM_TOKENS, ENV_SECRET_SCIM_TOKENS, secrets)
        source = env.get(ENV_SCIM_USER_ID, "").strip() or USER_NAME
        if source not in USER_ID_SOURCES:
            raise ConfigurationError(f"{ENV_SCIM_USER_ID} must be userName or externalId, got {source!r}")
        order = env.get(ENV_NAME_ORDER, "").strip() or "auto"
        if order not in NAME_ORDERS:
            raise ConfigurationError(f"{ENV_NAME_ORDER} must be one of {', '.join(NAME_ORDERS)}, got {order!r}")
        return cls(
            tokens=parse_tokens(tokens, name=tokens_name),
            user_id_source=source,
            max_deletes_per_hour=_int(env, ENV_SCIM_MAX_DELETES_PER_HOUR, DEFAULT_MAX_DELETES_PER_HOUR, minimum=0),
            name_order=order,
            max_body=_int(env, ENV_HTTP_MAX_BODY, DEFAULT_MAX_BODY),
            sync_bucket=env.get(ENV_HTTP_SYNC_BUCKET, "").strip() or None,
            state_bucket=env.get(ENV_STATE_BUCKET, "").strip() or None,
            circuit_cooldown=_float(env, ENV_HTTP_CIRCUIT_COOLDOWN, DEFAULT_CIRCUIT_COOLDOWN),
        )

    @property
    def bucket(self) -> str | None:
        """Where the resource documents, the state and the reports are: the HTTP function's reports bucket."""
        return self.state_bucket or self.sync_bucket

    def http_settings(self) -> HttpSettings:
        """The HTTP API's settings a write run reads (no keys or tokens: SCIM authenticates on its own)."""
        return HttpSettings(
            max_body=self.max_body,
            sync_bucket=self.sync_bucket,
            state_bucket=self.state_bucket,
            circuit_cooldown=self.circuit_cooldown,
        )
