"""The clients a function needs, built lazily from the environment and kept for the warm container.

This is the module-level state of cvc-sync: a cache of clients (CVC's ``requests.Session``, boto3's S3 and SQS
clients), beside the secret values ``cvcsync.adapters.secrets`` keeps per container for their TTL. FC's STS
credentials rotate, so clients built from them are keyed by the key id they were built with; a new key builds a new
client. boto3 is imported only when an S3 or SQS client is first asked for.

CVC's credentials are resolved on every invocation (``adapters.credentials``: explicit, a secret, the environment,
the FC context), which costs a dict lookup once a secret is cached: the role's STS key on FC is then always the
current one, and a rotated secret is picked up within its TTL.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cvcsync.adapters.credentials import default_credentials, from_fc_context
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.objects import LocalObjectStore
from cvcsync.adapters.secrets import SecretReader
from cvcsync.adapters.secrets import clear_cache as clear_secret_cache
from cvcsync.config import (
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_REGION,
    ENV_S3_REGION,
    ENV_SQS_ENDPOINT,
    CvcSettings,
    SyncSettings,
)
from cvcsync.errors import ConfigurationError
from cvcsync.outputs.deadletters import LogDeadLetterSink
from cvcsync.platform.context import Dispatcher, SyncContext
from cvcsync.platform.runtime import FC, LAMBDA, Invocation

if TYPE_CHECKING:
    from cvcsync.adapters.s3 import S3ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_cache: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _cached(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]  # type: ignore[no-any-return]


def clear_cache() -> None:
    """Forget every client and cached secret (tests; a warm container never needs it)."""
    with _lock:
        _cache.clear()
    clear_secret_cache()


def secret_reader(invocation: Invocation, env: Mapping[str, str]) -> SecretReader:
    """Secrets through the container's cache; a ``kms:`` read is signed with this invocation's role credentials."""
    return SecretReader(env, fc_context=invocation.fc_context)


def cvc_client(invocation: Invocation, env: Mapping[str, str]) -> CvcClient:
    settings = CvcSettings.from_env(env)
    credentials = default_credentials(fc_context=invocation.fc_context, env=env, secrets=secret_reader(invocation, env))
    log.debug("cvc access key resolved", extra={"keySource": credentials.source})
    client = _cached(("cvc", settings), lambda: CvcClient(credentials, settings=settings))
    client.credentials = credentials  # the session is kept; STS keys and secrets are refreshed every invocation
    return client


def _fc_key_id(invocation: Invocation) -> str | None:
    creds = from_fc_context(invocation.fc_context)() if invocation.fc_context is not None else None
    return creds.access_key_id if creds else None


def object_store(invocation: Invocation, env: Mapping[str, str]) -> S3ObjectStore:
    from cvcsync.adapters.s3 import S3ObjectStore, s3_client  # here: the stateless queue path never needs S3

    key = ("s3", _fc_key_id(invocation), tuple(sorted((k, v) for k, v in env.items() if k.startswith("CVCSYNC_S3"))))
    return _cached(key, lambda: S3ObjectStore(s3_client(env, fc_context=invocation.fc_context)))


def sqs_client(env: Mapping[str, str]) -> Any:
    """SQS for dead letters and fan-out (Lambda's role credentials; ``CVCSYNC_SQS_ENDPOINT`` for local use)."""
    endpoint = env.get(ENV_SQS_ENDPOINT, "").strip() or None
    region = env.get(ENV_AWS_REGION) or env.get(ENV_AWS_DEFAULT_REGION) or env.get(ENV_S3_REGION) or None

    def build() -> Any:
        import boto3

        return boto3.client("sqs", endpoint_url=endpoint, region_name=region)

    return _cached(("sqs", endpoint, region), build)


def dispatcher(
    settings: SyncSettings, invocation: Invocation, env: Mapping[str, str], inline: Callable[[dict[str, Any]], Any]
) -> Dispatcher | None:
    """Where continuations and chunks go: the configured fan-out, else the platform's own async invocation."""
    from cvcsync.platform.dispatch import FcDispatcher, InlineDispatcher, LambdaDispatcher, QueueDispatcher

    mode = settings.fanout
    if mode == "off":
        mode = {FC: "fc", LAMBDA: "lambda"}.get(invocation.platform, "inline")
    if mode == "inline":
        return InlineDispatcher(inline)
    if mode == "sqs":
        if not settings.fanout_queue_url:
            raise ConfigurationError("CVCSYNC_FANOUT=sqs needs CVCSYNC_FANOUT_QUEUE_URL")
        return QueueDispatcher(sqs_client(env), settings.fanout_queue_url)
    if mode == "fc":
        return FcDispatcher(invocation)
    return LambdaDispatcher(invocation)


def _column_map(env: Mapping[str, str]) -> Any:
    from cvcsync.inputs.columns import (
        ColumnMap,  # only uploads read columns: the queue and scheduled paths do not pay for it
    )

    return ColumnMap.from_env(env)


def stateless_context(invocation: Invocation, env: Mapping[str, str]) -> SyncContext:
    """For the queue function without a state bucket: state in this container's /tmp, dead letters to the log.

    Nothing here imports boto3 (or the column mapping: changes are not files), which keeps an FC cold start small;
    the price is that the event-id memory and the stale-event protection last only as long as the warm container.
    """
    settings = SyncSettings.from_env(env)
    client = cvc_client(invocation, env)
    return SyncContext(
        settings=settings,
        cvc=client,
        store=LocalObjectStore(Path(tempfile.gettempdir()) / "cvcsync-ephemeral"),
        output_bucket="state",
        sink=LogDeadLetterSink(),
        invocation=invocation,
        calls_baseline=Counter(client.calls),
    )


def build_context(
    invocation: Invocation,
    bucket: str,
    *,
    inline: Callable[[dict[str, Any]], Any] | None,
    env: Mapping[str, str] | None = None,
    reads_files: bool = True,
) -> SyncContext:
    """Everything one run needs, for the upload in ``bucket`` (outputs go to the state bucket, else there).

    ``inline`` runs a continuation locally when fan-out is ``inline``; None means the caller never continues a run
    (the queue function), so no dispatcher (and no Lambda or FC client) is built. ``reads_files=False``: the caller
    never reads an export (the queue and scheduled functions), so no column mapping is loaded.
    """
    from cvcsync.outputs.letter_sinks import deadletter_sink_from_env  # as object_store: off the stateless path

    env = os.environ if env is None else env
    settings = SyncSettings.from_env(env)
    store = object_store(invocation, env)
    output_bucket = settings.state_bucket or bucket
    client = cvc_client(invocation, env)
    return SyncContext(
        settings=settings,
        cvc=client,
        store=store,
        output_bucket=output_bucket,
        sink=deadletter_sink_from_env(env, store, output_bucket, lambda: sqs_client(env)),
        invocation=invocation,
        dispatcher=dispatcher(settings, invocation, env, inline) if inline is not None else None,
        calls_baseline=Counter(client.calls),
        column_map=_column_map(env) if reads_files else None,
    )
