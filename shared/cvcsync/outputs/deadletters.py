"""Dead letters: what could not be synced, kept whole so that a later redrive can try it again.

A ``DeadLetter`` holds the input record exactly as received, where it came from, the error (code, message, CVC's
request id, attempts, whether a retry may help), when it failed and in which run. Every sink shares one base,
``DeadLetterSink``, which validates, serialises to NDJSON lines with orjson, counts and logs (codes and counts
only: never the record, which holds personal data); a sink only writes, reads and removes lines:

* ``ObjectDeadLetterSink`` and ``QueueDeadLetterSink`` (``outputs.letter_sinks``): NDJSON objects, the default,
  or SQS messages;
* ``MemoryDeadLetterSink``, the fake for tests, and ``LogDeadLetterSink``, here.

``read``/``remove`` exist for the redrive: read a page of ``StoredLetter`` (a letter and an opaque handle), retry
them, remove the handles of those that went through. ``pages`` walks a whole sink once (one redrive pass) and
``count`` sizes the backlog (the heartbeat). A letter the redrive retried in vain goes back with the failure in its
``history`` (``DeadLetter.retried``), keeping its ``identity``; one it gives up on goes to ``ParkedLetters``
(``outputs.parked``), one object per letter with every failure.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from cvcsync.errors import CvcSyncError, InvalidInputError

logger = logging.getLogger(__name__)

LetterKind = Literal["record", "message"]
KINDS: tuple[LetterKind, ...] = ("record", "message")
FORMAT_VERSION = 1
MAX_ERROR_MESSAGE = 2000
# SQS accepts up to 1 MiB since 2025, but a queue keeps the MaximumMessageSize it was created with (256 KiB was
# the limit for years) and a batch's total is capped too: stay under the old limit, which every queue accepts.
UNREADABLE = "UnreadableDeadLetter"


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
