"""The object store on S3 and on OSS through its S3-compatible API: the boto3 client (``s3_client``), botocore's
errors translated once into ``ObjectStoreError``, and ``S3ObjectStore`` with create-only writes that hold on both
services (If-None-Match, OSS's x-oss-forbid-overwrite, 409 ConditionalRequestConflict retried, a lost answer told
apart from a lost race by a write id). boto3 is imported only by the code that builds or uses a client.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from cvcsync.adapters.credentials import from_fc_context
from cvcsync.adapters.objects import DEFAULT_CONTENT_TYPE, STREAM_BUFFER, ObjectInfo, ObjectStoreError
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.config import (
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_REGION,
    ENV_OBJECT_STORE_FLAVOR,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
)
from cvcsync.errors import ConfigurationError

logger = logging.getLogger(__name__)

S3_CONNECT_TIMEOUT = 5.0
S3_READ_TIMEOUT = 60.0
S3_MAX_ATTEMPTS = 5
S3_POOL_CONNECTIONS = 32
_ABSENT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "FileAlreadyExists"})
_PAST_END_CODES = frozenset({"InvalidRange", "416"})
DELETE_BATCH = 1000  # keys per DeleteObjects request
# boto3's default multipart threshold and part size, for the create-only upload we do ourselves.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
# Parts of a create-only multipart upload in flight at once: one S3 stream carries 50-100 MB/s, and a generation of
# a 1M-user state is about 120 MB. At most this many chunks are in memory (32 MB).
MULTIPART_THREADS = 4
ADDRESSING_STYLES = ("virtual", "path", "auto")
# Which create-only header a store honours: S3's If-None-Match (s3) or, beside it, OSS's x-oss-forbid-overwrite.
FLAVORS = ("auto", "s3", "oss")
# S3 answers 409 ConditionalRequestConflict while another conditional write to the key is in progress and advises
# a retry: a few quick ones (about 1.5 s at most in all), then the answer is read from what the key holds.
CONFLICT_RETRY = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0)
_CONFLICT = "ConditionalRequestConflict"
# User metadata (x-amz-meta-cvcsync-write-id) naming the create-only write that made an object; see _create_only.
_WRITE_ID = "cvcsync-write-id"
# OSS's S3-compatible endpoints: https://s3.oss-<region>.aliyuncs.com, or -internal inside the region's VPC.
_OSS_HOST = re.compile(r"(?:^|\.)oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",
    }
)


def s3_client(env: Mapping[str, str] | None = None, fc_context: Any = None) -> Any:
    """A boto3 S3 client for Amazon S3 or for OSS, configured from the environment.

    * Endpoint: ``CVCSYNC_S3_ENDPOINT``; unset means Amazon S3. For OSS use its S3-compatible endpoint,
      ``https://s3.oss-<region>.aliyuncs.com`` (``https://s3.oss-<region>-internal.aliyuncs.com`` from inside the
      region). On Function Compute (``fc_context`` given) with no endpoint set, the public OSS endpoint of the
      function's region is used.
    * Region: ``CVCSYNC_S3_REGION``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the region in an OSS
      endpoint's host name, else the FC context's region.
    * Addressing style: ``CVCSYNC_S3_ADDRESSING_STYLE`` (``virtual``, ``path``, ``auto``); OSS requires
      ``virtual``, which is the default for OSS endpoints.
    * Flavour: ``CVCSYNC_OBJECT_STORE_FLAVOR`` says which create-only header the store honours (``_flavor``).
    * SigV4, botocore's ``standard`` retry mode, explicit connect/read timeouts, ``S3_POOL_CONNECTIONS`` connections
      (the state's per-user requests go out in parallel). For endpoints other than AWS,
      checksums are only sent when an operation requires them: botocore's default CRC trailers (aws-chunked
      uploads) are not understood by every S3-compatible service.
    * Credentials: the FC context's STS credentials (the service role) when it carries them; otherwise boto3's
      default chain (Lambda's execution role, the environment, a profile).
    """
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    fc_region = _read(fc_context, "region") if fc_context is not None else None
    endpoint = env.get(ENV_S3_ENDPOINT, "").strip().rstrip("/") or None
    if endpoint is None and fc_context is not None and fc_region:
        endpoint = f"https://s3.oss-{fc_region}.aliyuncs.com"
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{ENV_S3_ENDPOINT} must be a full URL such as https://s3.oss-cn-hangzhou.aliyuncs.com"
        )
    oss_region = _oss_region(endpoint)
    region = (
        env.get(ENV_S3_REGION, "").strip()
        or env.get(ENV_AWS_REGION, "").strip()
        or env.get(ENV_AWS_DEFAULT_REGION, "").strip()
        or oss_region
        or (str(fc_region) if fc_region else None)
    )
    style = env.get(ENV_S3_ADDRESSING_STYLE, "").strip().lower() or ("virtual" if oss_region else "auto")
    if style not in ADDRESSING_STYLES:
        raise ConfigurationError(f"{ENV_S3_ADDRESSING_STYLE} must be one of {', '.join(ADDRESSING_STYLES)}")
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": style},
        "retries": {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
        "connect_timeout": S3_CONNECT_TIMEOUT,
        "read_timeout": S3_READ_TIMEOUT,
        # The state's per-user reads and writes go out in parallel (``engine.journal.PARALLEL``): a connection each.
        "max_pool_connections": S3_POOL_CONNECTIONS,
    }
    if endpoint is not None:
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    flavor = _flavor(env, endpoint)
    kwargs: dict[str, Any] = {"config": Config(**options), "region_name": region, "endpoint_url": endpoint}
    fc_credentials = from_fc_context(fc_context)() if fc_context is not None else None
    if fc_credentials is not None:
        kwargs["aws_access_key_id"] = fc_credentials.access_key_id
        kwargs["aws_secret_access_key"] = fc_credentials.access_key_secret
        kwargs["aws_session_token"] = fc_credentials.security_token
    client = boto3.session.Session().client("s3", **kwargs)
    if flavor == "oss":
        client.meta.events.register("before-sign.s3.PutObject", _oss_forbid_overwrite)
        client.meta.events.register("before-sign.s3.CompleteMultipartUpload", _oss_forbid_overwrite)
    kind = "oss" if oss_region else ("s3-compatible" if endpoint else "aws")
    logger.debug(
        "object store client ready",
        extra={
            "objectStore": kind,
            "flavor": flavor,
            "addressingStyle": style,
            "fcCredentials": fc_credentials is not None,
        },
    )
    return client


def _read(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _oss_region(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    match = _OSS_HOST.search(host)
    return match.group(1) if match else None


def _flavor(env: Mapping[str, str], endpoint: str | None) -> str:
    """``s3`` (If-None-Match only) or ``oss`` (x-oss-forbid-overwrite beside it), from the setting or the endpoint.

    ``auto`` (the default) gives ``s3`` for Amazon S3 itself (no endpoint) and ``oss`` for every other endpoint,
    OSS host name or not. Sending both headers is the safe choice where the endpoint cannot be placed (a CNAME or
    custom domain in front of OSS, a proxy, MinIO): S3 and S3-compatible stores ignore a header they do not know
    and OSS ignores If-None-Match on writes, so whichever store it is, its own create-only condition is there. The
    other way round, a CNAME in front of OSS would get If-None-Match alone, and a create-only write would silently
    overwrite. Set ``s3`` only for a store that refuses headers it does not know.
    """
    value = env.get(ENV_OBJECT_STORE_FLAVOR, "").strip().lower() or "auto"
    if value not in FLAVORS:
        raise ConfigurationError(f"{ENV_OBJECT_STORE_FLAVOR} must be one of {', '.join(FLAVORS)}")
    if value != "auto":
        return value
    return "s3" if endpoint is None else "oss"


def _oss_forbid_overwrite(request: Any, **_: Any) -> None:
    """OSS honours its own create-only header; send it beside S3's ``If-None-Match: *`` so either one holds."""
    if request.headers.get("If-None-Match") in ("*", b"*"):
        request.headers["x-oss-forbid-overwrite"] = "true"


def _error_code(exc: BaseException) -> tuple[str, int | None, str | None]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    status = meta.get("HTTPStatusCode")
    return str(error.get("Code") or status or "Unknown"), status, meta.get("RequestId")


def _client_error_of(exc: BaseException) -> BaseException | None:
    """The botocore ``ClientError`` behind ``exc`` (boto3's transfer manager wraps it), if any."""
    from botocore.exceptions import ClientError

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ClientError):
            return cast("BaseException", seen)  # botocore is untyped: isinstance narrows to Any
        seen = seen.__cause__ or seen.__context__
    return None


def translate_s3_error(exc: BaseException, action: str, bucket: str, key: str | None = None) -> ObjectStoreError:
    """The one place botocore and boto3 exceptions become ``ObjectStoreError``."""
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )
    from botocore.exceptions import (
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ResponseStreamingError,
    )

    where = f"{action} s3://{bucket}/{key}" if key is not None else f"{action} s3://{bucket}"
    client_error = _client_error_of(exc)
    if client_error is not None:
        code, status, request_id = _error_code(client_error)
        if code in _ABSENT_CODES:
            code = "NoSuchKey" if key is not None else "NoSuchBucket"
        retryable = code in _RETRYABLE_CODES or (status is not None and status >= 500)
        return ObjectStoreError(
            f"{where} failed: {code}", code=code, retryable=retryable, http_status=status, request_id=request_id
        )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ObjectStoreError(f"{where} failed: no usable credentials", code="NoCredentials")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ResponseStreamingError)):
        return ObjectStoreError(f"{where} failed: {type(exc).__name__}", code="ConnectionError", retryable=True)
    return ObjectStoreError(f"{where} failed: {type(exc).__name__}", code=type(exc).__name__)


@contextlib.contextmanager
def _translating(action: str, bucket: str, key: str | None = None) -> Iterator[None]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        raise translate_s3_error(exc, action, bucket, key) from exc


class _S3Stream(io.RawIOBase):
    """botocore's ``StreamingBody`` as a raw io stream whose read errors are ``ObjectStoreError`` too."""

    def __init__(self, body: Any, bucket: str, key: str) -> None:
        self._body = body
        self._bucket = bucket
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _translating("read", self._bucket, self._key):
            chunk = self._body.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3ObjectStore:
    """``ObjectStore`` over a boto3 S3 client (from ``s3_client``, or any configured one).

    ``conflict_retry`` bounds the retries of a create-only write that meets 409 ConditionalRequestConflict;
    ``sleep`` waits between them (injected so tests need not wait).
    """

    def __init__(
        self,
        client: Any,
        *,
        page_size: int = 1000,
        conflict_retry: RetryPolicy = CONFLICT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.conflict_retry = conflict_retry
        self._sleep = sleep

    def open(self, bucket: str, key: str) -> BinaryIO:
        with _translating("get", bucket, key):
            response = self.client.get_object(Bucket=bucket, Key=key)
        return io.BufferedReader(_S3Stream(response["Body"], bucket, key), buffer_size=STREAM_BUFFER)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        try:
            with self.open(bucket, key) as stream:
                return stream.read()
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        if not if_absent:
            with _translating("put", bucket, key):
                self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
            return True

        def write(metadata: dict[str, str]) -> None:
            with _translating("put", bucket, key):
                self.client.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata, IfNoneMatch="*"
                )

        return self._create_only(bucket, key, write)

    def put_file(
        self, bucket: str, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        if not if_absent:
            with _translating("upload", bucket, key):
                self.client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
            return True
        # boto3's transfer manager does not pass IfNoneMatch on: write create-only ourselves, in one PUT or as a
        # multipart upload whose completion carries the condition (S3, moto and OSS all check it there).
        source = Path(path)

        def write(metadata: dict[str, str]) -> None:
            if source.stat().st_size > MULTIPART_THRESHOLD:
                self._multipart_if_absent(bucket, key, source, content_type, metadata)
                return
            with source.open("rb") as body, _translating("put", bucket, key):
                self.client.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata, IfNoneMatch="*"
                )

        return self._create_only(bucket, key, write)

    def _create_only(self, bucket: str, key: str, write: Callable[[dict[str, str]], None]) -> bool:
        """Run a create-only ``write`` to its end: ``True`` when this call made the object, ``False`` when another
        writer did, an error when that cannot be known.

        S3 (since 2024), moto 5 and OSS all refuse If-None-Match: * on an existing key with 412
        PreconditionFailed; OSS answers its x-oss-forbid-overwrite (see ``s3_client``) with 409 FileAlreadyExists.
        No head-then-put fallback: that would not be create-only. Two answers need more than the status:

        * 409 ConditionalRequestConflict: a concurrent conditional write to the key is in progress and nothing
          was written; S3 advises a retry, so the write is tried again with backoff (a multipart upload from its
          start, as S3 asks), ``conflict_retry`` bounding it.
        * 412 after a resend (botocore resends a request whose answer was lost, and so do we after a 409) may
          meet the object our own earlier attempt made. Every attempt of one call carries the same write id in
          the object's metadata, so the object itself says whose it is. Read as "taken", a lost answer would
          leave a claim or a "finished" marker written and its work never done.

        After a retryable failure (the last 409, a 5xx, a dropped connection; or NoSuchUpload, the answer to a
        resent completion whose first answer was lost) the key is read: our write id means the write landed,
        another writer's object means the race was lost, an absent key re-raises the failure.
        """
        write_id = uuid.uuid4().hex
        attempts, attempt = max(self.conflict_retry.max_attempts, 1), 0
        while True:
            attempt += 1
            try:
                write({_WRITE_ID: write_id})
                return True
            except ObjectStoreError as exc:
                if exc.code in _PRECONDITION_CODES:
                    return self._write_id_of(bucket, key) == write_id
                if exc.code == _CONFLICT and attempt < attempts:
                    delay = self.conflict_retry.backoff(attempt)
                    logger.info(
                        "create-only write met a concurrent one; retrying",
                        extra={"bucket": bucket, "key": key, "attempt": attempt, "delay": round(delay, 3)},
                    )
                    self._sleep(delay)
                    continue
                if not (exc.retryable or exc.code == "NoSuchUpload"):  # NoSuchUpload: a resent, done completion
                    raise
                try:
                    found = self._write_id_of(bucket, key)
                except ObjectStoreError:
                    raise exc from exc.__cause__  # the write failed; the read only could not tell more
                if found is None:
                    raise
                return found == write_id

    def _write_id_of(self, bucket: str, key: str) -> str | None:
        """The write id of the object at ``key`` ("" when it carries none), or ``None`` when there is no object."""
        response = self._head_object(bucket, key)
        return None if response is None else str((response.get("Metadata") or {}).get(_WRITE_ID, ""))

    def _head_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """HeadObject's answer, or None when there is no such object."""
        try:
            with _translating("head", bucket, key):
                return dict(self.client.head_object(Bucket=bucket, Key=key))
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise

    def _multipart_if_absent(
        self, bucket: str, key: str, path: Path, content_type: str, metadata: dict[str, str]
    ) -> None:
        with _translating("upload", bucket, key):
            upload_id = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata
            )["UploadId"]
        try:
            parts = self._upload_parts(bucket, key, upload_id, path)
            with _translating("upload", bucket, key):
                self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
                )
        except BaseException:
            from botocore.exceptions import BotoCoreError, ClientError

            # Parts of an abandoned upload are billed until aborted; the original error is what matters.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    def _upload_parts(self, bucket: str, key: str, upload_id: str, path: Path) -> list[dict[str, Any]]:
        """The file's parts, ``MULTIPART_THREADS`` at a time (boto3's clients are thread-safe), in order; the first
        part that fails fails the upload once the parts in flight have ended."""
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        def send(number: int, chunk: bytes) -> dict[str, Any]:
            with _translating("upload", bucket, key):
                part = self.client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
            return {"PartNumber": number, "ETag": part["ETag"]}

        parts: list[dict[str, Any]] = []
        sending: deque[Future[dict[str, Any]]] = deque()
        with path.open("rb") as source, ThreadPoolExecutor(MULTIPART_THREADS, "cvcsync-part") as pool:
            for number in itertools.count(1):
                chunk = source.read(MULTIPART_CHUNK)
                if not chunk:
                    break
                if len(sending) >= MULTIPART_THREADS:
                    parts.append(sending.popleft().result())
                sending.append(pool.submit(send, number, chunk))
            parts.extend(future.result() for future in sending)
        return parts

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        try:
            with _translating("download", bucket, key):
                self.client.download_file(bucket, key, str(path))
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return False
            raise
        return True

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        if end is not None and end <= start:
            return b""
        span = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            with _translating("get", bucket, key):
                response = self.client.get_object(Bucket=bucket, Key=key, Range=span)
                body = response["Body"]
                try:
                    return bytes(body.read())
                finally:
                    body.close()
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return None
            if exc.code in _PAST_END_CODES:  # a range past the object's end: S3 answers 416, we answer nothing
                return b""
            raise

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        response = self._head_object(bucket, key)
        if response is None:
            return None
        etag = str(response.get("ETag") or "").strip('"') or None
        return ObjectInfo(size=int(response.get("ContentLength") or 0), etag=etag)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        with _translating("list", bucket):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size})
            for page in pages:
                for item in page.get("Contents") or ():
                    yield str(item["Key"])

    def delete(self, bucket: str, key: str) -> None:
        with _translating("delete", bucket, key):
            self.client.delete_object(Bucket=bucket, Key=key)

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        """DeleteObjects, 1000 keys a request (S3's limit; OSS's S3 API takes the same); a key it reports as not
        deleted is an error, with that key's code."""
        for start in range(0, len(keys), DELETE_BATCH):
            part = keys[start : start + DELETE_BATCH]
            with _translating("delete", bucket):
                answer = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": key} for key in part], "Quiet": True}
                )
            errors = [e for e in answer.get("Errors") or () if e.get("Code") not in _ABSENT_CODES]
            if errors:
                first = errors[0]
                code = str(first.get("Code") or "DeleteFailed")
                raise ObjectStoreError(
                    f"delete s3://{bucket}/{first.get('Key')} failed: {code} ({len(errors)} of {len(part)} keys)",
                    code=code,
                    retryable=code in _RETRYABLE_CODES,
                )


# --- Local directory --------------------------------------------------------------------------------------------
