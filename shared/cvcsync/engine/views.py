"""The change path's state: the users one change run names, read one by one; its commit is ``engine.view_commit``.

A change run (queue messages, HTTP and SCIM writes, the redrive's letters: ``runs.changes``) touches a few users
of a directory that may hold a million. ``ChangeSession`` gives it the same ``ShadowState`` the batch path plans
against, holding only those users, for a cost that does not grow with the directory:

* **read** (``checkout``): the newest generation, each user's row from that generation's index
  (``engine.generation``: two ranged GETs per bucket of users), each user's pending journal entries (one LIST of
  its own prefix, or one of the whole journal for a run of many users when it is short; the newest entry alone
  when it is a checkpoint on this generation), and one HEAD to make sure no generation was published meanwhile (a
  commit that folded entries deletes them after it publishes: a read that straddled it is read again). That HEAD
  also proves the generation read is the newest, so a plan starts from the last one this process saw without a
  HEAD of its own first (one published since is found by it, and read then). An event id is looked up (its
  marker, the index) only when a user it names has a last change not older than its change: a change once
  applied leaves its time on its user, so a newer one cannot have been. What the plan saw of each user is kept
  (``Seen``).
* **mark** and **commit** (``mark_in_flight``, ``commit``): journal entries, written by ``engine.view_commit``, the
  write side of the same session (``ChangeCommit``, which ``ChangeSession`` extends). Before its plan reads, a run
  folds the small in-flight lists of batch runs in there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from cvcsync.engine.generation import EVENT, USER
from cvcsync.engine.journal import RELEASE, WRITE, Entry, in_parallel, replay
from cvcsync.engine.settle import Repair, Seen
from cvcsync.engine.shadow import ShadowState, UserRow
from cvcsync.engine.state import IN_FLIGHT_DIR, StateStore
from cvcsync.engine.view_commit import ChangeCommit, StateContention
from cvcsync.engine.view_commit import _appended as _appended  # tests and benches reset it: ``views._appended``
from cvcsync.errors import CvcSyncError

MAX_READS = 8  # reads of a view that met a generation published meanwhile, before giving up (retryable)
LIST_WHOLE_FROM = 16  # users in a read from which one listing of the whole journal may replace one per user
LIST_WHOLE_LIMIT = 2000  # entries: two pages of a listing, at most


@dataclass
class View:
    """Some users (and event ids) of the newest generation with their pending journal entries, in a
    ``ShadowState``: what a batch checkout would hold of them, but for the in-flight lists of batch runs."""

    state: ShadowState
    generation: int
    tops: dict[str, int]  # per user, the newest entry number read (its high-water mark when none is pending)
    marks: dict[str, int]  # per user, the generation's high-water mark: entries up to it are folded
    keys: int  # keys in the generation's index: users and event ids (the directory's size, near enough)
    raised: dict[str, list[Repair]] = field(default_factory=dict)  # repairs the replayed entries raised, by id
    also: dict[str, Any] = field(default_factory=dict)  # answers of the reads asked for beside it
    recent: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # event ids of pending entries


class _Moved(Exception):  # a signal inside ``read``, never raised out of it
    """A generation was published while a view was read: read it again."""


_ABSENT = object()  # an index key a generation does not hold (cached as such)


class ChangeSession(ChangeCommit):
    """One change run's reads and writes of the state (module docstring)."""

    def __init__(self, store: StateStore, workdir: Path, *, run_id: str) -> None:
        self.store = store
        self.journal = store.journal
        self.workdir = workdir
        self.run_id = run_id
        self.plan_generation = 0
        self.seen: dict[str, Seen] = {}  # what the plan saw of each user
        self.before: dict[str, UserRow] = {}  # the plan's rows, for the manifest's counts
        self.manifest: dict[str, Any] | None = None  # as the plan read it
        self.intents: dict[str, Entry] = {}
        self.tops: dict[str, int] = {}  # per user, the newest entry number known
        self.entries = 0  # entries this run wrote
        self.keys = 0  # the size of the newest generation's index, as last read
        self._events: dict[str, set[str]] = {}  # event id -> the users of the run it names
        self._marks: dict[str, int] = {}  # per user, the plan generation's high-water mark
        self._pending: dict[str, list[int]] = {}  # per user, the numbers past the mark whose entries this run holds
        self._base: dict[tuple[int, str], Any] = {}  # index values read, by (generation, key): never read twice
        self._headers: dict[int, tuple[dict[str, str], tuple[str, ...], int]] = {}  # meta, settled lists, keys
        self._entries: dict[str, Entry] = {}  # entries this run wrote or read, by key: an entry never changes
        self._starts: dict[str, Entry] = {}  # per user, the checkpoint its last read started from
        self._views = 0

    # -- reading ---------------------------------------------------------------------------------------------------

    def _path(self) -> Path:
        self._views += 1
        return self.workdir / f"view-{self._views}.sqlite"

    def read(
        self,
        user_ids: Iterable[str],
        *,
        checkpoints: bool = True,
        confirm: bool = True,
        probe: bool = True,
        also: dict[str, Callable[[], Any]] | None = None,
    ) -> View:
        """A view of ``user_ids`` on the newest generation (module docstring). Its requests go out in rounds of
        parallel requests: the index blocks and the users' listings (and ``also``'s reads, whose answers are
        ``View.also``); the newest entries; the older ones, when the newest is no checkpoint. ``confirm=False``:
        skip the last HEAD that proves no generation was published meanwhile (the caller proves it later:
        ``_confirm``); ``probe=False``: start from the generation this process last saw without asking whether a
        newer one exists (the same proof covers it)."""
        users = sorted(set(user_ids))
        fresh = False
        for _ in range(MAX_READS):
            generation = self.store.newest_generation(fresh=fresh, probe=probe)
            probe, fresh = True, False
            try:
                return self._read_at(generation, users, checkpoints, confirm, also or {})
            except _Moved:
                continue
            except CvcSyncError as exc:
                if exc.code != "StateMissing":
                    raise
                fresh = True  # the generation this process last saw is gone (pruned): ask the manifest
        raise StateContention("the state kept moving while a change run read it: retry", code="StateContention")

    def _header(self, generation: int) -> tuple[dict[str, str], tuple[str, ...], int]:
        """The meta, recently settled in-flight lists and index size of ``generation`` (none for generation 0)."""
        if generation not in self._headers:
            if not generation:
                self._headers[generation] = ({}, (), 0)
            else:
                header = self.store.reader(generation).header()
                if header is None:  # a generation of the old format: write it again, with its index, once
                    self.store.compact()
                    raise _Moved
                self._headers[generation] = (dict(header.meta), header.settled, header.keys)
        return self._headers[generation]

    def _lookups(self, generation: int, keys: list[str]) -> list[tuple[str, Any]]:
        """Read tasks for the index keys of ``generation`` this run has not read yet (``_run``)."""
        wanted = [key for key in keys if (generation, key) not in self._base]
        if not generation or not wanted:
            for key in wanted:
                self._base[(generation, key)] = _ABSENT
            return []
        reader = self.store.reader(generation)
        header = reader.header()
        assert header is not None  # ``_header`` rewrote a generation of the old format first
        return [("block", (reader, header, bucket, found)) for bucket, found in reader.buckets(wanted, header).items()]

    def _run(self, generation: int, tasks: list[tuple[str, Any]], also: dict[str, Callable[[], Any]]) -> dict[Any, Any]:
        """Run read tasks in parallel; index blocks land in ``_base``, other answers are returned by task."""

        def one(task: tuple[str, Any]) -> Any:
            kind, item = task
            if kind == "block":
                reader, header, bucket, wanted = item
                return reader.block(header, bucket, wanted)
            if kind == "list":
                return self.journal.list_user(item)
            if kind == "journal":
                return self.journal.list_pending(LIST_WHOLE_LIMIT)
            if kind == "marker":
                return self.store.store.get_bytes(self.store.bucket, self.journal.event_key(item))
            return also[item]()

        answers: dict[Any, Any] = {}
        for (kind, item), answer in zip(tasks, in_parallel(one, tasks), strict=True):
            if kind == "block":
                for key in item[3]:
                    self._base[(generation, key)] = answer.get(key, _ABSENT)
            else:
                answers[(kind, item)] = answer
        return answers

    def _read_at(
        self, generation: int, users: list[str], checkpoints: bool, confirm: bool, also: dict[str, Callable[[], Any]]
    ) -> View:
        self._header(generation)
        tasks = self._lookups(generation, [USER + u for u in users])
        whole = len(users) >= LIST_WHOLE_FROM  # many users: one listing of the whole journal, when it is short
        tasks += [("journal", "")] if whole else [("list", u) for u in users]
        tasks += [("also", name) for name in also]
        answers = self._run(generation, tasks, also)
        if whole:
            listed = answers.pop(("journal", ""))
            if listed is None:  # a long journal: each user's own prefix after all
                answers.update(self._run(generation, [("list", u) for u in users], {}))
            else:
                answers.update({("list", u): listed.get(self.journal.digest_of(u), []) for u in users})
        base = self._base_rows(generation, users)
        marks = {u: base[u].hw if u in base else 0 for u in users}
        pending = {u: [seq for seq in answers[("list", u)] if seq > marks[u]] for u in users}
        newest = self._read_entries([self.journal.entry_key(u, seqs[-1]) for u, seqs in pending.items() if seqs])
        start = {
            e.user_id: e
            for e in newest
            if checkpoints and e.row is not None and e.generation == generation and e.kind in (WRITE, RELEASE)
        }
        rest = [self.journal.entry_key(u, seq) for u, seqs in pending.items() if u not in start for seq in seqs[:-1]]
        entries = [e for e in newest if e.user_id not in start] + self._read_entries(rest)
        if confirm and self._moved(generation):
            raise _Moved  # published while we read: its commit may have deleted entries we were about to read
        for u in users:
            self._pending[u] = pending[u]
            if u in start:
                self._starts[u] = start[u]
            else:
                self._starts.pop(u, None)
        view = self._build(generation, users, base, start, entries)
        view.also = {name: answers[("also", name)] for name in also}
        return view

    def _moved(self, generation: int) -> bool:
        """Whether a generation after ``generation`` exists (one HEAD); remembered when it does."""
        if self.store.store.head(self.store.bucket, self.store._key(generation + 1)) is None:
            return False
        self.store.remember_generation(generation + 1)
        return True

    def _base_rows(self, generation: int, users: list[str]) -> dict[str, UserRow]:
        found = {u: self._base.get((generation, USER + u), _ABSENT) for u in users}
        return {u: UserRow.from_json(u, value) for u, value in found.items() if value is not _ABSENT}

    def _build(
        self,
        generation: int,
        users: list[str],
        base: dict[str, UserRow],
        start: dict[str, Entry],
        entries: list[Entry],
    ) -> View:
        """The view's ``ShadowState``: the generation's meta, each user's row (or the newest checkpoint on this
        generation), then the pending entries after it replayed by the one rule."""
        meta, settled, keys = self._header(generation)
        marks = {u: base[u].hw if u in base else 0 for u in users}
        state = ShadowState(self._path(), generation)
        state.db.execute("BEGIN")
        for key, value in meta.items():
            state.set_meta(key, value)
        state.db.executemany(
            "INSERT OR IGNORE INTO settled_lists (key, generation) VALUES (?, ?)", [(k, generation) for k in settled]
        )
        state.put_rows(base[u] for u in users if u in base and u not in start)
        state.put_rows(replace(e.row, hw=marks[u]) for u, e in start.items() if e.row)
        state.put_events(event for e in start.values() for event in e.recent)
        raised = replay(state, entries)
        state.db.execute("COMMIT")
        tops = {u: self._pending[u][-1] if self._pending.get(u) else marks[u] for u in users}
        recent: dict[str, tuple[tuple[str, str], ...]] = {u: e.recent for u, e in start.items()}
        for entry in sorted(entries, key=lambda e: e.seq):
            recent[entry.user_id] = recent.get(entry.user_id, ()) + entry.events
        self.keys = keys
        return View(state, generation, tops, marks, keys, raised, recent=recent)

    def _read_entries(self, keys: list[str]) -> list[Entry]:
        """The entries at ``keys``: those this run knows already from memory, the rest with a GET each."""
        missing = [key for key in keys if key not in self._entries]
        for entry in self.journal.read(missing):
            self._entries[self.journal.entry_key(entry.user_id, entry.seq)] = entry
        return [self._entries[key] for key in keys if key in self._entries]

    def _known_view(self, users: list[str]) -> View | None:
        """The view of ``users`` from what this run read and wrote, without a request, when it knows every entry
        of each of them past the plan generation's mark (no other writer took a number since its read); None
        otherwise. The commit's proof (``_confirm``) covers a generation published since."""
        generation = self.plan_generation
        starts = {u: self._starts[u] for u in users if u in self._starts}
        entries: list[Entry] = []
        for u in users:
            seqs = self._pending.get(u)
            if u not in self._marks or seqs is None or seqs != list(range(self._marks[u] + 1, self.tops[u] + 1)):
                return None
            after = [seq for seq in seqs if u not in starts or seq > starts[u].seq]  # past its checkpoint, if any
            if any(self.journal.entry_key(u, seq) not in self._entries for seq in after):
                return None
            entries += [self._entries[self.journal.entry_key(u, seq)] for seq in after]
        return self._build(generation, users, self._base_rows(generation, users), starts, entries)

    def _applied(self, generation: int, event_ids: list[str]) -> dict[str, str]:
        """Of ``event_ids``, those applied by a run whose user this run did not read (a marker) or folded into
        ``generation`` (its index), with when: one GET and one block of the index each, in parallel."""
        tasks = self._lookups(generation, [EVENT + e for e in event_ids]) + [("marker", e) for e in event_ids]
        answers = self._run(generation, tasks, {})
        found: dict[str, str] = {}
        for e in event_ids:
            value = self._base.get((generation, EVENT + e), _ABSENT)
            if value is not _ABSENT:
                found[e] = str(value)
            elif answers[("marker", e)] is not None:
                found[e] = str(orjson.loads(answers[("marker", e)]).get("appliedAt") or "")
        return found

    # -- the plan --------------------------------------------------------------------------------------------------

    def checkout(self, user_ids: Iterable[str], events: Mapping[str, Iterable[tuple[str, str]]]) -> ShadowState:
        """The plan's view: the run's users (after folding small in-flight lists in) and, of ``events`` (event id ->
        the (user, event time) of each change it names), those already applied. An event id is looked up only
        when one of its users' last change is not older than its change: a change once applied leaves its time
        on its user (stale and superseded ones included), so a newer one cannot have been applied."""
        users = sorted(set(user_ids))
        named = {event: list(uses) for event, uses in events.items()}
        self._events = {event: {user for user, _ in uses} for event, uses in named.items()}
        lists = True
        # The first read starts from the generation this process saw last, without a HEAD: the ``_moved`` below
        # proves it the newest (and reads again when one was published since, probing forward then).
        probe = False
        for _ in range(MAX_READS):
            reads = {"manifest": self.store.read_manifest, **({"lists": self.store.in_flight_lists} if lists else {})}
            view = self.read(users, confirm=False, probe=probe, also=reads)
            probe = True
            if lists and view.also["lists"] and self._fold_small_lists(view.also["lists"]):
                view.state.close()
                lists = False
                continue
            lists = False
            last = view.state.last_changes(users)
            maybe = [e for e, uses in named.items() if any(last.get(u, "") >= at for u, at in uses)]
            maybe = [e for e in maybe if e not in view.state.seen_events([e])]  # carried by the users' entries
            applied = self._applied(view.generation, maybe) if maybe else {}
            if self._moved(view.generation):
                view.state.close()
                continue
            view.state.put_events(applied.items())
            self.plan_generation = view.generation
            self.manifest = view.also["manifest"]
            self.seen = {u: Seen(view.generation, top) for u, top in view.tops.items()}
            self.tops, self._marks = dict(view.tops), dict(view.marks)
            self.before = view.state.rows(users)
            return view.state
        raise StateContention("the state kept moving while a change run read it: retry", code="StateContention")


def read_users(store: StateStore, user_ids: Iterable[str], workdir: Path) -> dict[str, UserRow]:
    """What the state holds of ``user_ids`` now (the newest generation and the journal), read one by one: for a
    reader of single users (an API's GET of one user) that must not download the snapshot. Batch runs' in-flight
    lists are not read: a user they name shows as the journal and the generation hold it. No HEAD before the read:
    the one after it proves the generation read the newest (``ChangeSession.checkout``)."""
    view = ChangeSession(store, workdir, run_id="read").read(user_ids, probe=False)
    try:
        return view.state.rows(sorted(view.tops))
    finally:
        view.state.close()


__all__ = ["IN_FLIGHT_DIR", "ChangeSession", "StateContention", "View", "read_users"]
