"""The shadow state as a SQLite file: per user a content hash and the record, the event time of its last change,
the event ids already applied, and the journal's high-water marks (``ShadowState``).

A ``ShadowState`` is either a whole generation checked out by the batch path (``engine.state.StateStore``) or a
*view* of a few users the change path read one by one (``engine.views``): the same tables and the same rule
(``engine.settle``) either way, so a plan or a settle cannot tell them apart. ``UserRow`` is one user's part of it,
as the generation's index (``engine.generation``) and the journal's entries (``engine.journal``) carry it.

Two times are kept apart: ``users.synced_at`` is when cvc-sync *processed* a user (for people),
``changes.occurred_at`` is the *event time* of the user's last applied change, in ``clock.stamp`` format, and only
event times order changes (``clock``: event time, ties by arrival). Each change also records who committed it, so
that a writer learns which changes were committed behind its back (``engine.settle``): ``generation`` (the
generation that recorded it; one past the checked-out one for a change not yet in a generation) and ``entry_seq``
(the journal entry of that user that recorded it; NULL for a change a generation's own commit recorded).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL,
    synced_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (user_id TEXT PRIMARY KEY, occurred_at TEXT NOT NULL, op TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, entry_seq INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, applied_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled_lists (key TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_hw (user_id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_folded (user_id TEXT NOT NULL, seq INTEGER NOT NULL, entry_id TEXT NOT NULL,
    PRIMARY KEY (user_id, seq)) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS in_flight (user_id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS settled (user_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""
UNCERTAIN = ""  # the hash of a user a run may have written without recording it: it matches no content
EVENT_MEMORY_DAYS = 7
_CHUNK = 500  # ids per IN (...) query: under SQLite's old limit of 999 parameters


def journal_fingerprint(keys: Iterable[str]) -> str:
    """A digest of a listing of journal keys (``ShadowState.journal_fingerprint``); '' for an empty journal."""
    found = sorted(keys)
    if not found:
        return ""
    return hashlib.blake2b("\n".join(found).encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True)
class UserRow:
    """Everything the state holds of one user: its ``users`` row (None: CVC holds no such user as far as the state
    knows), its last change (``changes``), its journal high-water mark and the entries this generation folded
    (``journal_hw``, ``journal_folded``), and whether a running run named it in flight."""

    user_id: str
    hash: str | None = None
    record: str | None = None
    synced_at: str | None = None
    occurred_at: str | None = None
    op: str | None = None
    generation: int | None = None
    entry_seq: int | None = None
    hw: int = 0
    folded: tuple[tuple[int, str], ...] = ()
    in_flight: bool = False

    def to_json(self) -> dict[str, Any]:
        """The compact form the generation's index and the journal's entries carry."""
        out: dict[str, Any] = {}
        if self.hash is not None:
            out["h"], out["r"], out["s"] = self.hash, self.record, self.synced_at
        if self.occurred_at is not None:
            out["t"], out["o"], out["g"], out["q"] = self.occurred_at, self.op, self.generation, self.entry_seq
        if self.hw:
            out["w"] = self.hw
        if self.folded:
            out["f"] = [list(pair) for pair in self.folded]
        if self.in_flight:
            out["i"] = 1
        return out

    @classmethod
    def from_json(cls, user_id: str, data: Mapping[str, Any]) -> UserRow:
        return cls(
            user_id,
            hash=data.get("h"),
            record=data.get("r"),
            synced_at=data.get("s"),
            occurred_at=data.get("t"),
            op=data.get("o"),
            generation=data.get("g"),
            entry_seq=data.get("q"),
            hw=int(data.get("w") or 0),
            folded=tuple((int(seq), str(entry)) for seq, entry in data.get("f") or ()),
            in_flight=bool(data.get("i")),
        )

    @property
    def present(self) -> bool:
        """Whether the state knows anything of this user (a row, a change, a journal mark)."""
        return self.hash is not None or self.occurred_at is not None or bool(self.hw)


class ShadowState:
    """One generation of the state (or a view of some of its users), as a local SQLite file."""

    def __init__(self, path: Path, generation: int = 0) -> None:
        self.path = path
        self.generation = generation
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A local working copy: a crash discards it (only uploaded generations count), so no journal, no fsync.
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(changes)")}
        if "generation" not in columns:  # a state written before changes knew which commit recorded them
            self.db.execute("ALTER TABLE changes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
        if "entry_seq" not in columns:  # a state written before the journal
            self.db.execute("ALTER TABLE changes ADD COLUMN entry_seq INTEGER")
        self.in_flight_keys: list[str] = []  # the in-flight lists folded into this copy (``StateStore``)
        self.deferred_in_flight: str | None = None  # the committing run's own list, folded after its writes
        # What ``StateStore.checkout`` folded into this copy from the journal (``engine.journal``): the entries still
        # pending (``Entry``), the keys of entries a generation already holds, and the applied event ids' markers.
        self.journal_pending: list[Any] = []
        self.journal_done: list[str] = []
        self.event_keys: list[str] = []
        self.journal_keys: list[str] = []  # every journal key the checkout listed (``journal_fingerprint``)

    def close(self) -> None:
        self.db.close()

    @property
    def journal_fingerprint(self) -> str:
        """Which journal entries this copy folded, as one short digest: a saved plan made on it is still current
        only while both the generation and this are (entries are only ever added between two generations)."""
        return journal_fingerprint(self.journal_keys)

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def all_meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def snapshot_rows(self) -> int | None:
        """Users in the last full snapshot that was accepted (the completeness gate compares against it)."""
        value = self.meta("snapshot_rows")
        return int(value) if value is not None else None

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def groups(self) -> frozenset[str]:
        """The distinct groupIds of the users held (the group gate compares a snapshot's with these)."""
        query = "SELECT DISTINCT json_extract(record, '$.groupId') FROM users"
        return frozenset(str(g) for (g,) in self.db.execute(query) if g is not None)

    def get(self, user_id: str) -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute("SELECT hash, record FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return (row[0], orjson.loads(row[1])) if row else None

    def users(self) -> Iterator[tuple[str, str, str]]:
        """(user_id, hash, record JSON), in user id order."""
        yield from self.db.execute("SELECT user_id, hash, record FROM users ORDER BY user_id")

    def upsert(self, rows: list[tuple[str, str, str]]) -> None:
        now = clock.stamp(clock.now())  # processing time, for people: never an ordering time
        self.db.executemany(
            "INSERT OR REPLACE INTO users (user_id, hash, record, synced_at) VALUES (?, ?, ?, ?)",
            [(uid, h, rec, now) for uid, h, rec in rows],
        )

    def delete(self, user_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM users WHERE user_id = ?", [(uid,) for uid in user_ids])

    def mark_uncertain(self, entries: list[tuple[str, str | None]]) -> None:
        """(user_id, record JSON or None): users a run may have written. Known ones keep their record and their
        last sync time and lose their hash; unknown ones (a create) are added with the record the run meant to
        write and no sync time."""
        self._stage(entries)
        self._uncertain_from_stage()

    def fold_in_flight(self, entries: list[tuple[str, str | None]], *, unsettled_only: bool = False) -> None:
        """Users a running (or killed) run named in flight: uncertain now, and remembered for this copy so that
        ``rebuild`` keeps them uncertain. ``unsettled_only``: but those a write of this copy's commit settled
        (``note_settled``): a commit folds its own run's list after its writes (``StateStore.commit``)."""
        self._stage(entries)
        if unsettled_only:
            self.db.execute("DELETE FROM temp.stage WHERE user_id IN (SELECT user_id FROM temp.settled)")
        self.db.execute("INSERT OR IGNORE INTO temp.in_flight (user_id, record) SELECT user_id, record FROM temp.stage")
        self._uncertain_from_stage()

    def _stage(self, entries: list[tuple[str, str | None]]) -> None:
        """``entries`` into a scratch table, a plain insert each: the upserts then run as one statement in SQLite
        (an in-flight list of 100k users folded in 0.4 s instead of 2.6 s, one upsert per row)."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS stage (user_id TEXT NOT NULL, record TEXT)")
        self.db.execute("DELETE FROM temp.stage")
        self.db.executemany("INSERT INTO temp.stage (user_id, record) VALUES (?, ?)", entries)
        self.db.execute(
            "UPDATE temp.stage SET record = json_object('userId', user_id) WHERE record IS NULL OR record = ''"
        )

    def _uncertain_from_stage(self) -> None:
        self.db.execute(
            "INSERT INTO users (user_id, hash, record, synced_at) SELECT user_id, ?, record, '' FROM temp.stage "
            "WHERE true ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash",
            (UNCERTAIN,),
        )
        self.db.execute("DELETE FROM temp.stage")

    def note_settled(self, user_ids: Iterable[str]) -> None:
        """Users whose state a write of this commit set (recorded, failed or lost a race: ``engine.settle``), which
        their own run's in-flight mark no longer changes."""
        self.db.executemany("INSERT OR IGNORE INTO temp.settled (user_id) VALUES (?)", [(uid,) for uid in user_ids])

    def settle_in_flight(self, user_ids: Iterable[str]) -> None:
        """A commit settled these users' in-flight marks (a write, or its run let go of them): whatever they hold
        now, no running run answers for them any more."""
        self.db.executemany("DELETE FROM temp.in_flight WHERE user_id = ?", [(uid,) for uid in user_ids])

    def rebuild(
        self,
        batches: Iterable[list[tuple[str, str, str]]],
        *,
        replacing: list[str] | None = None,
        read_after: int | None = None,
        keep: Iterable[str] = (),
    ) -> None:
        """The users made what CVC was read to hold: ``batches`` of (user_id, hash, record JSON) replace every user
        (with ``replacing``: only those users, plus the ones in ``batches``; a sample). Users an in-flight mark
        names stay uncertain: their run may write them after CVC was read, and only its own commit settles them.
        Event times (``changes``) are kept: a rebuild is no change, and the tombstones still stop resurrection.
        Those users keep the record the state held (or their run's, if it held none), not CVC's: it is the content of
        their last committed change, which a run that loses a race to it must apply again (``engine.settle``).

        ``read_after``: the generation that was newest when CVC began to be read. A user whose change was committed
        after it (a later generation, or a journal entry not yet in one) may have been written to CVC after its page
        was read: the read says nothing about it, and its row is kept as it is (the next reconcile compares it). So
        are the users in ``keep``: ones the read says nothing about (a listing lacked them and GetUser gave no
        answer)."""
        self.db.execute("DROP TABLE IF EXISTS temp.fresh")
        self.db.execute(
            "CREATE TEMP TABLE fresh AS SELECT c.user_id, u.hash, u.record, u.synced_at FROM changes AS c "
            "LEFT JOIN users AS u USING (user_id) WHERE c.generation > ?",
            (self.generation + 1 if read_after is None else read_after,),
        )
        self.db.executemany(
            "INSERT INTO temp.fresh SELECT user_id, hash, record, synced_at FROM users WHERE user_id = ? "
            "AND user_id NOT IN (SELECT user_id FROM temp.fresh)",
            [(uid,) for uid in keep],
        )
        self.db.execute("DROP TABLE IF EXISTS temp.kept")
        self.db.execute(
            "CREATE TEMP TABLE kept AS SELECT u.user_id, u.record, u.synced_at FROM users AS u "
            "JOIN temp.in_flight AS f USING (user_id)"
        )
        if replacing is None:
            self.db.execute("DELETE FROM users")
        else:
            self.delete(replacing)
        for rows in batches:
            self.upsert(rows)
        self.db.execute("DELETE FROM users WHERE user_id IN (SELECT user_id FROM temp.fresh)")
        self.db.execute(
            "INSERT INTO users (user_id, hash, record, synced_at) SELECT user_id, hash, record, synced_at "
            "FROM temp.fresh WHERE hash IS NOT NULL"
        )
        self.db.execute("DROP TABLE temp.fresh")
        self.db.execute(
            "INSERT INTO users (user_id, hash, record, synced_at) "
            "SELECT f.user_id, ?, COALESCE(k.record, f.record), COALESCE(k.synced_at, '') "
            "FROM temp.in_flight AS f LEFT JOIN temp.kept AS k USING (user_id) "
            "WHERE true ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, record = excluded.record",
            (UNCERTAIN,),
        )
        self.db.execute("DROP TABLE temp.kept")

    def list_settled(self, key: str | None) -> bool:
        """Whether a commit of this state settled the in-flight list ``key`` (``StateStore``)."""
        if key is None:
            return False
        return self.db.execute("SELECT 1 FROM settled_lists WHERE key = ?", (key,)).fetchone() is not None

    def in_flight_count(self) -> int:
        """Users the in-flight marks folded into this copy name (``fold_in_flight``)."""
        return int(self.db.execute("SELECT COUNT(*) FROM temp.in_flight").fetchone()[0])

    def uncertain_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM users WHERE hash = ?", (UNCERTAIN,)).fetchone()[0])

    # -- change events: ordering and idempotency --------------------------------------------------------------

    def _by_chunks(self, query: str, ids: list[str], *args: Any) -> Iterator[tuple[Any, ...]]:
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            yield from self.db.execute(query.format(marks=marks), [*args, *part])

    def last_changes(self, user_ids: list[str]) -> dict[str, str]:
        """The event time (``clock.stamp``) of the last change applied per user (deletes included: a tombstone
        stops resurrection). Compare with ``clock.is_newer``."""
        query = "SELECT user_id, occurred_at FROM changes WHERE user_id IN ({marks})"
        return {uid: at for uid, at in self._by_chunks(query, user_ids)}

    def seen_events(self, event_ids: list[str]) -> set[str]:
        query = "SELECT event_id FROM events WHERE event_id IN ({marks})"
        return {e for (e,) in self._by_chunks(query, event_ids)}

    def record_changes(self, rows: list[tuple[str, str, str]], *, entry_seqs: Mapping[str, int] | None = None) -> None:
        """(user_id, event time, op) of applied changes; never moves a user's time backwards. The table compares
        times as text, so each is stored in the one format (``clock.stamp``) whatever ISO form it came in.
        ``entry_seqs``: the journal entry of each user that recorded its change (``engine.journal``)."""
        stamps: dict[str, str] = {}

        def stamped(at: str) -> str:
            known = stamps.get(at)
            if known is None:
                moment = clock.parse(at)
                if moment is None:
                    raise ValueError(f"not an ISO-8601 time: {at!r}")
                known = stamps[at] = clock.stamp(moment)
            return known

        # Each change also says which generation recorded it (the one this copy will be committed as): a writer
        # that planned on an older generation learns which changes were committed behind its back (``settle``).
        generation = self.generation + 1
        seqs = entry_seqs or {}
        self.db.executemany(
            "INSERT INTO changes (user_id, occurred_at, op, generation, entry_seq) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET occurred_at = excluded.occurred_at, op = excluded.op, "
            "generation = excluded.generation, entry_seq = excluded.entry_seq "
            "WHERE excluded.occurred_at >= changes.occurred_at",
            [(uid, stamped(at), op, generation, seqs.get(uid)) for uid, at, op in rows],
        )

    def changes_since(self, user_ids: list[str], generation: int) -> dict[str, tuple[str, str]]:
        """Of ``user_ids``, those whose last change was committed after ``generation``: (event time, op)."""
        query = "SELECT user_id, occurred_at, op FROM changes WHERE generation > ? AND user_id IN ({marks})"
        return {uid: (at, op) for uid, at, op in self._by_chunks(query, user_ids, generation)}

    def change_stamps(self, user_ids: list[str]) -> dict[str, tuple[int, int | None]]:
        """Who committed each user's last change: (generation, journal entry seq or None)."""
        query = "SELECT user_id, generation, entry_seq FROM changes WHERE user_id IN ({marks})"
        return {uid: (gen, seq) for uid, gen, seq in self._by_chunks(query, user_ids)}

    def record_events(self, event_ids: list[str], *, now: str, forget_before: str) -> None:
        """Applied event ids, kept ``EVENT_MEMORY_DAYS`` (a redelivery later than that is a new event)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO events (event_id, applied_at) VALUES (?, ?)", [(e, now) for e in event_ids]
        )
        self.db.execute("DELETE FROM events WHERE applied_at < ?", (forget_before,))

    # -- one user at a time: the change path's views and the journal's checkpoints ------------------------------

    def rows(self, user_ids: list[str]) -> dict[str, UserRow]:
        """The ``UserRow`` of each user the state knows anything of."""
        found: dict[str, dict[str, Any]] = {}
        query = "SELECT user_id, hash, record, synced_at FROM users WHERE user_id IN ({marks})"
        for uid, digest, record, synced in self._by_chunks(query, user_ids):
            found.setdefault(uid, {}).update(hash=digest, record=record, synced_at=synced)
        query = "SELECT user_id, occurred_at, op, generation, entry_seq FROM changes WHERE user_id IN ({marks})"
        for uid, at, op, gen, seq in self._by_chunks(query, user_ids):
            found.setdefault(uid, {}).update(occurred_at=at, op=op, generation=gen, entry_seq=seq)
        for uid, seq in self._by_chunks("SELECT user_id, seq FROM journal_hw WHERE user_id IN ({marks})", user_ids):
            found.setdefault(uid, {})["hw"] = seq
        folded: dict[str, list[tuple[int, str]]] = {}
        query = "SELECT user_id, seq, entry_id FROM journal_folded WHERE user_id IN ({marks}) ORDER BY seq"
        for uid, seq, entry in self._by_chunks(query, user_ids):
            folded.setdefault(uid, []).append((seq, entry))
        for uid in self._by_chunks("SELECT user_id FROM temp.in_flight WHERE user_id IN ({marks})", user_ids):
            found.setdefault(uid[0], {})["in_flight"] = True
        return {
            uid: UserRow(uid, **fields, folded=tuple(folded.get(uid, ()))) for uid, fields in found.items() if fields
        }

    def put_rows(self, rows: Iterable[UserRow]) -> None:
        """Load users read one by one (a view): their rows replace whatever this copy held of them."""
        for row in rows:
            uid = row.user_id
            self.db.execute("DELETE FROM users WHERE user_id = ?", (uid,))
            self.db.execute("DELETE FROM changes WHERE user_id = ?", (uid,))
            if row.hash is not None:
                self.db.execute(
                    "INSERT INTO users (user_id, hash, record, synced_at) VALUES (?, ?, ?, ?)",
                    (uid, row.hash, row.record or orjson.dumps({"userId": uid}).decode(), row.synced_at or ""),
                )
            if row.occurred_at is not None:
                self.db.execute(
                    "INSERT INTO changes (user_id, occurred_at, op, generation, entry_seq) VALUES (?, ?, ?, ?, ?)",
                    (uid, row.occurred_at, row.op or "upsert", row.generation or 0, row.entry_seq),
                )
            if row.hw:
                self.db.execute("INSERT OR REPLACE INTO journal_hw (user_id, seq) VALUES (?, ?)", (uid, row.hw))
            if row.in_flight:
                self.db.execute(
                    "INSERT OR IGNORE INTO temp.in_flight (user_id, record) VALUES (?, ?)",
                    (uid, row.record or orjson.dumps({"userId": uid}).decode()),
                )

    def put_events(self, events: Iterable[tuple[str, str]]) -> None:
        """(event id, applied at) read one by one (a view)."""
        self.db.executemany("INSERT OR IGNORE INTO events (event_id, applied_at) VALUES (?, ?)", list(events))
