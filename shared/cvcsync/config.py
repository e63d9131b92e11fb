"""Every environment variable cvc-sync reads is named here, once, and documented once, in the README's table.

Values are read when asked for (``Settings.from_env``), never at import, so tests and handlers can set the
environment first. Nothing here logs a value: secrets pass through untouched and unseen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigurationError

# Alibaba Cloud's standard credential variables (the same names the official SDKs and CLI use).
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name, not a secret
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name, not a secret

# The CVC client.
ENV_CVC_ENDPOINT = "CVC_ENDPOINT"
ENV_CVC_BATCH_SIZE = "CVC_BATCH_SIZE"
ENV_CVC_MAX_ATTEMPTS = "CVC_MAX_ATTEMPTS"
ENV_CVC_CONNECT_TIMEOUT = "CVC_CONNECT_TIMEOUT"
ENV_CVC_READ_TIMEOUT = "CVC_READ_TIMEOUT"

# Logging.
ENV_LOG_LEVEL = "CVCSYNC_LOG_LEVEL"

# The local emulator.
ENV_EMULATOR_ACCESS_KEYS = "CVC_EMULATOR_ACCESS_KEYS"

DEFAULT_ENDPOINT = "https://aliyuncvc.cn-hangzhou.aliyuncs.com"
API_VERSION = "2019-10-30"
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 20.0


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class CvcSettings:
    """How to reach CVC: endpoint, batch size, attempts and timeouts (credentials are separate)."""

    endpoint: str = DEFAULT_ENDPOINT
    batch_size: int = DEFAULT_BATCH_SIZE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CvcSettings:
        env = os.environ if env is None else env
        endpoint = env.get(ENV_CVC_ENDPOINT, "").strip() or DEFAULT_ENDPOINT
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"{ENV_CVC_ENDPOINT} must be a full URL such as {DEFAULT_ENDPOINT}, got {endpoint!r}"
            )
        return cls(
            endpoint=endpoint.rstrip("/"),
            batch_size=_int(env, ENV_CVC_BATCH_SIZE, DEFAULT_BATCH_SIZE),
            max_attempts=_int(env, ENV_CVC_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
            connect_timeout=_float(env, ENV_CVC_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_float(env, ENV_CVC_READ_TIMEOUT, DEFAULT_READ_TIMEOUT),
        )
