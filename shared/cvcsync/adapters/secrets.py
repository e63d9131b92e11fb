"""Secrets read from a store when needed, so that no secret sits in a function's configuration.

A variable such as ``CVCSYNC_SECRET_HTTP_KEYS`` holds a *reference* to a secret, never the secret itself:

- ``secretsmanager:<name or ARN>``: AWS Secrets Manager, the secret's ``SecretString`` (or UTF-8 ``SecretBinary``);
- ``ssm:<parameter name or ARN>``: AWS SSM Parameter Store, a ``SecureString`` read with decryption (a plain
  ``String`` parameter is refused: a secret is stored encrypted);
- ``kms:<secret name or ARN>``: Alibaba Cloud KMS secrets manager, ``GetSecretValue`` (API 2016-01-20), an RPC call
  signed like CVC's, with the function role's STS credentials, at ``https://kms.<region>.aliyuncs.com`` or
  ``CVCSYNC_KMS_ENDPOINT`` (``https://kms-vpc.<region>.aliyuncs.com`` from inside a VPC);
- ``env:<VARIABLE>``: the value of another environment variable, for local use and tests (never cached).

This module is what every function needs to resolve a reference: its syntax, the errors, the ``env:`` source, the
per-container cache and the reader. The three remote stores are in ``cvcsync.adapters.secret_stores``, which the
reader imports on the first reference to one of them.

Values are kept per warm container for ``CVCSYNC_SECRET_TTL_SECONDS`` (default 300): a container asks the store once
per TTL, not once per request, and picks a rotation up within that time. If the store is unavailable when a value
expires, the last value is kept (and the store asked again after at most 30 s), because an outage of the store must
not stop a container that holds a working value; a secret that is gone, or access that was revoked, is raised.

Every failure is a ``SecretError`` (a ``ConfigurationError``) that names the variable, the reference and why (not
found, access denied, unavailable, not usable); no value ever reaches a message or a log line, and a value put into
a reference variable by mistake is not echoed either. The stores' module, boto3 and requests are imported only on
the paths that use them: the ``env:`` source imports none of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cvcsync.config import (
    ENV_ALIBABA_REGION,
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_REGION,
    ENV_FC_REGION,
    ENV_KMS_ENDPOINT,
    ENV_SECRET_TTL,
    ENV_SECRETSMANAGER_ENDPOINT,
    ENV_SSM_ENDPOINT,
    _float,
)
from cvcsync.errors import ConfigurationError

if TYPE_CHECKING:
    from cvcsync.adapters.credentials import Credentials

log = logging.getLogger(__name__)

SCHEMES = ("secretsmanager", "ssm", "kms", "env")
DEFAULT_TTL = 300.0
OUTAGE_RETRY = 30.0  # while the store is down, the last value is served this long before it is asked again

# Why a secret could not be read: the ``code`` of the SecretError.
NOT_FOUND = "SecretNotFound"
ACCESS_DENIED = "SecretAccessDenied"
UNAVAILABLE = "SecretUnavailable"
UNUSABLE = "SecretUnusable"  # the store answered, but not with a value that can be used
INVALID_REFERENCE = "InvalidSecretReference"


class SecretError(ConfigurationError):
    """A secret could not be read. Retryable only when the store was unavailable: another try may then succeed."""

    def __init__(self, message: str, *, code: str, reference: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reference = reference
        self.retryable = code == UNAVAILABLE


@dataclass(frozen=True)
class SecretReference:
    """Where a secret is: the store (``scheme``), its name there, and the variable that said so."""

    scheme: str
    name: str
    variable: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"

    def error(self, code: str, why: str) -> SecretError:
        return SecretError(f"{self.variable} names the secret {self}, which {why}", code=code, reference=str(self))


def parse_reference(text: str, *, variable: str) -> SecretReference:
    """``scheme:name``; anything else is refused without showing it (it may be the secret itself, misplaced)."""
    scheme, separator, name = text.strip().partition(":")
    if not separator or scheme not in SCHEMES or not name.strip():
        raise SecretError(
            f"{variable} must name a secret: secretsmanager:<name or ARN>, ssm:<parameter name>, kms:<secret name> "
            "or env:<VARIABLE>. Its value is none of these and is not shown, as it may be a secret put there by "
            "mistake: put the secret in a store and its reference here",
            code=INVALID_REFERENCE,
        )
    return SecretReference(scheme, name.strip(), variable)


class SecretSource(Protocol):
    """One store: the text value of the secret called ``name`` there, or a ``SecretError`` saying why not (its
    message follows "the secret ..., which": the reader names the variable and the reference before it)."""

    def get(self, name: str) -> str: ...


class EnvironmentSecrets:
    """The value of an environment variable: for local use and tests, where there is no store."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str:
        value = self._env.get(name, "")
        if not value.strip():
            raise SecretError("is not set in the environment", code=NOT_FOUND)
        return value


# ------------------------------------------------------------------------------------------------ the cache


@dataclass
class _Entry:
    value: str = field(repr=False)
    expires_at: float


class SecretCache:
    """The secret values (and store clients) of one warm container. Thread-safe; one store read per expiry even when
    many threads ask at once. ``clock`` is injectable (tests); monotonic, so a wall-clock jump changes nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._fetching: dict[str, threading.Lock] = {}
        self._resources: dict[tuple[Any, ...], Any] = {}

    def get(self, key: str, fetch: Callable[[], str], *, ttl: float) -> str:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() < entry.expires_at:
                return entry.value
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            now = self._clock()
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and now < entry.expires_at:
                return entry.value  # another thread read it meanwhile
            try:
                value = fetch()
            except SecretError as error:
                return self._after_failure(key, entry, error, now, ttl)
            with self._lock:
                self._entries[key] = _Entry(value, now + ttl)
            return value

    def _after_failure(self, key: str, entry: _Entry | None, error: SecretError, now: float, ttl: float) -> str:
        if entry is None or not error.retryable:
            with self._lock:
                self._entries.pop(key, None)
            raise error
        retry_in = min(ttl, OUTAGE_RETRY)
        log.warning(
            "secret store unavailable: the last value of the secret is kept",
            extra={"reference": error.reference, "code": error.code, "retryInSeconds": retry_in},
        )
        with self._lock:
            self._entries[key] = _Entry(entry.value, now + retry_in)
        return entry.value

    def resource(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """A store client kept for the container (a boto3 client, KMS's requests session), built on first use."""
        with self._lock:
            if key not in self._resources:
                self._resources[key] = build()
            return self._resources[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._fetching.clear()
            self._resources.clear()


CONTAINER_CACHE = SecretCache()  # module-level on purpose: it is what makes a warm container read a store once per TTL


def clear_cache() -> None:
    """Forget every cached secret and store client (tests; a warm container never needs it)."""
    CONTAINER_CACHE.clear()


# ------------------------------------------------------------------------------------------------ the reader


def _read(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


class SecretReader:
    """Reads the secrets the variables of ``env`` name, through the container's cache.

    ``fc_context`` is the Function Compute context of the invocation: its STS credentials sign KMS calls (without
    it, the environment's, which on FC are the same role's). ``sources`` replaces a scheme's store (tests).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        fc_context: Any = None,
        cache: SecretCache | None = None,
        sources: Mapping[str, SecretSource] | None = None,
    ) -> None:
        self._env = env
        self._fc_context = fc_context
        self._cache = CONTAINER_CACHE if cache is None else cache
        self._sources = dict(sources or {})

    @property
    def ttl(self) -> float:
        return _float(self._env, ENV_SECRET_TTL, DEFAULT_TTL)

    def reference(self, variable: str) -> SecretReference | None:
        raw = self._env.get(variable, "").strip()
        return parse_reference(raw, variable=variable) if raw else None

    def read(self, variable: str) -> str | None:
        """The secret ``variable`` names, or None when it is unset."""
        found = self.reference(variable)
        return None if found is None else self.read_reference(found)

    def read_reference(self, reference: SecretReference) -> str:
        if reference.scheme == "env" and "env" not in self._sources:
            return self._fetch(reference)  # free to read, and a test may change it between two reads
        return self._cache.get(str(reference), lambda: self._fetch(reference), ttl=self.ttl)

    def _fetch(self, reference: SecretReference) -> str:
        try:
            return self.source(reference.scheme).get(reference.name)
        except SecretError as error:
            raise reference.error(error.code, error.message) from error

    def source(self, scheme: str) -> SecretSource:
        if scheme in self._sources:
            return self._sources[scheme]
        if scheme == "env":
            return EnvironmentSecrets(self._env)
        # Imported here, on the first secretsmanager:/ssm:/kms: reference, for the cold start: a function whose
        # secrets are env: variables, or that has none, never loads the stores' module.
        from cvcsync.adapters import secret_stores

        if scheme == "secretsmanager":
            return secret_stores.SecretsManagerSecrets(self._aws_client("secretsmanager", ENV_SECRETSMANAGER_ENDPOINT))
        if scheme == "ssm":
            return secret_stores.ParameterStoreSecrets(self._aws_client("ssm", ENV_SSM_ENDPOINT))
        return secret_stores.KmsSecrets(
            self.kms_endpoint(),
            self._store_credentials(),
            session=self._cache.resource(("kms-session",), secret_stores.new_kms_session),
        )

    def _aws_client(self, service: str, endpoint_variable: str) -> Any:
        """The service's client for this container (the role's credentials; an endpoint only for local tests)."""
        from cvcsync.adapters.secret_stores import aws_client

        endpoint = self._env.get(endpoint_variable, "").strip() or None
        region = self._env.get(ENV_AWS_REGION, "").strip() or self._env.get(ENV_AWS_DEFAULT_REGION, "").strip() or None
        return self._cache.resource(
            (service, endpoint, region), lambda: aws_client(service, endpoint=endpoint, region=region)
        )

    def kms_endpoint(self) -> str:
        """``CVCSYNC_KMS_ENDPOINT``, else the public endpoint of the function's region."""
        explicit = self._env.get(ENV_KMS_ENDPOINT, "").strip()
        if explicit:
            if not explicit.startswith(("http://", "https://")):
                raise SecretError(
                    f"{ENV_KMS_ENDPOINT} must be a full URL such as https://kms-vpc.cn-hangzhou.aliyuncs.com",
                    code=INVALID_REFERENCE,
                )
            return explicit.rstrip("/")
        region = (
            _read(self._fc_context, "region")
            or self._env.get(ENV_FC_REGION, "").strip()
            or self._env.get(ENV_ALIBABA_REGION, "").strip()
        )
        if not region:
            raise SecretError(
                f"cannot be read: no region for KMS; set {ENV_KMS_ENDPOINT} (or {ENV_ALIBABA_REGION})",
                code=INVALID_REFERENCE,
            )
        return f"https://kms.{region}.aliyuncs.com"

    def _store_credentials(self) -> Credentials:
        """What signs a KMS call: the role's STS credentials (FC context, else the environment), never a stored key."""
        from cvcsync.adapters.credentials import from_environment, from_fc_context

        found = from_fc_context(self._fc_context)() or from_environment(self._env, fc_context=self._fc_context)()
        if found is None:
            raise SecretError(
                "cannot be read: there are no credentials to call KMS with; on Function Compute give the function a "
                "role (the runtime hands its STS credentials to every invocation), locally set "
                "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                code=ACCESS_DENIED,
            )
        return found
