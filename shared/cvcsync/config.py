"""Every environment variable cvc-sync reads is named here, once, and documented once, in the README's table.

Values are read when asked for (``Settings.from_env``), never at import, so tests and handlers can set the
environment first. Nothing here logs a value: secrets pass through untouched and unseen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cvcsync.errors import ConfigurationError

# Alibaba Cloud's standard credential variables (the same names the official SDKs and CLI use).
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name, not a secret  # nosec B105
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name, not a secret  # nosec B105

# The CVC client.
ENV_CVC_ENDPOINT = "CVC_ENDPOINT"
ENV_CVC_BATCH_SIZE = "CVC_BATCH_SIZE"
ENV_CVC_MAX_ATTEMPTS = "CVC_MAX_ATTEMPTS"
ENV_CVC_CONNECT_TIMEOUT = "CVC_CONNECT_TIMEOUT"
ENV_CVC_READ_TIMEOUT = "CVC_READ_TIMEOUT"

ENV_CVC_MAX_QPS = "CVC_MAX_QPS"

# Logging.
ENV_LOG_LEVEL = "CVCSYNC_LOG_LEVEL"

# The object store (S3, or OSS through its S3-compatible endpoint).
ENV_S3_ENDPOINT = "CVCSYNC_S3_ENDPOINT"
ENV_S3_REGION = "CVCSYNC_S3_REGION"
ENV_S3_ADDRESSING_STYLE = "CVCSYNC_S3_ADDRESSING_STYLE"
ENV_OBJECT_STORE_FLAVOR = "CVCSYNC_OBJECT_STORE_FLAVOR"  # s3 | oss | auto: which create-only header(s) to send
ENV_SQS_ENDPOINT = "CVCSYNC_SQS_ENDPOINT"
# Set by Lambda and the AWS tooling, not by us: read as the object store's region when CVCSYNC_S3_REGION is unset.
ENV_AWS_REGION = "AWS_REGION"
ENV_AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
ENV_ALIBABA_REGION = "ALIBABA_CLOUD_REGION"

# Where the sync keeps what it writes (all under one output prefix, so an upload trigger can never see them).
ENV_STATE_BUCKET = "CVCSYNC_STATE_BUCKET"
ENV_OUTPUT_PREFIX = "CVCSYNC_OUTPUT_PREFIX"
ENV_FULL_PREFIX = "CVCSYNC_FULL_PREFIX"
ENV_DELTA_PREFIX = "CVCSYNC_DELTA_PREFIX"
ENV_DEFAULT_MODE = "CVCSYNC_DEFAULT_MODE"

# Input files.
ENV_ENCODING = "CVCSYNC_ENCODING"
ENV_SHEET = "CVCSYNC_SHEET"  # which sheet of an .xlsx export holds the users (default: the first visible one)
ENV_COLUMN_PRESET = "CVCSYNC_COLUMN_PRESET"
ENV_COLUMN_MAP = "CVCSYNC_COLUMN_MAP"
ENV_STATUS_VALUES = "CVCSYNC_STATUS_VALUES"  # JSON object, status value -> "active" | "gone", over the shipped ones
ENV_NAME_ORDER = "CVCSYNC_NAME_ORDER"  # auto | given-family | family-given: a name split in two columns
ENV_GROUP_ID = "CVCSYNC_GROUP_ID"
ENV_GROUP_NAME = "CVCSYNC_GROUP_NAME"

# Safety gates.
ENV_MAX_DELETES = "CVCSYNC_MAX_DELETES"
ENV_MAX_DELETE_PERCENT = "CVCSYNC_MAX_DELETE_PERCENT"
ENV_MAX_SNAPSHOT_DROP_PERCENT = "CVCSYNC_MAX_SNAPSHOT_DROP_PERCENT"
ENV_UPSERTS_WHEN_REFUSED = "CVCSYNC_UPSERTS_WHEN_REFUSED"
ENV_GUARD_OVERRIDE = "CVCSYNC_GUARD_OVERRIDE"

# Applying.
ENV_CONCURRENCY = "CVCSYNC_CONCURRENCY"  # CVC calls in flight at the start of a run; the limit adapts from there
ENV_MAX_CONCURRENCY = "CVCSYNC_MAX_CONCURRENCY"  # the most the adaptive limit may reach (engine/concurrency.py)
DEFAULT_MAX_CONCURRENCY = 32
ENV_DEADLINE_MARGIN = "CVCSYNC_DEADLINE_MARGIN"
ENV_CIRCUIT_PAUSE = "CVCSYNC_CIRCUIT_PAUSE_SECONDS"
ENV_CIRCUIT_FAILURES = "CVCSYNC_CIRCUIT_FAILURES"
ENV_FANOUT = "CVCSYNC_FANOUT"
ENV_FANOUT_THRESHOLD = "CVCSYNC_FANOUT_THRESHOLD"
ENV_FANOUT_CHUNK = "CVCSYNC_FANOUT_CHUNK"
ENV_FANOUT_QUEUE_URL = "CVCSYNC_FANOUT_QUEUE_URL"
ENV_FC_ENDPOINT = "CVCSYNC_FC_ENDPOINT"  # FC 3.0 API for CVCSYNC_FANOUT=fc; default: the account's internal endpoint

# Dead letters.
ENV_DEADLETTER_SINK = "CVCSYNC_DEADLETTER_SINK"
ENV_DEADLETTER_QUEUE_URL = "CVCSYNC_DEADLETTER_QUEUE_URL"

# The local emulator.
ENV_EMULATOR_ACCESS_KEYS = "CVC_EMULATOR_ACCESS_KEYS"

# The HTTP function (``cvcsync.http_api``) and its client, ``cvcsync call``: who may call it, how big a request may
# be, where ``POST /sync`` reads from, how long the per-container circuit stays open. Documented in docs/http-api.md.
ENV_HTTP_KEYS = "CVCSYNC_HTTP_KEYS"  # HMAC keys, id:secret[,id:secret...]; several for rotation
ENV_HTTP_TOKENS = "CVCSYNC_HTTP_TOKENS"  # static bearer tokens, comma-separated
ENV_HTTP_CLOCK_SKEW = "CVCSYNC_HTTP_CLOCK_SKEW"
ENV_HTTP_MAX_BODY = "CVCSYNC_HTTP_MAX_BODY"
ENV_HTTP_MAX_BATCH = "CVCSYNC_HTTP_MAX_BATCH"
ENV_HTTP_SYNC_BUCKET = "CVCSYNC_HTTP_SYNC_BUCKET"
ENV_HTTP_CIRCUIT_COOLDOWN = "CVCSYNC_HTTP_CIRCUIT_COOLDOWN"
ENV_HTTP_ENDPOINT = "CVCSYNC_HTTP_ENDPOINT"  # where ``cvcsync call`` sends its requests

# SCIM 2.0 at /scim/v2 of the HTTP function (``cvcsync.http_api.scim``). Documented in docs/scim.md.
ENV_SCIM_TOKENS = "CVCSYNC_SCIM_TOKENS"  # bearer tokens, comma-separated, for local use (deployed: the secret)
ENV_SCIM_USER_ID = "CVCSYNC_SCIM_USER_ID"  # userName | externalId: which SCIM attribute is CVC's userId
ENV_SCIM_MAX_DELETES_PER_HOUR = "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR"  # removals from CVC within an hour

# The scheduled function (``cvcsync.schedule``): redrive of dead letters, reconcile with CVC, heartbeat alerts.
# Documented in docs/schedule.md.
ENV_REDRIVE_MAX_ATTEMPTS = "CVCSYNC_REDRIVE_MAX_ATTEMPTS"  # redrive tries of one letter before it is parked
ENV_REDRIVE_BACKOFF = "CVCSYNC_REDRIVE_BACKOFF_SECONDS"  # first wait; doubles with every failed redrive
ENV_REDRIVE_BACKOFF_MAX = "CVCSYNC_REDRIVE_BACKOFF_MAX_SECONDS"  # the longest wait between two tries
ENV_RECONCILE_MODE = "CVCSYNC_RECONCILE_MODE"  # report | heal-state | heal-cvc
ENV_RECONCILE_SAMPLE = "CVCSYNC_RECONCILE_SAMPLE"  # users checked with GetUser where ListUsers is unavailable
ENV_HEARTBEAT_MAX_AGE_HOURS = "CVCSYNC_HEARTBEAT_MAX_AGE_HOURS"  # alert when no sync succeeded for this long
ENV_DEADLETTER_BACKLOG_LIMIT = "CVCSYNC_DEADLETTER_BACKLOG_LIMIT"  # alert when more dead letters wait
ENV_ALERT_QUEUE_URL = "CVCSYNC_ALERT_QUEUE_URL"  # SQS queue that also receives every alert

# Secrets (``cvcsync.adapters.secrets``): these variables NAME a secret (``secretsmanager:<name or ARN>``,
# ``ssm:<parameter>``, ``kms:<secret name>``, ``env:<VARIABLE>``), they never hold one.
ENV_SECRET_CVC_ACCESS_KEY = "CVCSYNC_SECRET_CVC_ACCESS_KEY"  # noqa: S105 - a variable name  # nosec B105
ENV_SECRET_HTTP_KEYS = "CVCSYNC_SECRET_HTTP_KEYS"  # noqa: S105 - a variable name  # nosec B105
ENV_SECRET_HTTP_TOKENS = "CVCSYNC_SECRET_HTTP_TOKENS"  # noqa: S105 - a variable name  # nosec B105
ENV_SECRET_SCIM_TOKENS = "CVCSYNC_SECRET_SCIM_TOKENS"  # noqa: S105 - a variable name  # nosec B105
ENV_SECRET_TTL = "CVCSYNC_SECRET_TTL_SECONDS"  # noqa: S105 - a variable name  # nosec B105
ENV_KMS_ENDPOINT = "CVCSYNC_KMS_ENDPOINT"  # e.g. https://kms-vpc.<region>.aliyuncs.com inside a VPC
ENV_SECRETSMANAGER_ENDPOINT = "CVCSYNC_SECRETSMANAGER_ENDPOINT"  # local testing against moto
ENV_SSM_ENDPOINT = "CVCSYNC_SSM_ENDPOINT"  # local testing against moto
ENV_FC_REGION = "FC_REGION"  # set by Function Compute, not by us: the region of kms: references

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
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
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
    max_qps: float | None = None

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
            max_qps=_float(env, ENV_CVC_MAX_QPS, 0.0) or None,
        )


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _prefix(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if value.startswith("/") or ".." in value.split("/"):
        raise ConfigurationError(f"{name} must be a relative key prefix, got {value!r}")
    return value if value.endswith("/") else value + "/"


def _max_concurrency(env: Mapping[str, str]) -> int:
    """``CVCSYNC_MAX_CONCURRENCY``. Unset: ``DEFAULT_MAX_CONCURRENCY`` (the limit adapts from
    ``CVCSYNC_CONCURRENCY``), except when ``CVCSYNC_CONCURRENCY`` alone is set: a concurrency pinned before the
    limit adapted stays pinned."""
    concurrency = _int(env, ENV_CONCURRENCY, 4)
    pinned = bool(env.get(ENV_CONCURRENCY, "").strip())
    maximum = _int(env, ENV_MAX_CONCURRENCY, concurrency if pinned else max(concurrency, DEFAULT_MAX_CONCURRENCY))
    if maximum < concurrency:
        raise ConfigurationError(
            f"{ENV_MAX_CONCURRENCY} ({maximum}) must be at least {ENV_CONCURRENCY} ({concurrency}), where it starts"
        )
    return maximum


DEFAULT_OUTPUT_PREFIX = "cvc-sync/"
FANOUT_MODES = ("off", "inline", "fc", "lambda", "sqs")


def output_prefix(env: Mapping[str, str]) -> str:
    """Where everything cvc-sync writes lives: ``CVCSYNC_OUTPUT_PREFIX``, relative, ending in ``/``."""
    return _prefix(env, ENV_OUTPUT_PREFIX, DEFAULT_OUTPUT_PREFIX)


@dataclass(frozen=True)
class SyncSettings:
    """How an upload is synced: where things go, which mode, the safety gates, how hard to push CVC."""

    output_prefix: str = DEFAULT_OUTPUT_PREFIX
    full_prefix: str = "uploads/full/"
    delta_prefix: str = "uploads/delta/"
    default_mode: str = "full"
    state_bucket: str | None = None
    encoding: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    max_deletes: int = 500
    max_delete_percent: float = 20.0
    max_snapshot_drop_percent: float = 20.0
    upserts_when_refused: bool = False
    guard_override: bool = False
    concurrency: int = 4
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY  # the adaptive limit's bound (engine/concurrency.py)
    deadline_margin: float = 10.0
    circuit_pause: float = 30.0  # an upload's first pause when CVC fails as a whole; doubles per pause
    circuit_failures: int = 5  # consecutive calls failing after their retries that open a run's circuit
    fanout: str = "off"
    fanout_threshold: int = 20000
    fanout_chunk: int = 5000
    fanout_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SyncSettings:
        env = os.environ if env is None else env
        mode = env.get(ENV_DEFAULT_MODE, "").strip() or "full"
        if mode not in ("full", "delta"):
            raise ConfigurationError(f"{ENV_DEFAULT_MODE} must be full or delta, got {mode!r}")
        fanout = env.get(ENV_FANOUT, "").strip() or "off"
        if fanout not in FANOUT_MODES:
            raise ConfigurationError(f"{ENV_FANOUT} must be one of {', '.join(FANOUT_MODES)}, got {fanout!r}")
        return cls(
            output_prefix=output_prefix(env),
            full_prefix=_prefix(env, ENV_FULL_PREFIX, "uploads/full/"),
            delta_prefix=_prefix(env, ENV_DELTA_PREFIX, "uploads/delta/"),
            default_mode=mode,
            state_bucket=env.get(ENV_STATE_BUCKET, "").strip() or None,
            encoding=env.get(ENV_ENCODING, "").strip() or None,
            group_id=env.get(ENV_GROUP_ID, "").strip() or None,
            group_name=env.get(ENV_GROUP_NAME, "").strip() or None,
            max_deletes=_int(env, ENV_MAX_DELETES, 500, minimum=0),
            max_delete_percent=_float(env, ENV_MAX_DELETE_PERCENT, 20.0),
            max_snapshot_drop_percent=_float(env, ENV_MAX_SNAPSHOT_DROP_PERCENT, 20.0),
            upserts_when_refused=_bool(env, ENV_UPSERTS_WHEN_REFUSED),
            guard_override=_bool(env, ENV_GUARD_OVERRIDE),
            concurrency=_int(env, ENV_CONCURRENCY, 4),
            max_concurrency=_max_concurrency(env),
            deadline_margin=_float(env, ENV_DEADLINE_MARGIN, 10.0),
            circuit_pause=_float(env, ENV_CIRCUIT_PAUSE, 30.0),
            circuit_failures=max(1, _int(env, ENV_CIRCUIT_FAILURES, 5)),
            fanout=fanout,
            fanout_threshold=_int(env, ENV_FANOUT_THRESHOLD, 20000),
            fanout_chunk=_int(env, ENV_FANOUT_CHUNK, 5000),
            fanout_queue_url=env.get(ENV_FANOUT_QUEUE_URL, "").strip() or None,
        )

    def mode_for(self, key: str) -> str:
        if key.startswith(self.delta_prefix):
            return "delta"
        if key.startswith(self.full_prefix):
            return "full"
        return self.default_mode

    def key(self, *parts: str) -> str:
        """A key under the output prefix, e.g. ``key("reports", upload_key, run_id + ".json")``."""
        return self.output_prefix + "/".join(p.strip("/") for p in parts if p)

    @property
    def defaults(self) -> dict[str, str]:
        return {k: v for k, v in (("groupId", self.group_id), ("groupName", self.group_name)) if v}
