"""One clock and one ordering rule for every writer (upload, queue, redrive, reconcile, HTTP).

A change has an *event time* (when it happened at the source: ``occurredAt``, the transport's publish time, an
upload's event time) and an *arrival* (when cvc-sync received it). Which of two changes to the same user wins is
decided by event time, ties by arrival, and a change with no event time at all orders as its arrival. The time we
*processed* something (a commit, a sync) never decides: a late, older change must not beat a newer one only because
it was applied later.

Every time cvc-sync stores for ordering is written by ``stamp``: UTC, microseconds, ``Z``. Strings of that one
format compare in time order, which is what lets SQLite compare them without parsing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def now() -> datetime:
    """The current time, aware UTC. The one place cvc-sync reads the wall clock for ordering and reports."""
    return datetime.now(timezone.utc)


def stamp(moment: datetime) -> str:
    """The one stored time format: ``2026-12-06T10:00:00.000000Z`` (sortable as text)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def report_time(moment: datetime | None = None) -> str:
    """A time for people (reports, logs): seconds, ``Z``."""
    return (moment or now()).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: Any) -> datetime | None:
    """An ISO-8601 time (``Z`` or an offset, any precision) as aware UTC; None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def event_time(occurred_at: datetime | None, arrival: datetime) -> datetime:
    """The time a change orders by: its own, or its arrival when it has none (never 1970: issue 11, defect 5)."""
    return occurred_at if occurred_at is not None else arrival


def is_newer(candidate: str, known: str | None) -> bool:
    """Whether a change stamped ``candidate`` may replace the user's last known change ``known`` (ties: the later
    arrival, i.e. the candidate, wins)."""
    return known is None or candidate >= known
