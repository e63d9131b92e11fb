"""The dead-letter sinks that write somewhere durable: ``ObjectDeadLetterSink`` (NDJSON objects under
``<output prefix>dead-letters/`` on any ``ObjectStore``, the default) and ``QueueDeadLetterSink`` (one SQS message per
letter, sent in batches; a letter too large for a message goes to the object sink, never dropped), and
``deadletter_sink_from_env``. The letter and the shared base are ``outputs.deadletters``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from cvcsync.adapters.objects import ObjectStore
from cvcsync.config import ENV_DEADLETTER_QUEUE_URL, ENV_DEADLETTER_SINK, output_prefix
from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.outputs.deadletters import DeadLetter, DeadLetterError, DeadLetterSink, StoredLetter, _now, _parse

logger = logging.getLogger(__name__)

SINK_KINDS = ("object", "queue")
DEAD_LETTER_DIR = "dead-letters/"
SQS_MAX_MESSAGE_BYTES = 256 * 1024
SQS_BATCH_ENTRIES = 10
SQS_SEND_ATTEMPTS = 3
_SAFE_RUN_ID = re.compile(r"[^A-Za-z0-9._-]")


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
