"""The platform-neutral result of reading a storage event: an upload to process, or a reason not to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cvcsync.errors import InvalidInputError

UploadSource = Literal["oss", "s3", "eventbridge-s3"]

# Why an event (or one record of it) was not turned into an upload. Stable strings: reports count them.
SKIP_NOT_CREATED = "not-created"
SKIP_INCOMPLETE_UPLOAD = "incomplete-upload"
SKIP_TEST_EVENT = "test-event"
SKIP_OWN_OUTPUT = "own-output"
SKIP_DIRECTORY_MARKER = "directory-marker"
SKIP_HOSTILE_KEY = "hostile-key"
SKIP_INVALID_KEY = "invalid-key"


@dataclass(frozen=True)
class ObjectUploaded:
    """An object that now exists and should be read. ``key`` is decoded: pass it to the object store as is."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    event_name: str
    source: UploadSource
    event_time: str | None
    region: str | None


@dataclass(frozen=True)
class SkippedEvent:
    """A record that was recognised and deliberately not processed. ``reason`` is one of the ``SKIP_*`` strings."""

    reason: str
    detail: str


@dataclass
class ObjectEvents:
    """Everything one platform event held: the uploads to process and the records skipped, in arrival order."""

    uploads: list[ObjectUploaded] = field(default_factory=list)
    skipped: list[SkippedEvent] = field(default_factory=list)


class UnsupportedEvent(InvalidInputError):
    """The event is not one of the shapes we read. The message names the keys seen, never their values."""

    code = "UnsupportedEvent"
