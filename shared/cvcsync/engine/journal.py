"""The journal: what the change path (queue, HTTP, SCIM, redrive) commits, one small create-only object per user
and step, instead of a new generation of the whole state.

Keys, under the state's prefix::

    journal/<h[:2]>/<h>/<seq:012d>.json    h = blake2b(userId), seq = 1, 2, 3... per user, never reused
    events/<h[:2]>/<h>.json               h = blake2b(eventId): an applied event id no entry carries

A user's entries are numbered: a writer takes the number after the last one it read, create-only, so two writers
of one user cannot both take it (the loser reads again and takes the next); writers of different users never meet.
An entry is a step of one run for one user (``Entry.kind``):

* ``intent``: the run may write the user (its in-flight mark, before the first CVC call);
* ``write``: what it wrote (``engine.settle.Write``), with what its plan saw (``Seen``), replayed by the one rule;
* ``release``: it let go of its mark without a write (the change was handed back to be retried);
* ``uncertain``: an in-flight list of a batch run, folded in (``engine.view_commit``); void if that run's commit settled
  the list before the entry was written (the generation remembers which lists it settled).

An entry also carries the event ids its run settled for that user (the duplicate check of a redelivery reads the
user anyway); an event id of no user of the run gets a marker of its own under ``events/``.

A checkpoint (``row``) carries with it the event ids of the user's entries since its generation (``recent``), so a
reader that starts from it still knows them.

A generation records, per user, the highest entry it folded in (``journal_hw``) and which entries (``journal_folded``),
and the batch commit that wrote it deletes them afterwards. An entry at or below that mark is folded (or dead: see
``Journal.confirm``) and every reader skips it. A write entry also carries the user's row after it, computed on the
generation its writer read (``row``, ``generation``): a reader on that same generation starts from the newest such
checkpoint instead of replaying every entry.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from cvcsync import clock
from cvcsync.engine.settle import Seen, Write, replay_writes
from cvcsync.engine.shadow import ShadowState, UserRow

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore
    from cvcsync.engine.settle import Repair

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal/"
EVENTS_DIR = "events/"
INTENT, WRITE, RELEASE, MARK = "intent", "write", "release", "uncertain"
KINDS = (INTENT, WRITE, RELEASE, MARK)
PARALLEL = 32  # store requests in flight at once (boto3 clients are thread-safe; so are the local stores)
T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def in_parallel(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``work`` over ``items`` on a shared pool of ``PARALLEL`` threads, results in order (one item: no thread)."""
    todo = list(items)
    if len(todo) <= 1:
        return [work(item) for item in todo]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="cvcsync-state")
        pool = _pool
    return list(pool.map(work, todo))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One step of one run for one user (module docstring)."""

    user_id: str
    seq: int
    kind: str
    run_id: str
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    writes: tuple[Write, ...] = ()
    seen: Seen | None = None  # write: what the writer's plan saw of the user
    record: str | None = None  # intent, uncertain: the record the run meant to write (a create), else None
    source: str | None = None  # uncertain: the in-flight list it came from (void once a generation settled it)
    events: tuple[tuple[str, str], ...] = ()  # (event id, applied at) the run settled for this user
    recent: tuple[tuple[str, str], ...] = ()  # with ``row``: the event ids of the user's entries since ``generation``
    generation: int = 0  # the generation the writer read (the base of ``row``)
    row: UserRow | None = None  # the user's row after this entry, on that generation
    written_at: str = ""

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "v": 1,
            "user": self.user_id,
            "seq": self.seq,
            "kind": self.kind,
            "run": self.run_id,
            "id": self.entry_id,
            "gen": self.generation,
            "at": self.written_at or clock.stamp(clock.now()),
        }
        if self.writes:
            body["writes"] = [[w.at, w.op, w.hash, w.record, w.changed, w.landed] for w in self.writes]
        if self.seen is not None:
            body["seen"] = [self.seen.generation, self.seen.seq]
        if self.record is not None:
            body["record"] = self.record
        if self.source is not None:
            body["source"] = self.source
        if self.events:
            body["events"] = [list(event) for event in self.events]
        if self.recent:
            body["recent"] = [list(event) for event in self.recent]
        if self.row is not None:
            body["row"] = self.row.to_json()
        return orjson.dumps(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        body = orjson.loads(data)
        user = str(body["user"])
        seen = body.get("seen")
        return cls(
            user_id=user,
            seq=int(body["seq"]),
            kind=str(body["kind"]),
            run_id=str(body["run"]),
            entry_id=str(body["id"]),
            writes=tuple(
                Write(user, at, op, digest, record, changed=bool(changed), landed=bool(landed))
                for at, op, digest, record, changed, landed in body.get("writes") or ()
            ),
            seen=Seen(int(seen[0]), int(seen[1])) if seen else None,
            record=body.get("record"),
            source=body.get("source"),
            events=tuple((str(e), str(at)) for e, at in body.get("events") or ()),
            recent=tuple((str(e), str(at)) for e, at in body.get("recent") or ()),
            generation=int(body.get("gen") or 0),
            row=UserRow.from_json(user, body["row"]) if body.get("row") is not None else None,
            written_at=str(body.get("at") or ""),
        )


def replay(state: ShadowState, entries: Iterable[Entry]) -> dict[str, list[Repair]]:
    """Fold ``entries`` into ``state`` in their order per user (any order across users), by the one rule; returns
    the repairs each entry's writes raised, by entry id (the writer dead-letters its own; a fold drops them)."""
    by_user: dict[str, list[Entry]] = {}
    for entry in entries:
        by_user.setdefault(entry.user_id, []).append(entry)
    for found in by_user.values():
        found.sort(key=lambda e: e.seq)
    repairs: dict[str, list[Repair]] = {}
    rounds = max((len(found) for found in by_user.values()), default=0)
    for n in range(rounds):  # the n-th entry of every user at once: one settle per round, users never mixed
        step = [found[n] for found in by_user.values() if len(found) > n]
        intents = [(e.user_id, e.record) for e in step if e.kind == INTENT]
        # A folded list's mark, unless its run's own commit settled the list first (the mark came too late).
        marks = [(e.user_id, e.record) for e in step if e.kind == MARK and not state.list_settled(e.source)]
        settled = [e.user_id for e in step if e.kind in (WRITE, RELEASE)]
        if intents:
            state.fold_in_flight(intents)
        if marks:
            state.mark_uncertain(marks)
        if settled:
            state.settle_in_flight(settled)
        state.put_events([event for e in step for event in e.events])
        writes = [e for e in step if e.kind == WRITE and e.writes]
        depth = max((len(e.writes) for e in writes), default=0)
        for k in range(depth):
            batch = [(e.writes[k], e.seq, e.seen or Seen(0, 0), e.entry_id) for e in writes if len(e.writes) > k]
            done = replay_writes(state, [(w, seq, seen) for w, seq, seen, _ in batch])
            by_id = {w.user_id: entry_id for w, _, _, entry_id in batch}
            for repair in done:
                repairs.setdefault(by_id[repair.user_id], []).append(repair)
    return repairs


class Journal:
    """The journal and the applied event ids of the state under ``prefix`` in ``bucket`` (module docstring)."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self.store, self.bucket, self.prefix = store, bucket, prefix

    # -- keys --------------------------------------------------------------------------------------------------

    def user_prefix(self, user_id: str) -> str:
        digest = _digest(user_id)
        return f"{self.prefix}{JOURNAL_DIR}{digest[:2]}/{digest}/"

    def entry_key(self, user_id: str, seq: int) -> str:
        return f"{self.user_prefix(user_id)}{seq:012d}.json"

    @staticmethod
    def seq_of(key: str) -> int | None:
        name = key.rsplit("/", 1)[-1]
        stem = name.removesuffix(".json")
        return int(stem) if stem != name and stem.isdigit() else None

    def event_key(self, event_id: str) -> str:
        digest = _digest(event_id)
        return f"{self.prefix}{EVENTS_DIR}{digest[:2]}/{digest}.json"

    # -- entries -----------------------------------------------------------------------------------------------

    def list_user(self, user_id: str) -> list[int]:
        """The numbers of the user's entries still in the journal, ascending."""
        seqs = (self.seq_of(key) for key in self.store.list_keys(self.bucket, self.user_prefix(user_id)))
        return sorted(seq for seq in seqs if seq is not None)

    def digest_of(self, user_id: str) -> str:
        return _digest(user_id)

    def list_pending(self, limit: int) -> dict[str, list[int]] | None:
        """Every user's entry numbers, by user digest, in one listing of the whole journal; None when it holds more
        than ``limit`` entries (then each user's own prefix is cheaper to list)."""
        found: dict[str, list[int]] = {}
        count = 0
        for key in self.store.list_keys(self.bucket, self.prefix + JOURNAL_DIR):
            seq = self.seq_of(key)
            if seq is None:
                continue
            count += 1
            if count > limit:
                return None
            found.setdefault(key.rsplit("/", 2)[-2], []).append(seq)
        return {digest: sorted(seqs) for digest, seqs in found.items()}

    def list_all(self) -> Iterator[tuple[str, int]]:
        """(key, seq) of every entry in the journal, whoever's."""
        for key in self.store.list_keys(self.bucket, self.prefix + JOURNAL_DIR):
            seq = self.seq_of(key)
            if seq is not None:
                yield key, seq

    def read(self, keys: list[str]) -> list[Entry]:
        """The entries at ``keys`` (one GET each, in parallel); one deleted meanwhile is left out."""
        bodies = in_parallel(lambda key: self.store.get_bytes(self.bucket, key), keys)
        return [Entry.from_bytes(body) for body in bodies if body is not None]

    def append(self, entry: Entry) -> bool:
        """Write ``entry`` at its number, create-only: False when another writer has taken that number."""
        key = self.entry_key(entry.user_id, entry.seq)
        return self.store.put_bytes(self.bucket, key, entry.to_bytes(), content_type="application/json", if_absent=True)

    def delete(self, keys: list[str]) -> None:
        if keys:
            self.store.delete_many(self.bucket, keys)

    # -- event ids ---------------------------------------------------------------------------------------------

    def put_event(self, event_id: str, applied_at: str) -> bool:
        """An applied event id, create-only (a copy already there is the same fact)."""
        body = orjson.dumps({"eventId": event_id, "appliedAt": applied_at})
        return self.store.put_bytes(
            self.bucket, self.event_key(event_id), body, content_type="application/json", if_absent=True
        )

    def list_events(self) -> list[str]:
        return list(self.store.list_keys(self.bucket, self.prefix + EVENTS_DIR))

    def read_events(self, keys: list[str]) -> list[tuple[str, str, str]]:
        """(key, event id, applied at) of the markers at ``keys``."""
        bodies = in_parallel(lambda key: self.store.get_bytes(self.bucket, key), keys)
        found = []
        for key, body in zip(keys, bodies, strict=True):
            if body is None:
                continue
            data = orjson.loads(body)
            found.append((key, str(data["eventId"]), str(data["appliedAt"])))
        return found
