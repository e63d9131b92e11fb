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
as the truth). The other way round is a race too: an *older* change committed behind a run's back (after the
generation the run planned on: each change records the generation that committed it) may have reached CVC after
the run's newer write; the run records its write, marks the user uncertain and repairs with its own change.

A full snapshot that was accepted also says something about users it does not list: as of its event time they
are gone. ``SNAPSHOT_AT`` keeps that time, and ``last_change`` folds it in, so an older change of a user the
snapshot lacks is stale, a race with such a snapshot is repaired with a delete, and a user another writer changed
behind a snapshot's back (after its plan, with an older change) is repaired to what the snapshot lists
(``snapshot_repairs``).

The change path commits to the journal (``engine.journal``), not to a generation: each of its writes is kept with
what its writer's plan saw of the user (``Seen``: the generation it read and the user's last journal entry it read),
and ``replay_writes`` records it by the same rule wherever it is folded in (a view, a checkout, the next
generation). A change committed behind its back is then one recorded by a later generation's own commit, or by a
later journal entry of that user. Replayed in the journal's order, every reader records the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from cvcsync import clock
from cvcsync.engine.shadow import UNCERTAIN, ShadowState
from cvcsync.outputs.deadletters import DeadLetter

SNAPSHOT_AT = "snapshot_at"  # meta: the event time of the last accepted full snapshot
UPSERT, DELETE = "upsert", "delete"
LOST_RACE = "LostRace"  # the error code of a repair's dead letter


@dataclass(slots=True)
class Write:
    """A write a run made in CVC (or a change it found already in place): the user, its event time, what.

    Not frozen, though never changed: a first sync of a million users commits a million of them, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) cost 1.3 s more of that commit."""

    user_id: str
    at: str  # clock.stamp
    op: str  # upsert | delete
    hash: str | None = None  # upserts: the content hash and record written
    record: str | None = None
    changed: bool = True  # False: nothing was sent (the content was in place); only its time is recorded
    landed: bool = True  # False: the write failed (dead-lettered); CVC may or may not hold it


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


@dataclass(frozen=True)
class Seen:
    """What a writer's plan saw of a user: the generation it read, and the last journal entry of that user it read
    (0: none). A change recorded by a later generation's own commit, or by a later entry, was committed behind its
    back."""

    generation: int
    seq: int

    def behind(self, stamp: tuple[int, int | None] | None) -> bool:
        """Whether the change stamped ``stamp`` (``ShadowState.change_stamps``) was committed after this view."""
        if stamp is None:
            return False
        generation, seq = stamp
        return seq > self.seq if seq is not None else generation > self.generation


def settle_writes(state: ShadowState, writes: Iterable[Write], *, base_generation: int | None = None) -> list[Repair]:
    """Record ``writes`` at their event times; return the repairs of the races they were in (module docstring).

    ``base_generation``: the state generation the writer planned on; changes committed after it are the ones
    that may have reached CVC in any order with this run's writes."""
    batch = list(writes)
    ids = sorted({w.user_id for w in batch})
    behind = set(state.changes_since(ids, base_generation)) if base_generation is not None else set()
    # What each sent write leaves is decided here, whatever its run's in-flight mark said (the commit folds its own
    # run's list after these writes, for the users they left alone: ``StateStore.commit``).
    state.note_settled(w.user_id for w in batch if w.changed)
    return _settle(state, batch, behind)


def replay_writes(state: ShadowState, writes: Iterable[tuple[Write, int, Seen]]) -> list[Repair]:
    """Record journal writes, each (write, its entry's seq, what its writer's plan saw), by the one rule: as
    ``settle_writes`` would have at its writer's commit. At most one write per user per call (``engine.journal``
    replays a user's entries in their order)."""
    batch = list(writes)
    stamps = state.change_stamps(sorted({w.user_id for w, _, _ in batch}))
    behind = {w.user_id for w, _, seen in batch if seen.behind(stamps.get(w.user_id))}
    return _settle(state, [w for w, _, _ in batch], behind, {w.user_id: seq for w, seq, _ in batch})


def _settle(
    state: ShadowState, batch: list[Write], behind: set[str], entry_seqs: dict[str, int] | None = None
) -> list[Repair]:
    ids = sorted({w.user_id for w in batch})
    known = last_changes(state, ids)
    upserts: list[tuple[str, str, str]] = []
    deletes: list[str] = []
    times: list[tuple[str, str, str]] = []
    repairs: list[Repair] = []
    won: list[Write] = []
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
        if not write.landed:
            # The latest intent, not applied: its time decides the order (an older change is stale against it, its
            # dead letter is not), and the user is uncertain, holding the record it meant (or marked for a delete).
            _intended(state, write)
            continue
        if write.op == DELETE:
            deletes.append(write.user_id)
        elif write.hash is not None and write.record is not None:
            upserts.append((write.user_id, write.hash, write.record))
        if write.user_id in behind:  # an older change committed behind our back may have landed after our write
            won.append(write)
    state.upsert(upserts)
    state.delete(deletes)
    state.record_changes(times, entry_seqs=entry_seqs)
    for write in won:  # recorded, but the state cannot claim CVC holds it until the repair has landed
        record = orjson.loads(write.record) if write.op == UPSERT and write.record else None
        repairs.append(Repair(write.user_id, write.at, write.op, record))
        state.mark_uncertain([(write.user_id, write.record or orjson.dumps({"userId": write.user_id}).decode())])
    return repairs


def _intended(state: ShadowState, write: Write) -> None:
    if write.op == UPSERT and write.record is not None:
        state.db.execute(
            "INSERT INTO users (user_id, hash, record, synced_at) VALUES (?, ?, ?, '') "
            "ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, record = excluded.record",
            (write.user_id, UNCERTAIN, write.record),
        )
    else:
        state.mark_uncertain([(write.user_id, None)])


def _lose_race(state: ShadowState, write: Write, newer: str) -> Repair:
    """The user becomes uncertain; the repair re-applies the newer change: the state's record when that change
    was an upsert (or a snapshot that listed the user), else a delete (a tombstone, or a snapshot that lacks it).
    The state's record is the newer change's content, applied (certain) or not (uncertain: ``landed=False``)."""
    found = state.db.execute("SELECT op FROM changes WHERE user_id = ? AND occurred_at = ?", (write.user_id, newer))
    row = state.get(write.user_id)
    change = found.fetchone()
    # No change of its own at that time: the newer one is a full snapshot, which listed the user if the state holds
    # it (it wrote, failed to write, or found in place every user it listed; it deleted or failed to delete, with
    # a change of its own, every user it lacked; ``snapshot_repairs`` covers the ones it never knew). A row that
    # only an in-flight mark made (a create's intent: never synced) is no sign that the snapshot listed the user.
    marked_only = state.db.execute(
        "SELECT 1 FROM users WHERE user_id = ? AND hash = ? AND synced_at = ''", (write.user_id, UNCERTAIN)
    ).fetchone()
    held = row is not None and not (change is None and marked_only)
    newer_op = change[0] if change else (UPSERT if held else DELETE)
    if newer_op == UPSERT and row is not None and held:
        state.mark_uncertain([(write.user_id, None)])  # keeps the newer record
        return Repair(write.user_id, newer, UPSERT, row[1])
    mine = write.record or orjson.dumps({"userId": write.user_id}).decode()
    state.mark_uncertain([(write.user_id, mine)])  # CVC may hold what this run wrote
    return Repair(write.user_id, newer, DELETE, None)


def snapshot_repairs(
    state: ShadowState,
    listed: Callable[[list[str]], dict[str, tuple[str, str] | None]],
    at: str,
    base_generation: int,
) -> list[Repair]:
    """What an accepted full snapshot at ``at`` says about users whose older change another writer committed after
    the snapshot's plan was made (generation ``base_generation``): listed, the user is as listed (an upsert to apply
    when the state holds other content or none); not listed, the user is gone (a delete, when the state holds it).
    ``listed`` says, of some ids, which the plan names: (hash, record) for a valid row, None for an invalid one
    (which protects its user, as in the plan). Users this run wrote itself are ``settle_writes``'s."""
    query = "SELECT user_id FROM changes WHERE generation > ? AND occurred_at < ? ORDER BY user_id"
    cursor = state.db.execute(query, (base_generation, at))
    repairs: list[Repair] = []
    while ids := [uid for (uid,) in cursor.fetchmany(500)]:
        named = listed(ids)
        for uid in ids:
            row = state.get(uid)
            if uid not in named:
                if row is not None:
                    repairs.append(Repair(uid, at, DELETE, None))
                continue
            intent = named[uid]
            if intent is not None and (row is None or row[0] != intent[0]):
                repairs.append(Repair(uid, at, UPSERT, orjson.loads(intent[1])))
    for repair in repairs:  # the state no longer knows what CVC holds for them: the repair settles it
        record = orjson.dumps(repair.record).decode() if repair.record is not None else None
        state.mark_uncertain([(repair.user_id, record)])
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
