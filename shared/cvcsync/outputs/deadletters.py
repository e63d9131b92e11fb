"""Dead letters: what could not be synced, kept whole so that a later redrive can try it again.

A ``DeadLetter`` holds the input record exactly as received, where it came from, the error (code, message, CVC's
request id, attempts, whether a retry may help), when it failed and in which run. Every sink shares one base,
``DeadLetterSink``, which validates, serialises to NDJSON lines with orjson, counts and logs (codes and counts
only: never the record, which holds personal data); a sink only writes, reads and removes lines:

* ``ObjectDeadLetterSink``: one NDJSON object per ``put`` under ``<output prefix>dead-letters/``, on any
  ``ObjectStore`` (OSS and S3 alike); the default.
* ``QueueDeadLetterSink``: one SQS message per letter, sent in batches; a letter too large for a message goes to
  an overflow sink (the object sink when configured) and is never dropped.
* ``MemoryDeadLetterSink``: the fake for tests.

``read``/``remove`` exist for the redrive: read a page of ``StoredLetter`` (a letter and an opaque handle), retry
them, remove the handles of those that went through. ``pages`` walks a whole sink once (one redrive pass) and
``count`` sizes the backlog (the heartbeat). A letter the redrive retried in vain goes back with the failure in its
``history`` (``DeadLetter.retried``), keeping its ``identity``; one it gives up on goes to ``ParkedLetters``
(``<output prefix>parked/``), one object per letter with every failure.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from cvcsync.adapters.objects import ObjectStore
from cvcsync.config import ENV_DEADLETTER_QUEUE_URL, ENV_DEADLETTER_SINK, output_prefix
from cvcsync.errors import ConfigurationError, CvcSyncError, InvalidInputError

logger = logging.getLogger(__name__)

LetterKind = Literal["record", "message"]
KINDS: tuple[LetterKind, ...] = ("record", "message")
SINK_KINDS = ("object", "queue")
DEAD_LETTER_DIR = "dead-letters/"
FORMAT_VERSION = 1
MAX_ERROR_MESSAGE = 2000
# SQS accepts up to 1 MiB since 2025, but a queue keeps the MaximumMessageSize it was created with (256 KiB was
# the limit for years) and a batch's total is capped too: stay under the old limit, which every queue accepts.
SQS_MAX_MESSAGE_BYTES = 256 * 1024
SQS_BATCH_ENTRIES = 10
SQS_SEND_ATTEMPTS = 3
UNREADABLE = "UnreadableDeadLetter"
_SAFE_RUN_ID = re.compile(r"[^A-Za-z0-9._-]")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeadLetterError(CvcSyncError):
    """A sink could not store or fetch letters."""

    code = "DeadLetterError"

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable


@dataclass(frozen=True)
class DeadLetter:
    """One record (or queue message) that failed, with everything needed to understand and retry it."""

    record: dict[str, Any]
    source: dict[str, Any]
    error_code: str
    error_message: str
    request_id: str | None = None
    attempts: int = 1
    failed_at: str = field(default_factory=lambda: _iso(_now()))
    run_id: str = ""
    kind: LetterKind = "record"
    retryable: bool = False
    # The redrive's earlier failures of this letter, oldest first (``failure()`` entries); empty until redriven.
    history: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.record, dict) or not isinstance(self.source, dict):
            problems.append("record and source must be objects")
        if not isinstance(self.error_code, str) or not self.error_code:
            problems.append("error_code must be a non-empty string")
        if not isinstance(self.error_message, str):
            problems.append("error_message must be a string")
        if self.request_id is not None and not isinstance(self.request_id, str):
            problems.append("request_id must be a string or null")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 0:
            problems.append("attempts must be a whole number")
        if not isinstance(self.failed_at, str) or not _is_iso(self.failed_at):
            problems.append("failed_at must be an ISO-8601 time")
        if not isinstance(self.run_id, str):
            problems.append("run_id must be a string")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}")
        if not isinstance(self.retryable, bool):
            problems.append("retryable must be true or false")
        if not isinstance(self.history, tuple) or not all(isinstance(h, dict) for h in self.history):
            problems.append("history must be a list of objects")
        if problems:
            raise InvalidInputError(f"invalid dead letter: {'; '.join(problems)}", code="InvalidDeadLetter")

    @classmethod
    def from_error(
        cls,
        record: Mapping[str, Any],
        source: Mapping[str, Any],
        error: BaseException,
        *,
        run_id: str,
        kind: LetterKind = "record",
        attempts: int | None = None,
        now: datetime | None = None,
    ) -> DeadLetter:
        """The letter for ``record`` that failed with ``error``: code, message, request id, attempts, retryable."""
        if isinstance(error, CvcSyncError):
            code, message, retryable = error.code, error.message, bool(error.retryable)
        else:
            code, message, retryable = type(error).__name__, str(error), False
        request_id = getattr(error, "request_id", None)
        tried = attempts if attempts is not None else int(getattr(error, "attempts", 0) or 1)
        return cls(
            record=dict(record),
            source=dict(source),
            error_code=code,
            error_message=message[:MAX_ERROR_MESSAGE],
            request_id=request_id if isinstance(request_id, str) else None,
            attempts=tried,
            failed_at=_iso(now or _now()),
            run_id=run_id,
            kind=kind,
            retryable=retryable,
        )

    # -- the redrive's bookkeeping ------------------------------------------------------------------------------

    @property
    def redrives(self) -> int:
        """How many times a redrive has already tried this letter and failed."""
        return len(self.history)

    @property
    def first_failed_at(self) -> str:
        """When the record first failed (the original sync's time), whatever happened to it since."""
        first = self.history[0].get("failedAt") if self.history else None
        return first if isinstance(first, str) else self.failed_at

    @property
    def identity(self) -> str:
        """Stable across redrives: the same record from the same source and first failure. Two stored letters with
        one identity are copies (a crash between a re-put and its removal), never two different failures."""
        basis = [self.kind, self.record, self.source, self.first_failed_at]
        try:
            canonical = orjson.dumps(basis, option=orjson.OPT_SORT_KEYS, default=str)
        except orjson.JSONEncodeError:  # a lone surrogate, as in to_json
            canonical = json.dumps(basis, sort_keys=True, ensure_ascii=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()[:32]

    def failure(self) -> dict[str, Any]:
        """This letter's own failure as one ``history`` entry: time, code, message, request id, attempts, run."""
        return {
            "failedAt": self.failed_at,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
            "requestId": self.request_id,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "runId": self.run_id,
        }

    def failures(self) -> list[dict[str, Any]]:
        """Every failure so far, oldest first: the history and then this letter's own."""
        return [*self.history, self.failure()]

    def retried(
        self,
        *,
        error_code: str,
        error_message: str,
        request_id: str | None,
        attempts: int,
        retryable: bool,
        run_id: str,
        now: datetime | None = None,
    ) -> DeadLetter:
        """The letter to put back after a redrive failed again: the new error on top, the old one into history."""
        return replace(
            self,
            history=(*self.history, self.failure()),
            error_code=error_code or "Unknown",
            error_message=error_message[:MAX_ERROR_MESSAGE],
            request_id=request_id,
            attempts=attempts,
            retryable=retryable,
            run_id=run_id,
            failed_at=_iso(now or _now()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "runId": self.run_id,
            "failedAt": self.failed_at,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
            "requestId": self.request_id,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "source": self.source,
            "record": self.record,
            **({"history": list(self.history)} if self.history else {}),
        }

    def to_json(self) -> bytes:
        """One line of NDJSON (no newline). A record orjson cannot encode (a lone surrogate) is escaped instead."""
        try:
            return orjson.dumps(self.to_dict(), default=str)
        except orjson.JSONEncodeError:
            return json.dumps(self.to_dict(), ensure_ascii=True, default=str).encode()

    @classmethod
    def from_dict(cls, data: Any) -> DeadLetter:
        if not isinstance(data, dict):
            raise InvalidInputError("a dead letter must be a JSON object", code="InvalidDeadLetter")
        try:
            return cls(
                record=data["record"],
                source=data["source"],
                error_code=data["errorCode"],
                error_message=data["errorMessage"],
                request_id=data.get("requestId"),
                attempts=data["attempts"],
                failed_at=data["failedAt"],
                run_id=data["runId"],
                kind=data["kind"],
                retryable=data["retryable"],
                history=_history(data.get("history")),
            )
        except KeyError as exc:
            raise InvalidInputError(f"dead letter lacks {exc.args[0]!r}", code="InvalidDeadLetter") from None

    @classmethod
    def from_json(cls, line: bytes | str) -> DeadLetter:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            data = _stdlib_json(line)  # what to_json escaped with the stdlib (a lone surrogate) reads back there
        return cls.from_dict(data)


def _history(raw: Any) -> Any:
    """A stored ``history`` list as the tuple the letter keeps; anything else is left for validation to refuse."""
    if raw is None:
        return ()
    return tuple(raw) if isinstance(raw, list) else raw


def _stdlib_json(line: bytes | str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("a dead letter line is not JSON", code="InvalidDeadLetter") from None


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class StoredLetter:
    """A letter as a sink holds it; ``handle`` is what ``remove`` takes (opaque, sink-specific)."""

    letter: DeadLetter
    handle: str


def _unreadable(raw: bytes | str, where: Mapping[str, Any]) -> DeadLetter:
    """A stored line that is no longer a valid letter is handed back as one, never silently dropped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return DeadLetter(
        record={"raw": text},
        source=dict(where),
        error_code=UNREADABLE,
        error_message="the stored dead letter could not be parsed",
        kind="message",
    )


def _parse(raw: bytes | str, where: Mapping[str, Any]) -> DeadLetter:
    try:
        return DeadLetter.from_json(raw)
    except InvalidInputError:
        logger.warning("unreadable dead letter", extra={"deadLetterSource": dict(where)})
        return _unreadable(raw, where)


class DeadLetterSink(abc.ABC):
    """Validation, serialisation, counting and logging, once; subclasses only move lines."""

    name = "sink"

    def put(self, letters: Sequence[DeadLetter]) -> int:
        """Store ``letters``; returns how many. Raises ``InvalidInputError`` before writing anything if one is not
        a ``DeadLetter``, and the sink's error if the write fails."""
        batch = list(letters)
        for letter in batch:
            if not isinstance(letter, DeadLetter):
                raise InvalidInputError(f"not a DeadLetter: {type(letter).__name__}", code="InvalidDeadLetter")
        if not batch:
            return 0
        lines = [letter.to_json() for letter in batch]
        self._write(lines, batch)
        codes = Counter(letter.error_code for letter in batch)
        logger.warning(
            "dead-lettered %d record(s) to the %s sink",
            len(batch),
            self.name,
            extra={
                "deadLetters": len(batch),
                "sink": self.name,
                "errorCodes": dict(sorted(codes.items())),
                "runIds": sorted({letter.run_id for letter in batch}),
            },
        )
        return len(batch)

    @abc.abstractmethod
    def _write(self, lines: list[bytes], letters: Sequence[DeadLetter]) -> None:
        """Store the serialised ``lines`` (``letters`` are the same, parsed, for keys and routing)."""

    @abc.abstractmethod
    def read(self, limit: int = 100) -> list[StoredLetter]:
        """Up to ``limit`` stored letters, oldest first where the sink can tell."""

    @abc.abstractmethod
    def remove(self, handles: Sequence[str]) -> int:
        """Forget the letters behind ``handles`` (from ``read``); returns how many were removed."""

    def pages(self, size: int = 100) -> Iterator[list[StoredLetter]]:
        """Every stored letter about once, ``size`` at a time: one redrive pass. Letters may be removed or put
        between pages. The default reads until ``read`` comes back empty, which is right where a read hides what it
        returned (a queue's visibility timeout); sinks whose ``read`` starts at the beginning walk in order."""
        while page := self.read(size):
            yield page

    def count(self, limit: int | None = None) -> int:
        """How many letters wait (the heartbeat's backlog); counting may stop once past ``limit``."""
        total = 0
        for page in self.pages(100 if limit is None else min(100, limit + 1)):
            total += len(page)
            if limit is not None and total > limit:
                break
        return total


class MemoryDeadLetterSink(DeadLetterSink):
    """The fake: letters in a list, thread-safe."""

    name = "memory"

    def __init__(self) -> None:
        self._lines: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def _write(self, lines: list[bytes], letters: Sequence[DeadLetter]) -> None:
        with self._lock:
            self._lines.extend((uuid.uuid4().hex, line) for line in lines)

    @property
    def letters(self) -> list[DeadLetter]:
        with self._lock:
            lines = [line for _, line in self._lines]
        return [DeadLetter.from_json(line) for line in lines]

    @property
    def lines(self) -> list[bytes]:
        with self._lock:
            return [line for _, line in self._lines]

    def read(self, limit: int = 100) -> list[StoredLetter]:
        with self._lock:
            page = self._lines[:limit]
        return [StoredLetter(_parse(line, {"sink": "memory"}), handle) for handle, line in page]

    def pages(self, size: int = 100) -> Iterator[list[StoredLetter]]:
        with self._lock:
            snapshot = list(self._lines)
        for start in range(0, len(snapshot), size):
            yield [
                StoredLetter(_parse(line, {"sink": "memory"}), handle)
                for handle, line in snapshot[start : start + size]
            ]

    def remove(self, handles: Sequence[str]) -> int:
        wanted = set(handles)
        with self._lock:
            before = len(self._lines)
            self._lines = [(handle, line) for handle, line in self._lines if handle not in wanted]
            return before - len(self._lines)


class LogDeadLetterSink(DeadLetterSink):
    """Each letter as one ERROR log line (``code: DeadLetter``; personal data masked by the log formatter).

    For deployments with no bucket or queue to write to (the queue function without ``CVCSYNC_STATE_BUCKET``):
    nothing is lost silently, the platform's log store keeps the line, but nothing can be redriven from here.
    """

    name = "log"

    def _write(self, lines: list[bytes], letters: Sequence[DeadLetter]) -> None:
        for letter in letters:
            logger.error("dead letter", extra={"code": "DeadLetter", "deadLetter": letter.to_dict()})

    def read(self, limit: int = 100) -> list[StoredLetter]:
        return []

    def remove(self, handles: Sequence[str]) -> int:
        return 0


class ObjectDeadLetterSink(DeadLetterSink):
    """One NDJSON object per ``put``: ``{prefix}{yyyy}/{mm}/{dd}/{run_id}-{uuid}.ndjson``.

    Objects are written create-only, so two runs never overwrite each other. ``remove`` deletes an object once all
    its letters are handled, and rewrites it with the remaining ones when only some are: run one redrive at a
    time, since two removing from the same object at once could resurrect a letter the other removed.
    """

    name = "object"
    SUFFIX = ".ndjson"

    def __init__(self, store: ObjectStore, bucket: str, prefix: str, *, now: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._now = now

    def _write(self, lines: list[bytes], letters: Sequence[DeadLetter]) -> None:
        run_id = _SAFE_RUN_ID.sub("_", letters[0].run_id)[:64] or "run"
        body = b"\n".join(lines) + b"\n"
        day = self._now().astimezone(timezone.utc).strftime("%Y/%m/%d")
        for _ in range(3):
            key = f"{self.prefix}{day}/{run_id}-{uuid.uuid4().hex}{self.SUFFIX}"
            if self.store.put_bytes(self.bucket, key, body, content_type="application/x-ndjson", if_absent=True):
                return
        raise DeadLetterError("could not find a free dead-letter object name", code="DeadLetterKeyTaken")

    def _lines_of(self, key: str) -> list[bytes]:
        data = self.store.get_bytes(self.bucket, key)
        return [line for line in (data or b"").split(b"\n") if line.strip()]

    def read(self, limit: int = 100) -> list[StoredLetter]:
        found: list[StoredLetter] = []
        for key in self.store.list_keys(self.bucket, self.prefix):
            if not key.endswith(self.SUFFIX):
                continue
            for index, line in enumerate(self._lines_of(key)):
                if len(found) >= limit:
                    return found
                where = {"bucket": self.bucket, "key": key, "line": index + 1}
                found.append(StoredLetter(_parse(line, where), _object_handle(key, index, line)))
        return found

    def pages(self, size: int = 100) -> Iterator[list[StoredLetter]]:
        """Objects in key order (oldest day first), each read once, so a letter left in place (not due yet) is not
        met again in the same pass. Removing between pages is safe: a handle finds its line after a rewrite."""
        page: list[StoredLetter] = []
        for key in self.store.list_keys(self.bucket, self.prefix):
            if not key.endswith(self.SUFFIX):
                continue
            for index, line in enumerate(self._lines_of(key)):
                where = {"bucket": self.bucket, "key": key, "line": index + 1}
                page.append(StoredLetter(_parse(line, where), _object_handle(key, index, line)))
                if len(page) >= size:
                    yield page
                    page = []
        if page:
            yield page

    def remove(self, handles: Sequence[str]) -> int:
        by_key: dict[str, list[tuple[int, str]]] = {}
        for handle in handles:
            key, index, digest = _parse_object_handle(handle)
            if not key.startswith(self.prefix) or not key.endswith(self.SUFFIX):
                raise InvalidInputError("a handle for an object outside this sink", code="InvalidHandle")
            by_key.setdefault(key, []).append((index, digest))
        removed = 0
        for key, wanted in by_key.items():
            lines = self._lines_of(key)
            drop: set[int] = set()
            for index, digest in wanted:
                # The line where it was read, or (if the object was rewritten since) the first identical one.
                candidates = [index, *range(len(lines))]
                for i in candidates:
                    if 0 <= i < len(lines) and i not in drop and _digest(lines[i]) == digest:
                        drop.add(i)
                        break
            if not drop:
                continue
            remaining = [line for i, line in enumerate(lines) if i not in drop]
            if remaining:
                body = b"\n".join(remaining) + b"\n"
                self.store.put_bytes(self.bucket, key, body, content_type="application/x-ndjson")
            else:
                self.store.delete(self.bucket, key)
            removed += len(drop)
        return removed


def _digest(line: bytes) -> str:
    return hashlib.sha256(line.strip()).hexdigest()[:32]


def _object_handle(key: str, index: int, line: bytes) -> str:
    return orjson.dumps([key, index, _digest(line)]).decode()


def _parse_object_handle(handle: str) -> tuple[str, int, str]:
    try:
        parts = orjson.loads(handle)
    except orjson.JSONDecodeError:
        parts = None
    if isinstance(parts, list) and len(parts) == 3:
        key, index, digest = parts
        if isinstance(key, str) and isinstance(index, int) and isinstance(digest, str):
            return key, index, digest
    raise InvalidInputError("not a handle from this sink's read()", code="InvalidHandle")


class QueueDeadLetterSink(DeadLetterSink):
    """One SQS message per letter, sent with SendMessageBatch (10 entries, under 256 KiB per batch).

    A letter whose message would exceed ``max_message_bytes`` goes to ``overflow`` (an object sink) when given;
    without one, the others are still sent and then ``DeadLetterError`` says how many could not be. On a FIFO
    queue (``.fifo``) a run's letters form one message group, kept in order: SQS then hands out no more of a
    group while a page of it is in flight, so a redrive reads a page, removes what went through, reads again.
    Handles are SQS receipt handles.
    """

    name = "queue"

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        overflow: DeadLetterSink | None = None,
        max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
        visibility_timeout: int = 300,
    ) -> None:
        self.client = sqs_client
        self.queue_url = queue_url
        self.overflow = overflow
        self.max_message_bytes = max_message_bytes
        self.visibility_timeout = visibility_timeout
        self.fifo = queue_url.endswith(".fifo")

    def _entry(self, index: int, body: str, letter: DeadLetter) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": str(index),
            "MessageBody": body,
            "MessageAttributes": {
                "errorCode": {"DataType": "String", "StringValue": letter.error_code[:256]},
                "kind": {"DataType": "String", "StringValue": letter.kind},
            },
        }
        if self.fifo:
            entry["MessageGroupId"] = _SAFE_RUN_ID.sub("_", letter.run_id)[:128] or "cvc-sync"
            entry["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        return entry

    def _entry_size(self, entry: Mapping[str, Any]) -> int:
        attributes = sum(
            len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
            for name, value in entry["MessageAttributes"].items()
        )
        return len(str(entry["MessageBody"]).encode()) + attributes

    def _write(self, lines: list[bytes], letters: Sequence[DeadLetter]) -> None:
        batches: list[list[dict[str, Any]]] = [[]]
        batch_bytes = 0
        too_large: list[DeadLetter] = []
        for index, (line, letter) in enumerate(zip(lines, letters, strict=True)):
            entry = self._entry(index, _sqs_text(line), letter)
            size = self._entry_size(entry)
            if size > self.max_message_bytes:
                too_large.append(letter)
                continue
            if len(batches[-1]) == SQS_BATCH_ENTRIES or batch_bytes + size > self.max_message_bytes:
                batches.append([])
                batch_bytes = 0
            batches[-1].append(entry)
            batch_bytes += size
        for batch in batches:
            if batch:
                self._send(batch)
        if too_large:
            if self.overflow is None:
                raise DeadLetterError(
                    f"{len(too_large)} dead letter(s) exceed the {self.max_message_bytes}-byte message limit and no "
                    "object sink is configured for them; the other letters were sent",
                    code="DeadLetterTooLarge",
                )
            logger.warning(
                "dead letters too large for a queue message go to the %s sink",
                self.overflow.name,
                extra={"deadLetters": len(too_large)},
            )
            self.overflow.put(too_large)

    def _send(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for _ in range(SQS_SEND_ATTEMPTS):
            response = self._call("send", self.client.send_message_batch, QueueUrl=self.queue_url, Entries=pending)
            failed = {item["Id"]: item for item in response.get("Failed") or ()}
            if not failed:
                return
            sender_faults = [item for item in failed.values() if item.get("SenderFault")]
            if sender_faults:
                codes = sorted({str(item.get("Code")) for item in sender_faults})
                raise DeadLetterError(f"SQS refused {len(sender_faults)} dead letter(s): {', '.join(codes)}")
            pending = [entry for entry in pending if entry["Id"] in failed]
        raise DeadLetterError(
            f"SQS did not accept {len(pending)} dead letter(s) after {SQS_SEND_ATTEMPTS} attempts", retryable=True
        )

    def _call(self, what: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        """The SQS boundary: botocore errors become ``DeadLetterError`` with the service's code."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            code = str(error.get("Code") or "SqsError")
            raise DeadLetterError(
                f"dead-letter queue {what} failed: {code}", code=code, retryable=status >= 500 or "Throttl" in code
            ) from exc
        except BotoCoreError as exc:
            raise DeadLetterError(
                f"dead-letter queue {what} failed: {type(exc).__name__}", code="ConnectionError", retryable=True
            ) from exc

    def read(self, limit: int = 100) -> list[StoredLetter]:
        found: list[StoredLetter] = []
        while len(found) < limit:
            response = self._call(
                "receive",
                self.client.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_BATCH_ENTRIES, limit - len(found)),
                VisibilityTimeout=self.visibility_timeout,
                WaitTimeSeconds=0,
            )
            messages = response.get("Messages") or []
            if not messages:
                break
            for message in messages:
                where = {"queue": self.queue_url, "messageId": message.get("MessageId")}
                found.append(StoredLetter(_parse(message.get("Body") or "", where), message["ReceiptHandle"]))
        return found

    def count(self, limit: int | None = None) -> int:
        """SQS's approximate count: visible, in flight (being redriven) and delayed messages."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        response = self._call("count", self.client.get_queue_attributes, QueueUrl=self.queue_url, AttributeNames=names)
        attributes = response.get("Attributes") or {}
        return sum(int(attributes.get(name) or 0) for name in names)

    def remove(self, handles: Sequence[str]) -> int:
        removed = 0
        for start in range(0, len(handles), SQS_BATCH_ENTRIES):
            chunk = handles[start : start + SQS_BATCH_ENTRIES]
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)]
            response = self._call("delete", self.client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries)
            removed += len(response.get("Successful") or ())
        return removed


def _sqs_text(line: bytes) -> str:
    """The line as an SQS body. SQS refuses U+FFFE/U+FFFF, which orjson writes raw: escape them (JSON allows it)."""
    return line.decode("utf-8").replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


PARKED_DIR = "parked/"


@dataclass(frozen=True)
class ParkedLetter:
    """A letter the redrive gave up on, why, and when."""

    key: str
    letter: DeadLetter
    reason: str
    parked_at: str


class ParkedLetters:
    """Where the redrive puts what it will not retry again: one JSON object per letter, with every failure.

    Keys are ``{prefix}{yyyy}/{mm}/{dd}/{identity}.json``: the day the record first failed and the letter's
    identity, written create-only, so parking a letter twice (a crash between parking it and removing it from the
    sink) leaves one object. Parked letters are always in the object store, whichever sink the dead letters use:
    they wait for a person, not for a queue consumer.
    """

    SUFFIX = ".json"

    def __init__(self, store: ObjectStore, bucket: str, prefix: str, *, now: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._now = now

    def key_for(self, letter: DeadLetter) -> str:
        try:
            day = datetime.fromisoformat(letter.first_failed_at.replace("Z", "+00:00")).strftime("%Y/%m/%d")
        except ValueError:
            day = "undated"
        return f"{self.prefix}{day}/{letter.identity}{self.SUFFIX}"

    def put(self, letter: DeadLetter, reason: str) -> bool:
        """Park ``letter``; ``False`` when it was parked already (the earlier copy is kept as it was)."""
        body = {
            "version": FORMAT_VERSION,
            "parkedAt": _iso(self._now()),
            "reason": reason,
            "identity": letter.identity,
            "failures": letter.failures(),
            "letter": letter.to_dict(),
        }
        try:
            data = orjson.dumps(body, default=str)
        except orjson.JSONEncodeError:
            data = json.dumps(body, ensure_ascii=True, default=str).encode()
        return self.store.put_bytes(
            self.bucket, self.key_for(letter), data, content_type="application/json", if_absent=True
        )

    def keys(self) -> Iterator[str]:
        return (k for k in self.store.list_keys(self.bucket, self.prefix) if k.endswith(self.SUFFIX))

    def get(self, key: str) -> ParkedLetter | None:
        raw = self.store.get_bytes(self.bucket, key)
        if raw is None:
            return None
        data = _stdlib_json(raw)
        if not isinstance(data, dict):
            raise InvalidInputError(f"parked letter {key} is not a JSON object", code="InvalidDeadLetter")
        return ParkedLetter(
            key, DeadLetter.from_dict(data.get("letter")), str(data.get("reason")), str(data.get("parkedAt"))
        )

    def count(self, limit: int | None = None) -> int:
        total = 0
        for _ in self.keys():
            total += 1
            if limit is not None and total > limit:
                break
        return total


def deadletter_sink_from_env(
    env: Mapping[str, str] | None,
    store: ObjectStore,
    bucket: str,
    sqs_client_factory: Callable[[], Any],
) -> DeadLetterSink:
    """The sink ``CVCSYNC_DEADLETTER_SINK`` names: ``object`` (default) under ``<output prefix>dead-letters/`` in
    ``bucket``, or ``queue`` at ``CVCSYNC_DEADLETTER_QUEUE_URL`` with that object sink taking oversized letters.
    The SQS client is only built (and boto3 only imported) for the queue sink."""
    env = os.environ if env is None else env
    kind = env.get(ENV_DEADLETTER_SINK, "").strip().lower() or "object"
    if kind not in SINK_KINDS:
        raise ConfigurationError(f"{ENV_DEADLETTER_SINK} must be one of {', '.join(SINK_KINDS)}")
    object_sink = ObjectDeadLetterSink(store, bucket, output_prefix(env) + DEAD_LETTER_DIR)
    if kind == "object":
        return object_sink
    queue_url = env.get(ENV_DEADLETTER_QUEUE_URL, "").strip()
    if not queue_url:
        raise ConfigurationError(f"{ENV_DEADLETTER_SINK}=queue needs {ENV_DEADLETTER_QUEUE_URL}")
    return QueueDeadLetterSink(sqs_client_factory(), queue_url, overflow=object_sink)
