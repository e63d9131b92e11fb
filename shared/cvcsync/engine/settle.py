"""How a run's writes become state: one rule for every writer, and the repair of a lost race.

Every writer (upload, continuation, queue, redrive, HTTP) commits what it wrote to CVC through ``settle_writes``,
inside ``StateStore.commit``. Each write carries its change's event time (``clock``). Normally that time is at
least the user's last recorded change and the write is simply recorded. But writers run at once: between the
moment a run decided to write a user and the moment it commits, another writer may have committed a *newer*
change of the same user (a queue change while an export was being applied, a redrive while a queue batch ran, a
full snapshot that says the user is gone). Both writes reached CVC and nobody knows which landed last. Then the
older write is not recorded; the user becomes uncertain (the state no longer claims to know what CVC holds), and a
``Repair`` names the newer change, which the writer dead-letters so that the redrive applies it again, at its own
event time. Nothing is lost (the newer change is re-sent) and nothing resurrects (the older one is never recorded
as the truth).

A full snapshot that was accepted also says something about users it does not list: as of its event time they
are gone. ``SNAPSHOT_AT`` keeps that time, and ``last_change`` folds it in, so an older change of a user the
snapshot lacks is stale, and a race with such a snapshot is repaired with a delete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from .. import clock
from ..deadletters import DeadLetter
from .state import UNCERTAIN, ShadowState

SNAPSHOT_AT = "snapshot_at"  # meta: the event time of the last accepted full snapshot
UPSERT, DELETE = "upsert", "delete"
LOST_RACE = "LostRace"  # the error code of a repair's dead letter


@dataclass(frozen=True)
class Write:
    """A write a run made in CVC (or a change it found already in place): the user, its event time, what."""

    user_id: str
    at: str  # clock.stamp
    op: str  # upsert | delete
    hash: str | None = None  # upserts: the content hash and record written
    record: str | None = None
    changed: bool = True  # False: nothing was sent (the content was in place); only its time is recorded


@dataclass(frozen=True)
class Repair:
    """The newer change to apply again for a user whose write lost a race (see the module docstring)."""

    user_id: str
    at: str
    op: str
    record: dict[str, object] | None

    def letter_record(self) -> dict[str, object]:
        """A dead letter's record in the queue's change shape, which the redrive reads."""
        out: dict[str, object] = {"type": self.op, "userId": self.user_id, "eventId": None, "occurredAt": self.at}
        if self.record is not None:
            out["user"] = self.record
        return out


def last_changes(state: ShadowState, user_ids: list[str]) -> dict[str, str]:
    """Per user, the time of the last change that decides for it: its own last change, or the last accepted full
    snapshot's time when that is later (the snapshot said the user was as listed, or gone)."""
    found = state.last_changes(user_ids)
    snapshot_at = state.meta(SNAPSHOT_AT)
    if snapshot_at:
        for user_id in user_ids:
            if snapshot_at > found.get(user_id, ""):
                found[user_id] = snapshot_at
    return found


def settle_writes(state: ShadowState, writes: Iterable[Write]) -> list[Repair]:
    """Record ``writes`` at their event times; return the repairs of those that lost a race (module docstring)."""
    batch = list(writes)
    known = last_changes(state, sorted({w.user_id for w in batch}))
    upserts: list[tuple[str, str, str]] = []
    deletes: list[str] = []
    times: list[tuple[str, str, str]] = []
    repairs: list[Repair] = []
    for write in batch:
        newer = known.get(write.user_id)
        if not clock.is_newer(write.at, newer):
            assert newer is not None
            if write.changed:
                repairs.append(_lose_race(state, write, newer))
            continue
        times.append((write.user_id, write.at, write.op))
        if not write.changed:
            continue
        if write.op == DELETE:
            deletes.append(write.user_id)
        elif write.hash is not None and write.record is not None:
            upserts.append((write.user_id, write.hash, write.record))
    state.upsert(upserts)
    state.delete(deletes)
    state.record_changes(times)
    return repairs


def _lose_race(state: ShadowState, write: Write, newer: str) -> Repair:
    """The user becomes uncertain; the repair re-applies the newer change: the state's record when that change
    was an upsert, else a delete (a tombstone, or a snapshot that lacks the user)."""
    found = state.db.execute("SELECT op FROM changes WHERE user_id = ? AND occurred_at = ?", (write.user_id, newer))
    newer_op = (found.fetchone() or (DELETE,))[0]
    row = state.get(write.user_id)
    if newer_op == UPSERT and row is not None:
        state.mark_uncertain([(write.user_id, None)])  # keeps the newer record
        return Repair(write.user_id, newer, UPSERT, row[1])
    mine = write.record or orjson.dumps({"userId": write.user_id}).decode()
    state.mark_uncertain([(write.user_id, mine)])  # CVC may hold what this run wrote
    return Repair(write.user_id, newer, DELETE, None)


def missed_deletions(state: ShadowState, listed: Callable[[list[str]], set[str]], at: str) -> list[Repair]:
    """Users an accepted full snapshot lacks (``listed`` says which of some ids its plan names) that another writer
    committed after the plan was made, with a change older than the snapshot's ``at``: the snapshot says they are
    gone, so each is a delete to apply. Uncertain users are left to their own run's commit."""
    query = (
        "SELECT u.user_id FROM users AS u LEFT JOIN changes AS c USING (user_id) WHERE u.hash != ? "
        "AND (c.occurred_at IS NULL OR c.occurred_at < ?) ORDER BY u.user_id"
    )
    cursor = state.db.execute(query, (UNCERTAIN, at))
    repairs: list[Repair] = []
    while ids := [uid for (uid,) in cursor.fetchmany(500)]:
        named = listed(ids)
        repairs.extend(Repair(uid, at, DELETE, None) for uid in ids if uid not in named)
    return repairs


def repair_letters(repairs: list[Repair], *, run_id: str, source: dict[str, object]) -> list[DeadLetter]:
    """The repairs as dead letters in the queue's change shape: the redrive applies them at their own time."""
    message = (
        "a newer change of this user was committed while this run wrote an older one, and which write CVC holds "
        "last is unknown: the newer change is applied again"
    )
    return [
        DeadLetter(
            record=repair.letter_record(),
            source={**source, "userId": repair.user_id, "operation": repair.op},
            error_code=LOST_RACE,
            error_message=message,
            run_id=run_id,
            kind="record",
            retryable=True,
        )
        for repair in repairs
    ]


def record_snapshot(state: ShadowState, at: str) -> None:
    """An accepted full snapshot's event time: users it lacks are gone as of then."""
    if clock.is_newer(at, state.meta(SNAPSHOT_AT)):
        state.set_meta(SNAPSHOT_AT, at)
