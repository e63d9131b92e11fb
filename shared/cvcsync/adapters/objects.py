"""Object stores: where uploads are read from and reports, state and dead letters are written to.

One small ``ObjectStore`` protocol and three implementations:

* ``S3ObjectStore`` over a boto3 S3 client: Amazon S3 on Lambda, and OSS through its S3-compatible endpoint on
  Function Compute (``s3_client`` builds the client for either);
* ``LocalObjectStore`` over a directory (bucket = subdirectory), for the CLI and the demo;
* ``MemoryObjectStore``, the fake the unit tests use.

botocore errors are translated here, once, into ``ObjectStoreError`` with a stable code and a retryable flag.
boto3 is imported only by the code that builds or uses an S3 client: a cold start that reads no object pays
nothing for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, cast

from cvcsync.adapters.credentials import from_fc_context
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.config import (
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_REGION,
    ENV_OBJECT_STORE_FLAVOR,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
)
from cvcsync.errors import ConfigurationError, CvcSyncError, InvalidInputError

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
S3_CONNECT_TIMEOUT = 5.0
S3_READ_TIMEOUT = 60.0
S3_MAX_ATTEMPTS = 5
STREAM_BUFFER = 64 * 1024
# boto3's default multipart threshold and part size, for the create-only upload we do ourselves.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
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
_ABSENT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "FileAlreadyExists"})
_TMP_PREFIX = ".cvcsync-tmp-"
_NAME_MAX = 255  # bytes in one file name, on every file system a local store may sit on


class ObjectStoreError(CvcSyncError):
    """A store operation failed. ``code`` is the service's (``NoSuchBucket``, ``AccessDenied``...) or ours."""

    code = "ObjectStoreError"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool = False,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.http_status = http_status
        self.request_id = request_id

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "httpStatus": self.http_status, "requestId": self.request_id}


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str | None


@dataclass(frozen=True)
class Location:
    """Where a file is: an object (``kind="s3"``: S3, or OSS through its S3 endpoint) or a local path."""

    kind: Literal["s3", "local"]
    bucket: str
    key_or_path: str

    @property
    def key(self) -> str:
        """``key_or_path`` by the name code that handles one kind at a time reads more naturally."""
        return self.key_or_path


class ObjectStore(Protocol):
    def open(self, bucket: str, key: str) -> BinaryIO:
        """A stream over the object: memory does not grow with its size. Raises ``NoSuchKey`` when absent."""
        ...

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        """The whole object (for small ones: state, reports), or ``None`` when absent."""
        ...

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        """Write ``data``. With ``if_absent`` the write only creates: ``False`` when the key already exists."""
        ...

    def put_file(
        self, bucket: str, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        """Upload a local file (multipart when large); ``if_absent`` as for ``put_bytes``."""
        ...

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        """Copy the object to ``path``; ``False`` when it is absent."""
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in ascending order, page by page."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; removing an absent one is not an error."""
        ...


def parse_location(text: str) -> Location:
    """``s3://bucket/key`` and ``oss://bucket/key`` (read through the S3-compatible endpoint) or a local path.

    ``file:///path`` is a local path too. The key is taken as written (no URL decoding) and may be empty (a bucket
    or a prefix). Other URL schemes are refused.
    """
    value = text.strip()
    if not value:
        raise InvalidInputError("an empty location")
    scheme, sep, rest = value.partition("://")
    if not sep or (len(scheme) == 1 and scheme.isalpha()):
        return Location("local", "", value)
    scheme = scheme.lower()
    if scheme == "file":
        return Location("local", "", rest if rest.startswith("/") else f"/{rest}")
    if scheme not in ("s3", "oss"):
        raise InvalidInputError(f"unsupported location scheme {scheme!r}: use s3://, oss:// or a local path")
    bucket, _, key = rest.partition("/")
    if not bucket or any(ch.isspace() for ch in bucket):
        raise InvalidInputError(f"location {value!r} has no valid bucket name")
    return Location("s3", bucket, key)


# --- S3 (and OSS through its S3-compatible API) -----------------------------------------------------------------


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
    * SigV4, botocore's ``standard`` retry mode, explicit connect/read timeouts. For endpoints other than AWS,
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
        try:
            with _translating("head", bucket, key):
                response = self.client.head_object(Bucket=bucket, Key=key)
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        return str((response.get("Metadata") or {}).get(_WRITE_ID, ""))

    def _multipart_if_absent(
        self, bucket: str, key: str, path: Path, content_type: str, metadata: dict[str, str]
    ) -> None:
        with _translating("upload", bucket, key):
            upload_id = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata
            )["UploadId"]
        try:
            parts = []
            with path.open("rb") as source, _translating("upload", bucket, key):
                for number in itertools.count(1):
                    chunk = source.read(MULTIPART_CHUNK)
                    if not chunk:
                        break
                    part = self.client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
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

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        try:
            with _translating("download", bucket, key):
                self.client.download_file(bucket, key, str(path))
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return False
            raise
        return True

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            with _translating("head", bucket, key):
                response = self.client.head_object(Bucket=bucket, Key=key)
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
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


# --- Local directory --------------------------------------------------------------------------------------------


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(STREAM_BUFFER), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_bucket(bucket: str) -> None:
    if not bucket or bucket in (".", "..") or "/" in bucket or "\\" in bucket or "\x00" in bucket:
        raise ObjectStoreError(f"invalid bucket name {bucket!r}", code="InvalidBucketName")
    problem = _name_problem(bucket)
    if problem:
        raise ObjectStoreError(f"invalid bucket name: {problem}", code="InvalidBucketName")


def _check_key(key: str) -> None:
    """Keys a directory tree can hold safely: relative, no ``..``/``.``/empty segments, no NUL, not a marker, and
    each segment a name the file system takes (UTF-8, at most ``_NAME_MAX`` bytes)."""
    segments = key.split("/")
    if not key or "\x00" in key or any(segment in ("", ".", "..") for segment in segments):
        raise ObjectStoreError(
            "key is empty, absolute, a directory or has a '.', '..' or empty segment", code="InvalidKey"
        )
    if segments[-1].startswith(_TMP_PREFIX):
        raise ObjectStoreError(f"key names starting with {_TMP_PREFIX!r} are reserved", code="InvalidKey")
    for segment in segments:
        problem = _name_problem(segment)
        if problem:
            raise ObjectStoreError(f"key cannot be a local file name: {problem}", code="InvalidKey")


def _name_problem(name: str) -> str | None:
    """Why a directory or file name cannot be made, without calling the file system (whose errors are OSErrors)."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "a name is not valid Unicode text (a lone surrogate)"
    if size > _NAME_MAX:
        return f"a name is {size} bytes long; at most {_NAME_MAX} allowed"
    return None


class LocalObjectStore:
    """``ObjectStore`` over a directory: ``root/<bucket>/<key>``. Writes are atomic (temp file + ``os.replace``).

    A create-only write (``if_absent``) links the finished temp file into place, which fails if the name exists:
    two writers cannot both win. Keys with ``..`` segments are refused, so nothing escapes ``root``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        _check_bucket(bucket)
        _check_key(key)
        return self.root.joinpath(bucket, *key.split("/"))

    def _absent(self, bucket: str, key: str) -> ObjectStoreError:
        return ObjectStoreError(f"get {bucket}/{key} failed: NoSuchKey", code="NoSuchKey")

    def open(self, bucket: str, key: str) -> BinaryIO:
        path = self._path(bucket, key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._absent(bucket, key) from None

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        try:
            return self._path(bucket, key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _write(self, path: Path, fill: Callable[[BinaryIO], object], if_absent: bool) -> bool:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ObjectStoreError(f"a key is in the way of {path.name}'s directories", code="KeyConflict") from None
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            if path.is_dir():
                raise ObjectStoreError(f"{path.name} is a directory of other keys", code="KeyConflict")
            if not if_absent:
                os.replace(temp, path)
                return True
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            return True
        finally:
            temp.unlink(missing_ok=True)

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        return self._write(self._path(bucket, key), lambda handle: handle.write(data), if_absent)

    def put_file(
        self, bucket: str, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        with Path(path).open("rb") as source:
            return self._write(self._path(bucket, key), lambda handle: shutil.copyfileobj(source, handle), if_absent)

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        try:
            source = self.open(bucket, key)
        except ObjectStoreError as exc:
            if exc.code == "NoSuchKey":
                return False
            raise
        with source:
            self._write(Path(path), lambda handle: shutil.copyfileobj(source, handle), False)
        return True

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        if not path.is_file():
            return None
        return ObjectInfo(size=path.stat().st_size, etag=_md5_file(path))

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        _check_bucket(bucket)
        base = self.root / bucket
        # Walk only the deepest directory the prefix names; the rest of the prefix filters file names.
        parts = [part for part in prefix.split("/")[:-1] if part not in ("", ".", "..")]
        if any(_name_problem(part) for part in parts):
            return  # no directory can have that name, so no key has that prefix
        start = base.joinpath(*parts)
        if not start.is_dir():
            return
        keys = []
        for directory, _, files in os.walk(start):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = Path(directory, name).relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Drop the directories the key implied, as far up as they are empty (S3 has no directories to keep).
        parent, bucket_dir = path.parent, self.root / bucket
        while parent != bucket_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


# --- Memory (the fake) ------------------------------------------------------------------------------------------


class MemoryObjectStore:
    """``ObjectStore`` in a dict, thread-safe: the fake for unit tests. ETags are MD5s, as S3's for simple puts."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[bytes, str, str]] = {}
        self._lock = threading.Lock()

    def _get(self, bucket: str, key: str) -> tuple[bytes, str, str] | None:
        with self._lock:
            return self._objects.get((bucket, key))

    def open(self, bucket: str, key: str) -> BinaryIO:
        found = self._get(bucket, key)
        if found is None:
            raise ObjectStoreError(f"get {bucket}/{key} failed: NoSuchKey", code="NoSuchKey")
        return io.BytesIO(found[0])

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        found = self._get(bucket, key)
        return None if found is None else found[0]

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        if not key:
            raise ObjectStoreError("empty key", code="InvalidKey")
        entry = (bytes(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), content_type)
        with self._lock:
            if if_absent and (bucket, key) in self._objects:
                return False
            self._objects[(bucket, key)] = entry
        return True

    def put_file(
        self, bucket: str, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        return self.put_bytes(bucket, key, Path(path).read_bytes(), content_type=content_type, if_absent=if_absent)

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        data = self.get_bytes(bucket, key)
        if data is None:
            return False
        Path(path).write_bytes(data)
        return True

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        found = self._get(bucket, key)
        return None if found is None else ObjectInfo(size=len(found[0]), etag=found[1])

    def content_type(self, bucket: str, key: str) -> str | None:
        found = self._get(bucket, key)
        return None if found is None else found[2]

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(k for b, k in self._objects if b == bucket and k.startswith(prefix))
        yield from keys

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._objects.pop((bucket, key), None)
