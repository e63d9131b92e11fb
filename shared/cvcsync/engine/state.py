"""The shadow state in the object store: immutable generations for the batch path, a journal for the change path.

CVC has no cheap way to list a large directory, so cvc-sync remembers what it applied (``engine.shadow``: per user
a content hash and the record, in SQLite). Only successful calls change the state, and the state is committed after
apply. Two paths commit to it, and both see one state:

* **The batch path** (an export, full or delta; reconcile) diffs a whole snapshot: ``checkout`` downloads the newest
  *generation*, ``gen-00000007.sqlite.gz``, and ``commit`` writes the next one, create-only: two commits at once
  cannot both win a generation; the loser checks out the newest one, applies its changes again on top, and tries
  the next number. ``manifest.json`` points at the newest generation for people and tools (the heartbeat reads it);
  readers of the state trust the generation objects themselves, and the manifest never goes backwards (see
  ``_publish_manifest``).
* **The change path** (queue, HTTP, SCIM, redrive: ``engine.views``) never downloads or uploads a generation: it
  reads each user it changes from the newest generation's index (``engine.generation``) and the user's entries in
  the *journal* (``engine.journal``), and commits one entry per user, create-only. One change costs a few requests
  of a few KB whatever the directory's size, and writers of different users never meet.

Every ``checkout`` folds the journal's entries in (replayed by the one rule, ``engine.settle``), so the batch path
diffs against everything the change path committed; every ``commit`` folds them into the generation it writes and
then deletes exactly the entries it folded (the generation records which, so a reader that meets one before it is
gone skips it). A journal that grows past ``COMPACT_PENDING`` entries is folded by the next checkout on its own
(``compact``), so a state only the change path writes still stays small.

Between the first write of a run and its commit, CVC may hold what the state does not know yet (a run killed
mid-way, a call whose answer was lost): so before its first write a batch run puts an *in-flight* list of the users
it is about to touch under ``in-flight/`` (a change run writes an ``intent`` entry per user instead), and every
checkout folds those in as *uncertain* users (hash ``''``). An uncertain user matches no content, so the next plan
re-sends or re-deletes it; the state claims content only where CVC is known to hold it, and nothing CVC may hold is
forgotten. A commit removes the lists it folded in (their users stay uncertain until a write settles them), except
a commit that settles no run's writes (``settles_in_flight=False``: reconcile rebuilding the users from CVC's
directory, ``ShadowState.rebuild``; a compaction), which keeps the lists (and the trailing ``intent`` entries) and
their users uncertain for the running run.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
import weakref
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync import clock
from cvcsync.engine import generation as generation_file
from cvcsync.engine.generation_folds import late_races, late_races_after_reference, record_folds
from cvcsync.engine.in_flight import IN_FLIGHT_CHUNK, InFlightLists
from cvcsync.engine.journal import Journal, replay
from cvcsync.engine.manifest import Manifests
from cvcsync.engine.shadow import EVENT_MEMORY_DAYS, UNCERTAIN, ShadowState, UserRow, journal_fingerprint
from cvcsync.engine.state_objects import IN_FLIGHT_DIR, MAX_COMMIT_ATTEMPTS
from cvcsync.errors import CvcSyncError

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore
    from cvcsync.engine.settle import Repair

__all__ = [
    "EVENT_MEMORY_DAYS",
    "IN_FLIGHT_CHUNK",
    "IN_FLIGHT_DIR",
    "UNCERTAIN",
    "Changes",
    "ShadowState",
    "StateConflict",
    "StateStore",
    "UserRow",
]

log = logging.getLogger(__name__)

KEEP_GENERATIONS = 3
SETTLED_LISTS_KEPT = 1000  # generations for which the state remembers which in-flight lists they settled
COMPACT_PENDING = 2000  # journal entries a checkout folds before it writes them into a generation of their own
COMPACT_RUN_PREFIX = "compact-"


class StateConflict(CvcSyncError):
    """The state moved on while a saved plan waited: applying it now could undo someone else's run."""

    code = "StateChanged"


Changes = Callable[[ShadowState], None]

# The newest generation each store was last seen at, per prefix: a change run probes forward from it (one HEAD)
# instead of reading the manifest first. Only a hint: every reader confirms it against the objects.
_LATEST: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], int]] = weakref.WeakKeyDictionary()


class StateStore(InFlightLists, Manifests):
    """Generations of the shadow state and its journal under ``prefix`` in a bucket of an object store (its
    in-flight lists: ``engine.in_flight``; its manifest: ``engine.manifest``)."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        super().__init__(store, bucket, prefix)
        self.journal = Journal(store, bucket, self.prefix)
        self.compact_pending = COMPACT_PENDING

    def reader(self, generation: int) -> generation_file.GenerationReader:
        return generation_file.GenerationReader(self.store, self.bucket, self._key(generation))

    def _fold_in_flight(self, state: ShadowState, workdir: Path, defer: str | None = None) -> None:
        """Fold every in-flight list in, but ``defer`` (the committing run's own: ``_fold_own_list``)."""
        settled = {k for (k,) in state.db.execute("SELECT key FROM settled_lists")}
        for key in self.in_flight_lists():
            if key in settled:
                continue  # already folded into this generation by a commit that is removing it: its marks are in
            if key == defer:
                state.deferred_in_flight = key
                continue
            chunks = self.in_flight_chunks(key, workdir)
            if chunks is None:
                continue  # a commit folded it in and removed it meanwhile
            for chunk in chunks:
                state.fold_in_flight(chunk)
            state.in_flight_keys.append(key)

    def _fold_own_list(self, state: ShadowState, workdir: Path) -> None:
        """The committing run's own in-flight list, after its writes: only its users no write of this commit
        settled (a row CVC refused, a write handed back) stay uncertain. Folded before the writes, as every other
        list, it made each of a first sync's million users uncertain only for its write to settle it again: 5 s of
        a 1M-user commit."""
        key = state.deferred_in_flight
        chunks = self.in_flight_chunks(key, workdir) if key is not None else None
        if key is None or chunks is None:
            return  # a concurrent commit folded it in and removed it: its generation holds the marks
        for chunk in chunks:
            state.fold_in_flight(chunk, unsettled_only=True)
        state.in_flight_keys.append(key)

    # -- the journal, folded into a checkout ---------------------------------------------------------------------

    def _fold_journal(self, state: ShadowState) -> int:
        """Replay every pending journal entry into ``state`` (in each user's order); note in ``state`` which keys
        it folded and which it found already folded (or dead). Returns how many it replayed."""
        listed = list(self.journal.list_all())
        state.journal_keys = [key for key, _ in listed]
        entries = self.journal.read(state.journal_keys)
        marks = {uid: row.hw for uid, row in state.rows(sorted({e.user_id for e in entries})).items()}
        pending = [e for e in entries if e.seq > marks.get(e.user_id, 0)]
        state.journal_pending = pending
        state.journal_done = [
            self.journal.entry_key(e.user_id, e.seq) for e in entries if e.seq <= marks.get(e.user_id, 0)
        ]
        replay(state, pending)  # a checkout records; the writers dead-letter their own repairs
        return len(pending)

    def journal_fingerprint(self) -> str:
        """The journal's fingerprint now (one listing): equal to a checkout's while no change was committed since."""
        return journal_fingerprint(key for key, _ in self.journal.list_all())

    def _fold_events(self, state: ShadowState) -> None:
        markers = self.journal.read_events(self.journal.list_events())
        state.put_events([(event_id, applied_at) for _, event_id, applied_at in markers])
        state.event_keys = [key for key, _, _ in markers]

    def fold_manifest(self, state: ShadowState, manifest: dict[str, Any] | None = None) -> None:
        """What the journal's commits left in the manifest of this very generation (``manifest``: as read a moment
        ago; None: read it now): their run and time (the newest commit, for the heartbeat and for a scheduled
        task's ``carry_last_sync``) and the meta they set (``engine.view_commit``)."""
        manifest = self.read_manifest() if manifest is None else manifest
        if manifest.get("generation", 0) != state.generation or not isinstance(manifest.get("journal"), dict):
            return
        touched = manifest["journal"]  # written after this generation: a run read it before it committed
        if touched.get("runId") and touched.get("committedAt"):
            state.set_meta("run_id", str(touched["runId"]))
            state.set_meta("committed_at", str(touched["committedAt"]))
        for key, value in (touched.get("meta") or {}).items():
            state.set_meta(str(key), str(value))

    # -- generations ---------------------------------------------------------------------------------------------

    def latest_generation(self, *, verify: bool = True) -> int:
        """The newest generation that exists (0: none yet): the manifest's, then probe forward past it.
        ``verify=False``: the manifest's, unchecked, when it names one (a change run's first read: the HEAD after
        it proves the generation it read the newest, and a generation that is not there is asked for again)."""
        raw = self.store.get_bytes(self.bucket, self.manifest_key)
        generation = int(orjson.loads(raw).get("generation", 0)) if raw else 0
        if generation and not verify:
            self.remember_generation(generation)
            return generation
        if generation and self.store.head(self.bucket, self._key(generation)) is None:
            generation = 0  # a manifest without its generation: trust the objects
        while self.store.head(self.bucket, self._key(generation + 1)) is not None:
            generation += 1
        if generation == 0:
            keys = [k for k in self.store.list_keys(self.bucket, f"{self.prefix}gen-") if k.endswith(".sqlite.gz")]
            if keys:
                generation = max(int(k.rsplit("gen-", 1)[1].split(".", 1)[0]) for k in keys)
        self.remember_generation(generation)
        return generation

    def remember_generation(self, generation: int) -> None:
        _LATEST.setdefault(self.store, {})[(self.bucket, self.prefix)] = generation

    def newest_generation(self, *, fresh: bool = False, probe: bool = True) -> int:
        """The newest generation, cheaply: from the last one this process saw, probing forward (one HEAD when
        nothing moved; ``probe=False``: none, the caller proves it later); from the manifest when it saw none
        (checked, unless ``probe=False``), or with ``fresh`` (what it saw is gone: pruned, or the state was reset)."""
        known = _LATEST.get(self.store, {}).get((self.bucket, self.prefix))
        if known is None or fresh:
            return self.latest_generation(verify=probe or fresh)
        if not probe:
            return known
        generation = known
        while self.store.head(self.bucket, self._key(generation + 1)) is not None:
            generation += 1
        self.remember_generation(generation)
        return generation

    def checkout(
        self, workdir: Path, generation: int | None = None, *, compact: bool = True, defer: str | None = None
    ) -> ShadowState:
        """A local copy of a generation (the newest by default), or an empty state when there is none, with the
        journal, the in-flight lists and the applied event ids folded in. A journal past ``compact_pending`` entries
        is first written into a generation of its own (``compact``), unless ``compact=False``. ``defer``: an
        in-flight list left for the caller to fold (``commit``: its own run's)."""
        newest = generation is None
        for _ in range(MAX_COMMIT_ATTEMPTS):
            state = self._checkout(workdir, self.latest_generation() if newest else generation or 0, newest, defer)
            # A newer generation published while the journal was read may have deleted entries it folded: the
            # copy would lack them. Check out that one instead.
            if not newest or self.store.head(self.bucket, self._key(state.generation + 1)) is None:
                break
            state.close()
        pending = len(state.journal_pending)
        if newest and compact and pending >= self.compact_pending:
            state.close()
            log.info("the state journal is folded into a generation", extra={"entries": pending})
            self.compact()
            return self.checkout(workdir, compact=False)
        return state

    def _checkout(self, workdir: Path, generation: int, newest: bool, defer: str | None = None) -> ShadowState:
        path = workdir / f"state-{generation:08d}.sqlite"
        if path.exists():
            path.unlink()
        header: dict[str, Any] | None = None
        if generation:
            key = self._key(generation)
            try:
                with self.store.open(self.bucket, key) as stream:
                    header = generation_file.extract(stream, path)
                if header is not None and header.get("base"):  # a reference: the base's snapshot, its own meta
                    key = str(header["base"])
                    with self.store.open(self.bucket, key) as stream:
                        generation_file.extract(stream, path)
            except CvcSyncError as exc:
                if exc.code != "NoSuchKey":
                    raise
                raise CvcSyncError(
                    f"state generation {generation} vanished while reading it", code="StateMissing"
                ) from exc
        state = ShadowState(path, generation)
        if header is not None and header.get("base"):
            state.db.execute("DELETE FROM meta")
            state.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(header["meta"].items()))
        try:
            # One transaction: SQLite outside one commits each row of a fold on its own (an in-flight list of 100k
            # users took 2.6 s, 0.13 s inside one).
            state.db.execute("BEGIN")
            self._fold_journal(state)
            self._fold_in_flight(state, workdir, defer)
            self._fold_events(state)
            if newest:
                self.fold_manifest(state)
            state.db.execute("COMMIT")
        except BaseException:
            state.close()
            raise
        return state

    def compact_if_long(self) -> int | None:
        """Compact when the journal holds more than ``compact_pending`` entries (one LIST, stopped there): the
        scheduled redrive's step after its pass, so that a large directory's compaction runs in no request's time
        (``engine.view_commit`` compacts inline only while a compaction is cheap). The new generation, or None."""
        if self.journal.list_pending(self.compact_pending) is not None:
            return None
        log.info("the state journal is long: folding it into a generation")
        return self.compact()

    def compact(self) -> int:
        """Fold the journal (and the applied event ids) into a new generation that records no run's writes: the
        last commit's run and time stay the newest ones (the heartbeat's "last sync" is not a compaction)."""
        return self.commit(
            lambda state: None, run_id=f"{COMPACT_RUN_PREFIX}{uuid.uuid4()}", settles_in_flight=False, carry_run=True
        )

    def commit(
        self,
        changes: Changes,
        *,
        run_id: str,
        snapshot_rows: int | None = None,
        settles_in_flight: bool = True,
        late_repairs: list[Repair] | None = None,
        carry_run: bool = False,
        writes_settled: bool = False,
    ) -> int:
        """Apply ``changes`` on top of the newest generation and write it as the next one; return its number.

        ``settles_in_flight=False`` keeps the in-flight lists this commit folded in, and each user's trailing
        ``intent`` entries: for a commit that records no run's writes (a rebuild from CVC's directory, a
        compaction), so the runs still going keep their marks until they commit. ``late_repairs``: where the races
        this commit's writes ran with change-path entries committed too late for it to see are added (only the
        generation being written can tell them; ``engine.generation_folds``). ``carry_run``: keep the last commit's
        run and time (a compaction). ``writes_settled``: ``changes`` records the run's writes through
        ``settle_writes``, which notes the users it settles; the run's own in-flight list is then folded after them,
        for the users they left alone (``_fold_own_list``), instead of before."""
        with tempfile.TemporaryDirectory(prefix="cvcsync-state-") as tmp:
            workdir = Path(tmp)
            for _ in range(MAX_COMMIT_ATTEMPTS):
                own = self.in_flight_key(run_id) if settles_in_flight and writes_settled else None
                state = self.checkout(workdir, compact=False, defer=own)
                try:
                    state.db.execute("BEGIN")
                    changes(state)
                    self._fold_own_list(state, workdir)
                    generation_next = state.generation + 1
                    if settles_in_flight:
                        # The lists this commit folds in are done once it lands, even before their objects are removed:
                        # a checkout in between must not fold them again (their users would stay uncertain for ever).
                        state.db.executemany(
                            "INSERT OR REPLACE INTO settled_lists (key, generation) VALUES (?, ?)",
                            [(key, generation_next) for key in state.in_flight_keys],
                        )
                        state.db.execute(
                            "DELETE FROM settled_lists WHERE generation < ?", (generation_next - SETTLED_LISTS_KEPT,)
                        )
                    folded = record_folds(state, self.journal, settles_in_flight)
                    now = clock.now()
                    state.db.execute(
                        "DELETE FROM events WHERE applied_at < ?",
                        (clock.stamp(now - timedelta(days=EVENT_MEMORY_DAYS)),),
                    )
                    if snapshot_rows is not None:
                        state.set_meta("snapshot_rows", str(snapshot_rows))
                    if not carry_run or state.meta("run_id") is None:
                        state.set_meta("run_id", run_id)
                        state.set_meta("committed_at", clock.report_time(now))
                    state.db.execute("COMMIT")
                    users, uncertain = state.count(), state.uncertain_count()
                    committed_run = state.meta("run_id") or run_id
                    committed_at = state.meta("committed_at") or clock.report_time(now)
                    packed = workdir / "next.gen"
                    generation_file.write(state, packed)
                finally:
                    state.close()
                if self.store.put_file(self.bucket, self._key(generation_next), packed, if_absent=True):
                    self.remember_generation(generation_next)
                    body = self._manifest(generation_next, users, uncertain, committed_run, committed_at)
                    self._publish_manifest(generation_next, body)
                    if late_repairs is not None:
                        late_repairs.extend(late_races(self.journal, state.path, generation_next, folded))
                    self.journal.delete(folded + state.journal_done + state.event_keys)
                    if settles_in_flight:
                        for key in state.in_flight_keys:  # folded into this generation: their marks live on there
                            self.store.delete(self.bucket, key)
                    self._prune(generation_next)
                    log.info("state committed", extra={"generation": generation_next, "users": users, "runId": run_id})
                    return generation_next
                log.warning(
                    "state generation taken by a concurrent run; retrying", extra={"generation": generation_next}
                )
        raise CvcSyncError("could not commit the shadow state: too many concurrent runs", code="StateContention")

    def commit_unchanged(
        self,
        changes: Changes,
        *,
        run_id: str,
        snapshot_rows: int | None,
        planned_on: int,
        journal: str,
        late_repairs: list[Repair],
    ) -> int | None:
        """Commit a run that changed no user as a reference generation (``engine.generation``): one small PUT
        instead of the snapshot down and up again. Only when the state has not moved since the plan (the generation
        ``planned_on`` is the newest, and the journal's fingerprint is still ``journal``): then the plan saw every
        change, and ``changes`` (run on the generation's meta alone) can only record meta. None: it moved, or
        ``changes`` touched a user, or the generation has no index; commit the whole state instead (``commit``).

        In-flight lists and journal entries are left as they are (this commit settles and folds nothing); a change
        committed between the fingerprint and the PUT is replayed on the new generation for its races with this
        one (``generation_folds.late_races``), as a whole commit does."""
        if not planned_on or self.latest_generation() != planned_on:
            return None
        before = [key for key, _ in self.journal.list_all()]
        if journal_fingerprint(before) != journal:
            return None
        header = self.reader(planned_on).header()
        if header is None:
            return None
        generation_next = planned_on + 1
        manifest = self.read_manifest()
        with tempfile.TemporaryDirectory(prefix="cvcsync-state-") as tmp:
            state = ShadowState(Path(tmp) / "meta.sqlite", planned_on)
            try:
                state.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(header.meta.items()))
                self.fold_manifest(state, manifest)
                state.db.execute("BEGIN")
                changes(state)
                if snapshot_rows is not None:
                    state.set_meta("snapshot_rows", str(snapshot_rows))
                now = clock.now()
                state.set_meta("run_id", run_id)
                state.set_meta("committed_at", clock.report_time(now))
                state.db.execute("COMMIT")
                if state.count() or state.db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]:
                    return None  # not a meta-only commit after all
                meta = state.all_meta()
            finally:
                state.close()
        body = generation_file.reference(
            generation=generation_next,
            base_key=header.source or self._key(planned_on),
            meta=meta,
            settled=list(header.settled),
        )
        if not self.store.put_bytes(
            self.bucket, self._key(generation_next), body, content_type="application/octet-stream", if_absent=True
        ):
            return None  # another commit took the number: the state moved
        self.remember_generation(generation_next)
        users, uncertain = int(manifest.get("users") or 0), int(manifest.get("uncertain") or 0)
        published = self._manifest(
            generation_next, users + uncertain, uncertain, run_id, meta.get("committed_at") or ""
        )
        self._publish_manifest(generation_next, published)
        late_repairs.extend(
            late_races_after_reference(self.journal, self.reader(generation_next), generation_next, set(before))
        )
        self._prune(generation_next, keep=header.source or self._key(planned_on))
        log.info("state committed (unchanged: meta only)", extra={"generation": generation_next, "runId": run_id})
        return generation_next

    def _prune(self, newest: int, *, keep: str | None = None) -> None:
        """Remove generations past the last ``KEEP_GENERATIONS``. While the newest is a reference, its base ``keep``
        and every generation after the base stay: a container that last saw one of them probes forward one number
        at a time, and a gap would stop it at one that is not the newest (its change runs' manifest notes would be
        skipped). A whole generation ends such a chain: the old ones are then found by one listing, the references
        a chain left included."""
        last = newest - KEEP_GENERATIONS
        if keep is not None:
            base = _generation_of(keep, self.prefix)
            doomed = [g for g in range(max(1, last - 5), last + 1) if base is None or g < base]
        else:
            found = (
                _generation_of(key, self.prefix) for key in self.store.list_keys(self.bucket, f"{self.prefix}gen-")
            )
            doomed = sorted({g for g in found if g is not None and g <= last})
        for generation in doomed:
            self.store.delete(self.bucket, self._key(generation))
            self.store.delete(self.bucket, self._manifest_copy_key(generation))


def _generation_of(key: str, prefix: str) -> int | None:
    """The number of a generation's object or manifest copy (``gen-00000007.sqlite.gz``), else None."""
    digits = key.removeprefix(f"{prefix}gen-").split(".", 1)[0]
    return int(digits) if key.startswith(f"{prefix}gen-") and digits.isdigit() else None
