"""Object stores: where uploads are read from and reports, state and dead letters are written to.

One small ``ObjectStore`` protocol and three implementations:

* ``S3ObjectStore`` over a boto3 S3 client: Amazon S3 on Lambda, and OSS through its S3-compatible endpoint on
  Function Compute (``s3_client`` builds the client for either), in ``adapters.s3``;
* ``LocalObjectStore`` over a directory (bucket = subdirectory), for the CLI and the demo;
* ``MemoryObjectStore``, the fake the unit tests use.

Every store raises ``ObjectStoreError`` with a stable code and a retryable flag (``adapters.s3`` translates
botocore's errors into it, once).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from cvcsync.errors import CvcSyncError, InvalidInputError

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_TYPE = "application/octet-stream"
STREAM_BUFFER = 64 * 1024

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

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) of the object, clipped to its size, or ``None``
        when it is absent: one request whatever the object's size (the state's point reads, ``engine.generation``)."""
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in ascending order, page by page."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; removing an absent one is not an error."""
        ...

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        """Remove the objects (S3: up to 1000 per request); absent ones are not an error."""
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
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ObjectStoreError(
                    f"a key is in the way of {path.name}'s directories", code="KeyConflict"
                ) from None
            try:
                fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
                break
            except FileNotFoundError:  # a delete dropped the directory it emptied, between the two steps
                if attempt == 2:
                    raise
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

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        try:
            with self._path(bucket, key).open("rb") as handle:
                handle.seek(start)
                return handle.read() if end is None else handle.read(max(0, end - start))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

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
        # A prefix that ends inside a name ("state/gen-") names no key in a subdirectory not starting with it: those
        # are not walked (a local state's journal holds thousands of entries beside its generations).
        rest = prefix.rsplit("/", 1)[-1]
        keys = []
        for directory, subdirectories, files in os.walk(start):
            if rest and directory == str(start):
                subdirectories[:] = [name for name in subdirectories if name.startswith(rest)]
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
            with contextlib.suppress(OSError):  # another writer filled it, or another delete dropped it, meanwhile
                parent.rmdir()
            parent = parent.parent

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        for key in keys:
            self.delete(bucket, key)


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

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        found = self._get(bucket, key)
        return None if found is None else found[0][start:end]

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

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        for key in keys:
            self.delete(bucket, key)
