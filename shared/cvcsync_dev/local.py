"""Running the engine outside a function: the CLI's ``sync`` and ``invoke``.

``sync`` keeps the shadow state, reports and dead letters in a local directory (``--state``, default
``.cvcsync``) or under an ``s3://bucket/prefix``; ``invoke`` loads a handler from ``functions/`` and calls it with
a realistic context (request id, deadline, credentials), as ``sam local invoke`` would.

``invoke`` checks the event file first (present, not empty, JSON: a truncated file says so in one line), and a
handler that cannot reach its object store (the upload function reads the export from one) says what it needs
instead of a botocore traceback: locally, an S3-compatible server (moto, MinIO) at ``CVCSYNC_S3_ENDPOINT``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.objects import LocalObjectStore, ObjectStore, ObjectStoreError, parse_location
from cvcsync.adapters.s3 import S3ObjectStore, s3_client
from cvcsync.config import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_S3_ENDPOINT, ENV_SECURITY_TOKEN, SyncSettings
from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.inputs.columns import ColumnMap
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink
from cvcsync.platform.context import SyncContext
from cvcsync.platform.runtime import LocalLambdaContext, from_context, local_fc_context
from cvcsync.runs.continuation import apply_chunk, resume_run

DEFAULT_STATE_DIR = ".cvcsync"
FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"


def _inline_continuation(ctx: SyncContext) -> Callable[[dict[str, Any]], Any]:
    def run(event: dict[str, Any]) -> Any:
        step = event["cvcsync"]
        if step["action"] == "resume":
            return resume_run(step["runId"], ctx, step=step.get("step"), not_before=step.get("notBefore"))
        return apply_chunk(step["runId"], int(step["chunk"]), int(step["chunks"]), ctx, step=step.get("step"))

    return run


def local_context(
    state: str | None,
    cvc: CvcClient,
    *,
    env: Mapping[str, str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_apply_start: Callable[[int], None] | None = None,
) -> SyncContext:
    """A context whose outputs (state, reports, plans, dead letters) live at ``state``: a directory or s3://."""
    env = os.environ if env is None else env
    settings = SyncSettings.from_env(env)
    location = parse_location(state or DEFAULT_STATE_DIR)
    store: ObjectStore
    if location.kind == "local":
        directory = Path(location.key).expanduser().resolve()
        directory.mkdir(parents=True, exist_ok=True)
        store, bucket, prefix = LocalObjectStore(directory.parent), directory.name, ""
    else:
        store, bucket, prefix = S3ObjectStore(s3_client(env)), location.bucket, location.key
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    settings = dataclasses.replace(settings, output_prefix=prefix)

    ctx = SyncContext(
        settings=settings,
        cvc=cvc,
        store=store,
        output_bucket=bucket,
        sink=ObjectDeadLetterSink(store, bucket, settings.key("dead-letters") + "/"),
        invocation=from_context(None),
        on_progress=on_progress,
        on_apply_start=on_apply_start,
        column_map=ColumnMap.from_env(env),
    )
    ctx.dispatcher = _Inline(ctx)
    return ctx


class _Inline:
    """Continuations and chunks of a local run are applied right here, in order."""

    def __init__(self, ctx: SyncContext) -> None:
        self._run = _inline_continuation(ctx)

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._run(event)


def open_input(location_text: str, env: Mapping[str, str] | None = None) -> tuple[IO[bytes], str, dict[str, Any]]:
    """A local file or an s3://bucket/key, as a stream, its name, and the report's ``source``."""
    location = parse_location(location_text)
    if location.kind == "local":
        path = Path(location.key)
        if not path.is_file():
            raise InvalidInputError(f"{location_text}: no such file", code="NoSuchFile")
        return path.open("rb"), path.name, {"file": str(path), "key": path.name}
    if not location.key:
        raise InvalidInputError(f"{location_text}: name an object, not a bucket", code="NoSuchFile")
    store = S3ObjectStore(s3_client(os.environ if env is None else env))
    return store.open(location.bucket, location.key), location.key, {"bucket": location.bucket, "key": location.key}


def load_handler(function: str) -> Callable[[Any, Any], Any]:
    """``functions/<function>/index.py:handler``, loaded by path as FC and Lambda load it."""
    path = Path(function) if function.endswith(".py") else FUNCTIONS_DIR / function / "index.py"
    if not path.is_file():
        known = sorted(p.name for p in FUNCTIONS_DIR.iterdir() if (p / "index.py").is_file())
        raise ConfigurationError(f"no function {function!r}; known: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(f"cvcsync_function_{path.parent.name}", path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[Any, Any], Any] = module.handler
    return handler


def read_event(path: Path) -> tuple[bytes, Any]:
    """The event file's bytes and its JSON value; one clear ``InvalidInputError`` (a usage error) if it has none."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such event file", code="NoSuchFile")
    raw = path.read_bytes()
    if not raw.strip():
        raise InvalidInputError(
            f"{path}: the event file is empty; give a JSON event, e.g. events/fc/oss-putobject.json",
            code="BadEventFile",
        )
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        truncated = "unexpected end of data" in str(exc) or "EOF" in str(exc)
        what = "ends before the JSON does (a truncated file?)" if truncated else "is not JSON"
        raise InvalidInputError(f"{path}: the event file {what}: {exc}", code="BadEventFile") from None


STORE_SETUP = (
    "locally, run an S3-compatible server (moto or MinIO), put the export in it at the bucket and key the event "
    f"names, and set {ENV_S3_ENDPOINT}=http://127.0.0.1:PORT (README: 'Running a function locally')"
)


def _store_problem(function: str, exc: BaseException, env: Mapping[str, str]) -> ConfigurationError | None:
    """What a handler needs when its object store failed it, in one line; None for a failure that says enough."""
    what = str(exc) if isinstance(exc, ObjectStoreError) else f"{type(exc).__name__}: {exc}"
    configured = env.get(ENV_S3_ENDPOINT, "").strip()
    if not configured:
        return ConfigurationError(f"{function} needs an object store and none is configured ({what}); {STORE_SETUP}")
    parts = urllib.parse.urlsplit(configured)
    endpoint = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")  # no user:password
    code = getattr(exc, "code", "")
    if code in ("NoSuchKey", "NoSuchBucket"):
        return ConfigurationError(
            f"{function}: {what}: put the export in the object store at {endpoint} first, at the bucket and key "
            "the event names (README: 'Running a function locally')"
        )
    if code in ("ConnectionError", "NoCredentials") or not isinstance(exc, ObjectStoreError):
        return ConfigurationError(
            f"{function} needs an object store: the one at {ENV_S3_ENDPOINT} ({endpoint}) failed: {what}; is it "
            "running? (with --platform lambda, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY sign for it: any value for moto)"
        )
    return None


def _is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, ObjectStoreError) or type(exc).__module__.startswith(("botocore.", "boto3."))


def invoke(
    function: str, event_path: Path, *, platform: str = "fc", timeout: int = 60, env: Mapping[str, str] | None = None
) -> Any:
    """Call a handler the way its platform would: FC with bytes and an FC context, Lambda with a dict."""
    env = os.environ if env is None else env
    raw, event = read_event(event_path)
    handler = load_handler(function)
    try:
        if platform == "fc":
            credentials = {
                "access_key_id": env.get(ENV_ACCESS_KEY_ID, ""),
                "access_key_secret": env.get(ENV_ACCESS_KEY_SECRET, ""),
                "security_token": env.get(ENV_SECURITY_TOKEN, ""),
            }
            answer = handler(raw, local_fc_context(Path(function).stem, timeout=timeout, credentials=credentials))
        else:
            answer = handler(event, LocalLambdaContext(function, timeout=timeout))
    except Exception as exc:
        problem = _store_problem(Path(function).stem, exc, env) if _is_store_error(exc) else None
        if problem is not None:
            raise problem from exc
        raise
    if isinstance(answer, (bytes, bytearray)):
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError:
            return bytes(answer).decode("utf-8", "replace")
    return answer
