"""Parked letters: the ones the redrive gave up on, one object per letter under ``<output prefix>parked/`` with
every failure, written create-only so that a pass that stopped before removing a letter parks it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import orjson

from cvcsync.adapters.objects import ObjectStore
from cvcsync.errors import InvalidInputError
from cvcsync.outputs.deadletters import FORMAT_VERSION, DeadLetter, _iso, _now, _stdlib_json

logger = logging.getLogger(__name__)


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
