"""The change path's writes to the state: a change run's marks and its commit, as journal entries per user.

The write side of ``engine.views.ChangeSession`` (``ChangeCommit``, which it extends), apart from its reads (one
idea each): a commit reads through them (``read``, ``_known_view``, ``_moved``, declared here), and a read calls
back into this side only to fold small in-flight lists in before a plan (``_fold_small_lists``).

* **mark** (``mark_in_flight``): an ``intent`` entry per user before the first CVC call.
* **commit** (``commit``): per user, one ``write`` entry (its writes, what the plan saw, the event ids the run
  settled for that user) or ``release`` entry (marked, not written), replayed by the one rule (``engine.settle``)
  for its repairs and its checkpoint row, and written at the next number, create-only, in parallel with the
  markers of event ids no entry carries and the manifest (``StateStore.touched_manifest``). The view it replays on
  is what the run read and wrote itself when no other writer of its users came in between (no request); a number
  taken by another writer of a user: that user is read again and replayed again (never the others).

An entry is written where it belongs: a create-only write can still land on a number a generation folded and
deleted meanwhile (a *dead* entry, skipped by every reader); ``_confirm`` finds those (a generation published after
the read, whose mark covers the entry without having folded it) and writes them again. When a generation was
published after the read, the commit's repairs are replayed again on it: its own writes may have raced with ours
(the generation's commit repairs the races it can see; ``generation_folds.late_races``).

A run finds the small in-flight lists of batch runs (``IN_FLIGHT_FOLD_BYTES``) and folds them in as ``uncertain``
entries, as a commit of a generation would; larger ones wait for the next generation's commit (their users are not
seen as uncertain by change runs meanwhile: a race with their run is still settled by that run's commit).

A process that has written many entries folds them into a generation itself while that is cheap
(``_maybe_compact``), so a state only change runs write stays small; a larger directory is compacted by the
scheduled redrive.
"""

from __future__ import annotations

import abc
import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvcsync import clock
from cvcsync.engine.generation import USER
from cvcsync.engine.journal import INTENT, MARK, RELEASE, WRITE, Entry, Journal, in_parallel, replay
from cvcsync.engine.settle import Repair, Seen, Write
from cvcsync.engine.shadow import UNCERTAIN, ShadowState, UserRow
from cvcsync.engine.state import StateStore
from cvcsync.errors import CvcSyncError

if TYPE_CHECKING:  # the read side imports this module: its types only, never at run time
    from cvcsync.engine.views import View

log = logging.getLogger(__name__)

MAX_APPENDS = 16  # numbers one entry may try before giving up (writers of the same user, all at once)
IN_FLIGHT_FOLD_BYTES = 16 * 1024  # in-flight lists (gzip) small enough for a change run to fold in
COMPACT_SHARE = 10  # a process compacts after appending max(compact_pending, users / COMPACT_SHARE) entries
# ... but only while a compaction is cheap (about a second): beyond, the scheduled redrive compacts after its pass
# (``StateStore.compact_if_long``), so that no queue message or SCIM request waits for a whole generation.
INLINE_COMPACT_KEYS = 20_000
TAKEN = "journal numbers taken by concurrent writers of the same users; reading those users again"

_appended: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], int]] = weakref.WeakKeyDictionary()
_appended_lock = threading.Lock()


class StateContention(CvcSyncError):
    """The state kept moving under a change run (many writers of one user, or generations published back to back):
    nothing was lost; the run is handed back to be retried."""

    code = "StateContention"
    retryable = True


class ChangeCommit(abc.ABC):
    """The write side of one change run's session (module docstring); ``engine.views.ChangeSession`` is the
    whole."""

    # Set by ``ChangeSession.__init__`` (what each holds is said there); the reads keep them up to date too.
    store: StateStore
    journal: Journal
    workdir: Path
    run_id: str
    plan_generation: int
    seen: dict[str, Seen]
    before: dict[str, UserRow]
    manifest: dict[str, Any] | None
    intents: dict[str, Entry]
    tops: dict[str, int]
    entries: int
    keys: int
    _events: dict[str, set[str]]
    _pending: dict[str, list[int]]
    _entries: dict[str, Entry]

    # -- what it reads through (``engine.views``) ------------------------------------------------------------------

    @abc.abstractmethod
    def read(
        self,
        user_ids: Iterable[str],
        *,
        checkpoints: bool = True,
        confirm: bool = True,
        probe: bool = True,
        also: dict[str, Callable[[], Any]] | None = None,
    ) -> View:
        """A view of ``user_ids`` on the newest generation."""

    @abc.abstractmethod
    def _known_view(self, users: list[str]) -> View | None:
        """The view of ``users`` from what this run read and wrote, without a request (None: read them again)."""

    @abc.abstractmethod
    def _moved(self, generation: int) -> bool:
        """Whether a generation after ``generation`` exists (one HEAD)."""

    # -- marks -----------------------------------------------------------------------------------------------------

    def mark_in_flight(self, run_id: str, entries: Iterable[tuple[str, str | None]]) -> int:
        """An ``intent`` entry per user this run may write, before its first CVC call."""
        marks = [
            Entry(uid, 0, INTENT, run_id, record=record, generation=self.plan_generation) for uid, record in entries
        ]
        missing = sorted({e.user_id for e in marks} - set(self.tops))
        if missing:  # not read by the plan (no run names users it did not read; but never guess a number)
            view = self.read(missing)
            view.state.close()
            self.tops.update(view.tops)
        for entry in self._append(marks, self.plan_generation):
            self.intents[entry.user_id] = entry
        return len(marks)

    def _fold_small_lists(self, keys: list[str]) -> int:
        """Batch runs' in-flight lists small enough to fold in here: their users become uncertain through the
        journal, and the list is removed, as a commit of a generation does. Returns how many it folded."""
        folded = 0
        for key in keys:
            info = self.store.store.head(self.store.bucket, key)
            if info is None or info.size > IN_FLIGHT_FOLD_BYTES:
                continue
            listed = self.store.read_in_flight(key, self.workdir)
            if listed is None:
                continue
            owner = key.rsplit("/", 1)[-1].removesuffix(".ndjson.gz")
            view = self.read([uid for uid, _ in listed])  # their numbers: past the newest entry and the mark
            view.state.close()
            self.tops.update(view.tops)
            self._append(
                [Entry(uid, 0, MARK, owner, record=record, source=key) for uid, record in dict(listed).items()],
                view.generation,
            )
            self.store.store.delete(self.store.bucket, key)
            folded += 1
            log.info("a small in-flight list was folded into the journal", extra={"key": key, "users": len(listed)})
        return folded

    # -- entries at the next number --------------------------------------------------------------------------------

    def _append(self, entries: list[Entry], read_at: int) -> list[Entry]:
        """Entries that depend on no read of their own (marks): each at the next number past ``self.tops`` (read on
        generation ``read_at``), confirmed."""
        todo, written = list(entries), list[Entry]()
        for _ in range(MAX_APPENDS):
            placed = [replace(e, seq=self.tops[e.user_id] + 1, written_at=clock.stamp(clock.now())) for e in todo]
            results = in_parallel(self.journal.append, placed)
            taken: list[Entry] = []
            for entry, ok in zip(placed, results, strict=True):
                self.tops[entry.user_id] = entry.seq
                (written if ok else taken).append(entry)
                if ok:
                    self._remember(entry)
                else:  # a number another writer took: this run no longer knows every entry of the user
                    self._pending.pop(entry.user_id, None)
            dead, _ = self._confirm([e for e, ok in zip(placed, results, strict=True) if ok], read_at)
            for entry in dead:
                written.remove(entry)
                self._pending.pop(entry.user_id, None)
            if taken:
                log.info(TAKEN, extra={"users": len(taken)})
            todo = [replace(e, entry_id=uuid.uuid4().hex) for e in taken + dead]
            self.entries += len(placed) - len(todo)
            if not todo:
                return written
        raise StateContention("too many writers of the same users at once: retry", code="StateContention")

    def _remember(self, entry: Entry) -> None:
        self._entries[self.journal.entry_key(entry.user_id, entry.seq)] = entry
        if entry.user_id in self._pending:
            self._pending[entry.user_id].append(entry.seq)

    def _confirm(self, written: list[Entry], read_at: int, *, always: bool = False) -> tuple[list[Entry], int | None]:
        """Which of ``written`` landed on numbers a generation published after ``read_at`` had already folded (dead),
        and the newest generation when one was published (None: none, nothing can be dead). ``always``: ask even
        when nothing was written (the manifest was)."""
        if (not written and not always) or not self._moved(read_at):
            return [], None
        newest = self.store.newest_generation()
        users = sorted({e.user_id for e in written})
        if not users:
            return [], newest  # only the manifest was written: no entry can be dead, no header is needed
        folded: set[str] = set()
        marks: dict[str, int] = {}
        for generation in range(read_at + 1, newest + 1):
            reader = self.store.reader(generation)
            try:
                header = reader.header()
            except CvcSyncError as exc:
                raise StateContention(f"state generation {generation} went while a change run checked it") from exc
            if header is None:
                continue
            for key, value in reader.lookup([USER + u for u in users], header).items():
                row = UserRow.from_json(key[len(USER) :], value)
                folded.update(entry_id for _, entry_id in row.folded)
                if generation == newest:
                    marks[row.user_id] = row.hw
        for uid, mark in marks.items():
            self.tops[uid] = max(self.tops.get(uid, 0), mark)
        dead = [e for e in written if e.seq <= marks.get(e.user_id, 0) and e.entry_id not in folded]
        if dead:
            log.warning("journal entries landed on folded numbers; writing them again", extra={"entries": len(dead)})
        return dead, newest

    # -- the commit ------------------------------------------------------------------------------------------------

    def commit(
        self, writes: list[Write], also: Callable[[ShadowState, list[Repair]], None] | None
    ) -> tuple[int, list[Repair]]:
        """One entry per user written or marked (module docstring); ``also`` records the rest (applied event ids,
        meta) once, on the first view. Returns the newest generation and the repairs of the races the writes were
        in, as ``engine.settle`` tells them.

        Round trips, when no other writer of its users came in between: none to read (the view is what the run read
        and wrote itself), one round of writes (the entries, the markers of event ids no entry carries, the
        manifest, in parallel), one HEAD that proves no generation was published since the read (``_confirm``)."""
        by_user: dict[str, list[Write]] = {}
        for write in writes:
            by_user.setdefault(write.user_id, []).append(write)
        todo = sorted(set(by_user) | set(self.intents))
        repairs: dict[str, list[Repair]] = {}
        recorded: tuple[list[tuple[str, str]], dict[str, str]] | None = None
        carried: dict[str, tuple[tuple[str, str], ...]] = {}  # the event ids that ride on each user's entry
        generation = self.plan_generation
        touched = False
        for _ in range(MAX_APPENDS):
            first = recorded is None
            view = (self._known_view(todo) if first else None) or self.read(todo, confirm=False, probe=False)
            generation = view.generation
            try:
                if first:  # the newest commit may be a journal commit: a scheduled task's ``also`` reads it
                    self.store.fold_manifest(view.state, self.manifest or {})
                    recorded = self._also(view.state, also)
                    carried = {u: tuple(ev for ev in recorded[0] if u in self._events.get(ev[0], ())) for u in todo}
                events, meta = recorded or ([], {})
                placed = [
                    Entry(
                        uid,
                        view.tops.get(uid, 0) + 1,
                        WRITE if uid in by_user else RELEASE,
                        self.run_id,
                        writes=tuple(by_user.get(uid, ())),
                        seen=self.seen.get(uid) or Seen(self.plan_generation, 0),
                        generation=view.generation,
                        written_at=clock.stamp(clock.now()),
                        events=carried.get(uid, ()),
                    )
                    for uid in todo
                ]
                raised = replay(view.state, placed)
                rows = view.state.rows(todo)
                placed = [
                    replace(
                        e,
                        row=rows.get(e.user_id) or UserRow(e.user_id),
                        recent=view.recent.get(e.user_id, ()) + e.events,
                    )
                    for e in placed
                ]
            finally:
                view.state.close()
            work: list[Callable[[], bool]] = [partial(self.journal.append, e) for e in placed]
            if first:
                riders = {ev for found in carried.values() for ev in found}
                work += [partial(self.journal.put_event, *ev) for ev in events if ev not in riders]
                manifest = self._manifest(generation, rows, meta, wrote=bool(placed or events or meta))
                if manifest is not None:
                    touched = True
                    work.append(partial(self.store.put_manifest, manifest))
            results = in_parallel(lambda step: step(), work)[: len(placed)]
            landed = [e for e, ok in zip(placed, results, strict=True) if ok]
            for entry in landed:
                self._remember(entry)
            dead, moved = self._confirm(landed, view.generation, always=touched and first)
            for entry in landed:
                if entry not in dead:
                    repairs[entry.user_id] = raised.get(entry.entry_id, [])
            self.entries += len(landed) - len(dead)
            if moved is not None:
                generation = moved
                self._replay_again([e for e in landed if e not in dead], repairs)
                if touched and first:
                    self.store.republish_after(view.generation)  # the manifest never goes backwards
            taken = {e.user_id for e, ok in zip(placed, results, strict=True) if not ok}
            if taken:
                log.info(TAKEN, extra={"users": len(taken)})
            # A user whose entry did not land: its next one carries its event ids (``carried``) instead.
            todo = sorted(taken | {e.user_id for e in dead})
            if not todo:
                break
        else:
            raise StateContention("too many writers of the same users at once: retry", code="StateContention")
        self._maybe_compact()
        return generation, [r for found in repairs.values() for r in found]

    @staticmethod
    def _also(
        state: ShadowState, also: Callable[[ShadowState, list[Repair]], None] | None
    ) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Run ``also`` on a view: the event ids and meta it adds (all a change run records besides its users)."""
        events = {e for (e,) in state.db.execute("SELECT event_id FROM events")}
        meta = state.all_meta()
        if also is not None:
            also(state, [])
        added = [(e, at) for e, at in state.db.execute("SELECT event_id, applied_at FROM events") if e not in events]
        changed = {k: v for k, v in state.all_meta().items() if meta.get(k) != v}
        return added, changed

    def _replay_again(self, entries: list[Entry], repairs: dict[str, list[Repair]]) -> None:
        """A generation was published after our read: replay our pending entries on it, as every reader will, and
        take the repairs that gives (its commit's writes may have raced with ours)."""
        if not entries:
            return
        view = self.read([e.user_id for e in entries], checkpoints=False)
        try:
            for entry in entries:
                if entry.seq <= view.marks.get(entry.user_id, 0):
                    continue  # folded into the generation: its commit saw it, and settled the race itself
                repairs[entry.user_id] = view.raised.get(entry.entry_id, [])
        finally:
            view.state.close()

    def _manifest(
        self, generation: int, after: dict[str, UserRow], meta: dict[str, str], *, wrote: bool
    ) -> dict[str, Any] | None:
        """The manifest this commit leaves: it is the newest commit, and its counts moved as its users did (None:
        nothing to say)."""
        if not wrote and not self.intents:
            return None
        users = uncertain = 0
        for uid, row in after.items():
            old = self.before.get(uid)
            users += _certain(row) - _certain(old)
            uncertain += _uncertain(row) - _uncertain(old)
        return self.store.touched_manifest(
            self.manifest or {}, generation, run_id=self.run_id, users=users, uncertain=uncertain, meta=meta
        )

    def _maybe_compact(self) -> None:
        """This process has written many entries since it last folded them: fold them into a generation, so a state
        only change runs write (a warm container's /tmp, a SCIM-only deployment) stays small. Not for a directory
        past ``INLINE_COMPACT_KEYS``: the scheduled redrive compacts that one."""
        store = self.store
        if self.keys > INLINE_COMPACT_KEYS:
            return
        with _appended_lock:
            counts = _appended.setdefault(store.store, {})
            key = (store.bucket, store.prefix)
            counts[key] = counts.get(key, 0) + self.entries
            # At least a tenth of the directory between two: a compaction costs the directory's size, and is paid
            # for by that many changes (amortised, a change never costs more than a few users' worth).
            due = counts[key] >= max(store.compact_pending, self.keys // COMPACT_SHARE)
            if due:
                counts[key] = 0
        if due:
            store.compact()


def _certain(row: UserRow | None) -> int:
    return int(row is not None and row.hash is not None and row.hash != UNCERTAIN)


def _uncertain(row: UserRow | None) -> int:
    return int(row is not None and row.hash == UNCERTAIN)


__all__ = ["ChangeCommit", "StateContention"]
