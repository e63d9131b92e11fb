"""The SCIM deletion limit: at most ``CVCSYNC_SCIM_MAX_DELETES_PER_HOUR`` users removed from CVC (DELETE of an
active user, or ``active`` set to false) in any hour, counted across every instance of the function.

An IdP that mis-scopes an assignment (a filter that suddenly matches nobody) sends one deactivation per user; the
file path's deletion gate cannot see them, as each request holds one user. So each removal first takes a *slot*:
a create-only object ``<output prefix>scim/deletions/<YYYYMMDDHH>/<MM>-<slot>``, in the 5-minute bucket ``MM`` of
the hour it happens in. The hour is twelve buckets: the ones before the current bucket within the last hour are
finished (nobody writes into a past bucket), so their count is the same for every request in the current bucket,
and the current bucket's slots are numbered below ``limit - that count``. Two requests can never create the same
slot, so no more than ``limit`` removals fall in any window of twelve buckets, however many instances race. It costs
two LIST calls (this hour's prefix and the last one's, at most ``limit`` keys each; mostly one in a warm container,
below) and one or a few create-only PUTs: O(1) in the size of the directory. The window moves in 5-minute steps (so
it is "the last 55-60 minutes"); clocks of instances that disagree by more than seconds at a bucket's edge can let a
few more through.

A slot is taken before CVC is asked: a removal CVC then refuses still counts (the limit counts attempts). The
objects are a record of the removals too; a lifecycle rule on the prefix may expire them after a day.

The finished buckets' count is the same for every removal in the current bucket, so a warm container keeps it for
the rest of that bucket (``_FINISHED``) and lists only the current bucket's own prefix for the next removal: one LIST
instead of two. It is kept only once the bucket is ``SKEW_SECONDS`` old: a removal by an instance whose clock is a
few seconds behind may still land in the bucket just finished, and is then counted as before.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cvcsync.adapters.objects import ObjectStore

BUCKET_MINUTES = 5
BUCKETS = 60 // BUCKET_MINUTES
SKEW_SECONDS = 30.0  # clocks of instances may disagree by this much (as ``store.LOCK_MARGIN`` allows)

# Per store, (bucket, prefix) -> (the current bucket's start, removals in the window's finished buckets then).
_FINISHED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], tuple[datetime, int]]] = weakref.WeakKeyDictionary()
_FINISHED_LOCK = threading.Lock()


class DeletionLimit:
    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        prefix: str,
        limit: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.root = f"{prefix}scim/deletions/"
        self.limit = limit
        self._clock = clock

    def _hour_prefix(self, moment: datetime) -> str:
        return f"{self.root}{moment:%Y%m%d%H}/"

    def counts(self) -> tuple[int, int, datetime]:
        """(removals in the window's finished buckets, slots used in the current bucket, now)."""
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        current = now.minute // BUCKET_MINUTES
        started = now.replace(minute=current * BUCKET_MINUTES, second=0, microsecond=0)
        with _FINISHED_LOCK:
            known = _FINISHED.get(self.store, {}).get((self.bucket, self.root))
        if known is not None and known[0] == started:
            # The finished buckets' count, as this container listed it in this bucket: they take no more slots
            # (module docstring). Only the current bucket's own prefix is listed.
            prefix = f"{self._hour_prefix(now)}{current * BUCKET_MINUTES:02d}-"
            used = sum(1 for key in self.store.list_keys(self.bucket, prefix) if key[len(prefix) :].isdigit())
            return known[1], used, now
        earlier, used = 0, 0
        for hour, offset in ((now - timedelta(hours=1), -BUCKETS), (now, 0)):
            for key in self.store.list_keys(self.bucket, self._hour_prefix(hour)):
                name = key.rsplit("/", 1)[-1]
                minute, _, slot = name.partition("-")
                if not (minute.isdigit() and slot.isdigit()):
                    continue
                position = offset + int(minute) // BUCKET_MINUTES  # buckets since the start of this hour
                if position == current:
                    used += 1
                elif current - BUCKETS < position < current:
                    earlier += 1
        if (now - started).total_seconds() >= SKEW_SECONDS:
            with _FINISHED_LOCK:
                _FINISHED.setdefault(self.store, {})[(self.bucket, self.root)] = (started, earlier)
        return earlier, used, now

    def take(self, what: dict[str, str]) -> bool:
        """One removal's slot, or False when the window is full (then nothing may be removed)."""
        earlier, used, now = self.counts()
        bound = self.limit - earlier
        bucket_minute = (now.minute // BUCKET_MINUTES) * BUCKET_MINUTES
        body = orjson.dumps({**what, "at": now.isoformat()})
        slot = used
        while slot < bound:
            key = f"{self._hour_prefix(now)}{bucket_minute:02d}-{slot:06d}"
            if self.store.put_bytes(self.bucket, key, body, content_type="application/json", if_absent=True):
                return True
            slot += 1
        return False
