"""The shadow state: what cvc-sync last synced, per user a content hash and the record, in SQLite.

CVC has no cheap way to list a large directory, so cvc-sync remembers what it applied. Only successful calls
change the state, and the state is committed after apply. Between the first write of a run and its commit, CVC may
hold what the state does not know yet (a run killed mid-way, a call whose answer was lost): so before its first
write a run puts an *in-flight* list of the users it is about to touch under ``in-flight/``, and every checkout
folds those lists in as *uncertain* users (hash ``''``). An uncertain user matches no content, so the next plan
re-sends or re-deletes it; the state claims content only where CVC is known to hold it, and nothing CVC may hold
is forgotten. A commit removes the lists it folded in (their users stay uncertain until a write settles them),
except a commit that settles no run's writes (``settles_in_flight=False``: reconcile rebuilding the users from
CVC's directory, ``ShadowState.rebuild``), which keeps the lists and their users uncertain for the running run.

Two times are kept apart: ``users.synced_at`` is when cvc-sync *processed* a user (for people), ``changes.occurred_at``
is the *event time* of the user's last applied change, in ``clock.stamp`` format, and only event times order
changes (``clock``: event time, ties by arrival). A late, older change applied after a newer one failed must not
look newer because it was committed later.

In the object store a state is a series of immutable generations, ``gen-00000007.sqlite.gz``, each written
create-only: two runs committing at once cannot both win the same generation; the loser re-reads the newest one,
re-applies its own changes on top, and tries the next number. ``manifest.json`` points at the newest generation
for people and tools (the heartbeat reads it); readers of the state trust the generation objects themselves. The
manifest never goes backwards: see ``StateStore._publish_manifest``.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync import clock
from cvcsync.errors import CvcSyncError

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL,
    synced_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (user_id TEXT PRIMARY KEY, occurred_at TEXT NOT NULL, op TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, applied_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled_lists (key TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS in_flight (user_id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
"""
UNCERTAIN = ""  # the hash of a user a run may have written without recording it: it matches no content
IN_FLIGHT_DIR = "in-flight/"
EVENT_MEMORY_DAYS = 7
MAX_COMMIT_ATTEMPTS = 8
KEEP_GENERATIONS = 3
SETTLED_LISTS_KEPT = 1000  # generations for which the state remembers which in-flight lists they settled


class StateConflict(CvcSyncError):
    """The state moved on while a saved plan waited: applying it now could undo someone else's run."""

    code = "StateChanged"


class ShadowState:
    """One generation of the state, as a local SQLite file."""

    def __init__(self, path: Path, generation: int = 0) -> None:
        self.path = path
        self.generation = generation
        self.db = sqlite3.connect(path, isolation_level=None)
        # A local working copy: a crash discards it (only uploaded generations count), so no journal, no fsync.
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(changes)")}
        if "generation" not in columns:  # a state written before changes knew which commit recorded them
            self.db.execute("ALTER TABLE changes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
        self.in_flight_keys: list[str] = []  # the in-flight lists folded into this copy (see the module doc)

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

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
        self.db.executemany(
            "INSERT INTO users (user_id, hash, record, synced_at) VALUES (?, ?, ?, '') "
            "ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash",
            [(uid, UNCERTAIN, record or orjson.dumps({"userId": uid}).decode()) for uid, record in entries],
        )

    def fold_in_flight(self, entries: list[tuple[str, str | None]]) -> None:
        """Users a running (or killed) run's in-flight list names: uncertain now, and remembered for this copy so
        that ``rebuild`` keeps them uncertain."""
        rows = [(uid, record or orjson.dumps({"userId": uid}).decode()) for uid, record in entries]
        self.db.executemany("INSERT OR IGNORE INTO temp.in_flight (user_id, record) VALUES (?, ?)", rows)
        self.mark_uncertain(entries)

    def rebuild(
        self,
        batches: Iterable[list[tuple[str, str, str]]],
        *,
        replacing: list[str] | None = None,
        read_after: int | None = None,
        keep: Iterable[str] = (),
    ) -> None:
        """The users made what CVC was read to hold: ``batches`` of (user_id, hash, record JSON) replace every user
        (with ``replacing``: only those users, plus the ones in ``batches``; a sample). Users an in-flight list
        names stay uncertain: their run may write them after CVC was read, and only its commit settles them.
        Event times (``changes``) are kept: a rebuild is no change, and the tombstones still stop resurrection.
        Those users keep the record the state held (or their run's, if it held none), not CVC's: it is the content of
        their last committed change, which a run that loses a race to it must apply again (``engine.settle``).

        ``read_after``: the generation that was newest when CVC began to be read. A user whose change was committed
        after it may have been written to CVC after its page was read: the read says nothing about it, and its row
        is kept as it is (the next reconcile compares it). So are the users in ``keep``: ones the read says nothing
        about (a listing lacked them and GetUser gave no answer)."""
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

    def in_flight_count(self) -> int:
        """Users the in-flight lists folded into this copy name (``fold_in_flight``)."""
        return int(self.db.execute("SELECT COUNT(*) FROM temp.in_flight").fetchone()[0])

    def uncertain_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM users WHERE hash = ?", (UNCERTAIN,)).fetchone()[0])

    # -- change events: ordering and idempotency --------------------------------------------------------------

    def last_changes(self, user_ids: list[str]) -> dict[str, str]:
        """The event time (``clock.stamp``) of the last change applied per user (deletes included: a tombstone
        stops resurrection). Compare with ``clock.is_newer``."""
        found: dict[str, str] = {}
        for start in range(0, len(user_ids), 500):
            part = user_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT user_id, occurred_at FROM changes WHERE user_id IN ({marks})"  # noqa: S608 - marks only  # nosec B608
            found.update(dict(self.db.execute(query, part).fetchall()))
        return found

    def seen_events(self, event_ids: list[str]) -> set[str]:
        seen: set[str] = set()
        for start in range(0, len(event_ids), 500):
            part = event_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT event_id FROM events WHERE event_id IN ({marks})"  # noqa: S608 - marks only  # nosec B608
            seen.update(e for (e,) in self.db.execute(query, part))
        return seen

    def record_changes(self, rows: list[tuple[str, str, str]]) -> None:
        """(user_id, event time, op) of applied changes; never moves a user's time backwards. The table compares
        times as text, so each is stored in the one format (``clock.stamp``) whatever ISO form it came in."""
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
        self.db.executemany(
            "INSERT INTO changes (user_id, occurred_at, op, generation) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) "
            "DO UPDATE SET occurred_at = excluded.occurred_at, op = excluded.op, generation = excluded.generation "
            "WHERE excluded.occurred_at >= changes.occurred_at",
            [(uid, stamped(at), op, generation) for uid, at, op in rows],
        )

    def changes_since(self, user_ids: list[str], generation: int) -> dict[str, tuple[str, str]]:
        """Of ``user_ids``, those whose last change was committed after ``generation``: (event time, op)."""
        found: dict[str, tuple[str, str]] = {}
        for start in range(0, len(user_ids), 500):
            part = user_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT user_id, occurred_at, op FROM changes WHERE generation > ? AND user_id IN ({marks})"  # noqa: S608 - marks only  # nosec B608
            found.update({uid: (at, op) for uid, at, op in self.db.execute(query, [generation, *part])})
        return found

    def record_events(self, event_ids: list[str], *, now: str, forget_before: str) -> None:
        """Applied event ids, kept ``EVENT_MEMORY_DAYS`` (a redelivery later than that is a new event)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO events (event_id, applied_at) VALUES (?, ?)", [(e, now) for e in event_ids]
        )
        self.db.execute("DELETE FROM events WHERE applied_at < ?", (forget_before,))


Changes = Callable[[ShadowState], None]


class StateStore:
    """Generations of the shadow state under ``prefix`` in a bucket of an object store."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def _key(self, generation: int) -> str:
        return f"{self.prefix}gen-{generation:08d}.sqlite.gz"

    def in_flight_key(self, run_id: str) -> str:
        return f"{self.prefix}{IN_FLIGHT_DIR}{run_id}.ndjson.gz"

    def mark_in_flight(self, run_id: str, entries: Iterable[tuple[str, str | None]]) -> int:
        """Write the run's in-flight list, (user_id, record JSON or None) per user, before its first CVC write."""
        count = 0
        with tempfile.TemporaryDirectory(prefix="cvcsync-inflight-") as tmp:
            path = Path(tmp) / "in-flight.ndjson.gz"
            with gzip.open(path, "wb", compresslevel=1) as target:
                for entry in entries:
                    target.write(orjson.dumps(entry) + b"\n")
                    count += 1
            if count:
                self.store.put_file(self.bucket, self.in_flight_key(run_id), path)
        return count

    def _fold_in_flight(self, state: ShadowState, workdir: Path) -> None:
        keys = sorted(self.store.list_keys(self.bucket, self.prefix + IN_FLIGHT_DIR))
        packed = workdir / "in-flight.ndjson.gz"
        settled = {k for (k,) in state.db.execute("SELECT key FROM settled_lists")}
        for key in keys:
            if key in settled:
                continue  # already folded into this generation by a commit that is removing it: its marks are in
            if not self.store.download_file(self.bucket, key, packed):
                continue  # a commit folded it in and removed it meanwhile
            batch: list[tuple[str, str | None]] = []
            with gzip.open(packed, "rb") as lines:
                for line in lines:
                    user_id, record = orjson.loads(line)
                    batch.append((user_id, record))
                    if len(batch) >= 5000:
                        state.fold_in_flight(batch)
                        batch = []
            state.fold_in_flight(batch)
            packed.unlink()
            state.in_flight_keys.append(key)

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}manifest.json"

    def latest_generation(self) -> int:
        """The newest generation that exists (0: none yet): the manifest's, then probe forward past it."""
        raw = self.store.get_bytes(self.bucket, self.manifest_key)
        generation = int(orjson.loads(raw).get("generation", 0)) if raw else 0
        if generation and self.store.head(self.bucket, self._key(generation)) is None:
            generation = 0  # a manifest without its generation: trust the objects
        while self.store.head(self.bucket, self._key(generation + 1)) is not None:
            generation += 1
        if generation == 0:
            keys = [k for k in self.store.list_keys(self.bucket, f"{self.prefix}gen-") if k.endswith(".sqlite.gz")]
            if keys:
                generation = max(int(k.rsplit("gen-", 1)[1].split(".", 1)[0]) for k in keys)
        return generation

    def checkout(self, workdir: Path, generation: int | None = None) -> ShadowState:
        """A local copy of a generation (the newest by default), or an empty state when there is none."""
        generation = self.latest_generation() if generation is None else generation
        path = workdir / f"state-{generation:08d}.sqlite"
        if path.exists():
            path.unlink()
        if generation:
            packed = workdir / f"state-{generation:08d}.sqlite.gz"
            if not self.store.download_file(self.bucket, self._key(generation), packed):
                raise CvcSyncError(f"state generation {generation} vanished while reading it", code="StateMissing")
            with gzip.open(packed, "rb") as source, path.open("wb") as target:
                shutil.copyfileobj(source, target, 1024 * 1024)
            packed.unlink()
        state = ShadowState(path, generation)
        try:
            self._fold_in_flight(state, workdir)
        except BaseException:
            state.close()
            raise
        return state

    def commit(
        self, changes: Changes, *, run_id: str, snapshot_rows: int | None = None, settles_in_flight: bool = True
    ) -> int:
        """Apply ``changes`` on top of the newest generation and write it as the next one; return its number.

        ``settles_in_flight=False`` keeps the in-flight lists this commit folded in: for a commit that records no
        run's writes (a rebuild from CVC's directory), so the runs still going keep their marks until they commit."""
        with tempfile.TemporaryDirectory(prefix="cvcsync-state-") as tmp:
            workdir = Path(tmp)
            for _ in range(MAX_COMMIT_ATTEMPTS):
                state = self.checkout(workdir)
                try:
                    state.db.execute("BEGIN")
                    changes(state)
                    if settles_in_flight:
                        # The lists this commit folds in are done once it lands, even before their objects are removed:
                        # a checkout in between must not fold them again (their users would stay uncertain for ever).
                        generation_next = state.generation + 1
                        state.db.executemany(
                            "INSERT OR REPLACE INTO settled_lists (key, generation) VALUES (?, ?)",
                            [(key, generation_next) for key in state.in_flight_keys],
                        )
                        state.db.execute(
                            "DELETE FROM settled_lists WHERE generation < ?", (generation_next - SETTLED_LISTS_KEPT,)
                        )
                    if snapshot_rows is not None:
                        state.set_meta("snapshot_rows", str(snapshot_rows))
                    state.set_meta("run_id", run_id)
                    state.set_meta("committed_at", clock.report_time())
                    state.db.execute("COMMIT")
                    users, uncertain = state.count(), state.uncertain_count()
                finally:
                    state.close()
                packed = workdir / "next.sqlite.gz"
                with state.path.open("rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
                    shutil.copyfileobj(source, target, 1024 * 1024)
                generation = state.generation + 1
                if self.store.put_file(self.bucket, self._key(generation), packed, if_absent=True):
                    self._publish_manifest(generation, self._manifest(generation, users, uncertain, run_id))
                    if settles_in_flight:
                        for key in state.in_flight_keys:  # folded into this generation: their marks live on there
                            self.store.delete(self.bucket, key)
                    self._prune(generation)
                    log.info("state committed", extra={"generation": generation, "users": users, "runId": run_id})
                    return generation
                log.warning("state generation taken by a concurrent run; retrying", extra={"generation": generation})
        raise CvcSyncError("could not commit the shadow state: too many concurrent runs", code="StateContention")

    def _manifest_copy_key(self, generation: int) -> str:
        return f"{self.prefix}gen-{generation:08d}.manifest.json"

    def _manifest(self, generation: int, users: int, uncertain: int, run_id: str) -> bytes:
        return orjson.dumps(
            {
                "generation": generation,
                "key": self._key(generation),
                "users": users - uncertain,  # users whose content the state knows CVC holds
                "uncertain": uncertain,  # users CVC may or may not hold (an interrupted or failed write)
                "runId": run_id,
                "committedAt": clock.report_time(),
            }
        )

    def _published_generation(self) -> int:
        raw = self.store.get_bytes(self.bucket, self.manifest_key)
        try:
            manifest = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return 0
        generation = manifest.get("generation") if isinstance(manifest, dict) else None
        return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0

    def _publish_manifest(self, generation: int, body: bytes) -> None:
        """Point ``manifest.json`` at ``generation`` unless a newer one is published: it never goes backwards.

        The object store offers create-only writes but no compare-and-swap on an existing key, so: each generation's
        manifest is first kept beside it, create-only (``gen-N.manifest.json``); the shared one is re-read and only
        written when older; and after writing, a newer generation that committed meanwhile (whose own write ours
        may just have overwritten) is published again from its copy. A committer writes its copy before it re-reads,
        so whichever of two racing committers writes last sees the other's copy and leaves the newer one. A reader
        may see an older manifest for the moment between two of these writes, never after they settle."""
        self.store.put_bytes(
            self.bucket, self._manifest_copy_key(generation), body, content_type="application/json", if_absent=True
        )
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if self._published_generation() >= generation:
                return  # a newer commit published itself: its committer answers for it
            self.store.put_bytes(self.bucket, self.manifest_key, body, content_type="application/json")
            newer = self._newest_copy_after(generation)
            if newer is None:
                return
            generation, body = newer
        log.warning("the state manifest kept moving while it was published", extra={"generation": generation})

    def _newest_copy_after(self, generation: int) -> tuple[int, bytes] | None:
        """The newest generation after ``generation`` whose manifest copy exists (a generation without one is
        still being committed, and its committer publishes it), with that copy."""
        newest = generation
        while self.store.head(self.bucket, self._key(newest + 1)) is not None:
            newest += 1
        for candidate in range(newest, generation, -1):
            body = self.store.get_bytes(self.bucket, self._manifest_copy_key(candidate))
            if body is not None:
                return candidate, body
        return None

    def _prune(self, newest: int) -> None:
        for generation in range(max(1, newest - KEEP_GENERATIONS - 5), newest - KEEP_GENERATIONS + 1):
            self.store.delete(self.bucket, self._key(generation))
            self.store.delete(self.bucket, self._manifest_copy_key(generation))
