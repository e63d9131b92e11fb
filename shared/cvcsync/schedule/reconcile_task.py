"""The reconcile task: what CVC really holds against the shadow state, reported, and healed if configured.

CVC's directory is read with ListUsers, page by page, into a SQLite file (memory stays flat), and only then is
the state checked out and compared with it by content hash, the engine's way (``engine.reconcile`` does the same
for ``cvcsync sync --reconcile``; this task needs every id, not the first hundred, to heal CVC). CVC first, the
state after: a write another run commits while the directory is read is in the state compared, so healing never
undoes it (read the other way round, a user a queue run created meanwhile looked "added outside cvc-sync").

Drift, in the engine's ``Drift`` shape: ``onlyInCvc`` (users added outside cvc-sync), ``onlyInState`` (users
missing from CVC), ``different`` (users changed outside cvc-sync), ``uncertain`` (users the state does not know
the content of: a run may have written them without its commit, see ``engine.state``), and the CVC count against
the last accepted full snapshot. An uncertain user is never counted as missing or different: the state holds no
truth about it to compare.

Where ListUsers is unavailable (``InvalidApi.NotFound``), a random sample of the state's users
(``CVCSYNC_RECONCILE_SAMPLE``) is checked with GetUser instead: it finds missing and changed users, never added
ones. A GetUser business error is read as "no such user" (CVC publishes no code for it).

Healing (``CVCSYNC_RECONCILE_MODE`` or the task's ``mode`` option):

* ``report`` (default): nothing is changed;
* ``heal-state``: the state is made to match CVC (the next sync then sends exactly what differs from HR), which
  settles uncertain users too; except the users a running run's in-flight list names, which stay uncertain, and
  whose lists the heal's commit leaves in place for that run's own commit (``ShadowState.rebuild``,
  ``StateStore.commit(settles_in_flight=False)``);
* ``heal-cvc``: the state's records are pushed back for missing and changed users, and users the state does not
  know are deleted, behind the sync's deletion threshold (``CVCSYNC_MAX_DELETES``, ``CVCSYNC_MAX_DELETE_PERCENT``
  of the users CVC holds; ``CVCSYNC_GUARD_OVERRIDE`` approves). Past it no deletion is sent, the upserts only with
  ``CVCSYNC_UPSERTS_WHEN_REFUSED``, and ``CVCSYNC_ALERT_RECONCILE_REFUSED`` is raised. Never against a state that
  has never been committed: an empty memory would mean "delete everyone". Uncertain users are neither pushed nor
  deleted (pushing one could re-create a user whose delete went through but was never committed): they are
  reported, and heal-state settles them.

The report goes to ``<output prefix>reports/reconcile/<run id>.json`` and one log line (WARNING with code
``ReconcileDrift`` when there is drift).
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.budget import TimeBudget
from cvcsync.engine import guards
from cvcsync.engine.circuit import AUTH_CODES, CircuitBreaker
from cvcsync.engine.outcomes import Outcome, RunReport
from cvcsync.engine.reconcile import SAMPLE as LISTED
from cvcsync.engine.reconcile import Drift
from cvcsync.engine.settle import DELETE, UPSERT, Write, last_changes
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, PlanRow, insert_rows, new_workspace
from cvcsync.errors import CvcBusinessError, CvcError, InvalidInputError
from cvcsync.inputs.records import RecordError, content_hash, parse_user, user_from_cvc
from cvcsync.runs.run import Run
from cvcsync.schedule import alerts
from cvcsync.schedule.context import (
    HEAL_CVC,
    HEAL_STATE,
    RECONCILE_MODES,
    REPORT,
    ScheduleContext,
    carry_last_sync,
    iso,
    read_options,
)

log = logging.getLogger(__name__)

LIST_UNAVAILABLE = frozenset({"InvalidApi.NotFound", "InvalidAction.NotFound", "InvalidAction"})
OPTIONS = {"mode": str, "sample": int}
LISTED_METHOD, SAMPLE_METHOD = "list", "sample"
UNREADABLE = "unreadable"
_BATCH = 5000


# Uncertain users (hash '', ``engine.state.UNCERTAIN``) are their own kind of drift, never missing or different.
_ONLY_IN_CVC = "SELECT c.user_id FROM dir.cvc c WHERE c.user_id NOT IN (SELECT user_id FROM main.users)"
_NOT_IN_CVC = "SELECT u.user_id FROM main.users u WHERE u.user_id NOT IN (SELECT user_id FROM dir.cvc)"
_IN_SCOPE = " AND u.user_id IN (SELECT user_id FROM dir.scope)"
_CERTAIN = " AND u.hash != ''"
_DIFFERENT = "SELECT c.user_id FROM dir.cvc c JOIN main.users u USING (user_id) WHERE c.hash != u.hash AND u.hash != ''"
_UNCERTAIN = "SELECT u.user_id FROM main.users u WHERE u.hash = ''"
_NOTHING = "SELECT user_id FROM dir.cvc WHERE 0"


class _Directory:
    """CVC's users (or a sample of them) in a SQLite file of their own: filled first, then attached to the state
    checked out after it (``attach``), so the comparison sees every commit made while CVC was read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: ShadowState | None = None
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.execute("ATTACH DATABASE ? AS dir", (str(path),))
        # A scratch file: a crash discards it, so no journal and no fsync per insert.
        self.db.executescript("PRAGMA dir.journal_mode = OFF; PRAGMA dir.synchronous = OFF;")
        self.db.execute("CREATE TABLE dir.cvc (user_id TEXT PRIMARY KEY, hash TEXT NOT NULL, record TEXT NOT NULL)")
        self.db.execute("CREATE TABLE dir.scope (user_id TEXT PRIMARY KEY)")  # the sampled ids (sample method)
        self.method = LISTED_METHOD
        self.unreadable = 0
        self.sampled = 0
        self.unchecked = 0

    def attach(self, state: ShadowState) -> None:
        """Compare against ``state`` from now on (its connection sees the directory as ``dir``)."""
        self.db.close()
        state.db.execute("ATTACH DATABASE ? AS dir", (str(self.path),))
        self.db, self.state = state.db, state

    def close(self) -> None:
        if self.state is None:  # attached, the state's connection owns it
            self.db.close()

    def add(self, infos: Iterator[dict[str, Any]]) -> None:
        batch: list[tuple[str, str, str]] = []
        for info in infos:
            try:
                user = parse_user(info)
            except RecordError:
                self.unreadable += 1  # CVC holds something our validation would not send: drift all the same
                user_id = str(info.get("UserId") or "")
                if user_id:
                    batch.append((user_id, UNREADABLE, orjson.dumps(user_from_cvc(info), default=str).decode()))
                continue
            payload = user.to_json()
            batch.append((user.user_id, content_hash(payload), payload.decode()))
            if len(batch) >= _BATCH:
                self.db.executemany("INSERT OR REPLACE INTO dir.cvc VALUES (?, ?, ?)", batch)
                batch = []
        self.db.executemany("INSERT OR REPLACE INTO dir.cvc VALUES (?, ?, ?)", batch)

    # -- the three kinds of drift, as SQL over main.users (the state) and dir.cvc ---------------------------------

    def only_in_cvc(self) -> str:
        return _NOTHING if self.method == SAMPLE_METHOD else _ONLY_IN_CVC  # a sample cannot find users it lacks

    def only_in_state(self) -> str:
        """Users the state knows CVC held and it holds no more (uncertain ones are ``uncertain``)."""
        return self.not_in_cvc() + _CERTAIN

    def not_in_cvc(self) -> str:
        """Every user of the state (in the sample's scope) that CVC lacks, uncertain ones included."""
        return _NOT_IN_CVC + (_IN_SCOPE if self.method == SAMPLE_METHOD else "")

    def different(self) -> str:
        return _DIFFERENT

    def uncertain(self) -> str:
        return _UNCERTAIN + (_IN_SCOPE if self.method == SAMPLE_METHOD else "")

    def count(self, query: str) -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM ({query})").fetchone()[0])  # noqa: S608 - constants  # nosec B608

    def first(self, query: str) -> list[str]:
        return [uid for (uid,) in self.db.execute(f"{query} ORDER BY 1 LIMIT {LISTED}")]

    def drift(self) -> Drift:
        assert self.state is not None, "attach the state first"
        queries = {
            "onlyInCvc": self.only_in_cvc(),
            "onlyInState": self.only_in_state(),
            "different": self.different(),
            "uncertain": self.uncertain(),
        }
        return Drift(
            cvc_users=int(self.db.execute("SELECT COUNT(*) FROM dir.cvc").fetchone()[0]),
            state_users=self.state.count(),
            only_in_cvc=self.first(queries["onlyInCvc"]),
            only_in_state=self.first(queries["onlyInState"]),
            different=self.first(queries["different"]),
            counts={name: self.count(query) for name, query in queries.items()},
            unreadable=self.unreadable,
        )


class Reconcile:
    def __init__(self, ctx: ScheduleContext, options: dict[str, Any] | None = None) -> None:
        checked = read_options("reconcile", options or {}, OPTIONS)
        mode = str(checked.get("mode", ctx.settings.reconcile_mode)).strip().lower()
        if mode not in RECONCILE_MODES:
            raise InvalidInputError(f"option mode of task reconcile must be one of {', '.join(RECONCILE_MODES)}")
        self.ctx = ctx
        self.mode = mode
        self.read_after: int | None = None  # the newest state generation when CVC began to be read
        self.sample_size: int = checked.get("sample", ctx.settings.reconcile_sample)
        self.run_id = f"reconcile-{uuid.uuid4()}"
        self.breaker = CircuitBreaker(ctx.sync.settings.circuit_failures)
        self.result: dict[str, Any] = {
            "task": "reconcile",
            "runId": self.run_id,
            "mode": self.mode,
            "startedAt": iso(ctx.now()),
            "messages": [],
        }

    @property
    def deadline(self) -> float | None:
        return self.ctx.sync.invocation.deadline

    def run(self) -> dict[str, Any]:
        store = self.ctx.sync.state
        with tempfile.TemporaryDirectory(prefix="cvcsync-reconcile-") as tmp:
            workdir = Path(tmp)
            directory = _Directory(workdir / "directory.sqlite")
            state: ShadowState | None = None
            try:
                self.read_after = store.latest_generation()  # changes committed later may postdate the read
                self._read_cvc(directory, workdir)
                state = store.checkout(workdir)  # after CVC: what was committed meanwhile is compared, not undone
                directory.attach(state)
                drift = directory.drift()
                self.result["method"] = directory.method
                self.result["drift"] = {
                    **drift.to_dict(),
                    "uncertain": directory.first(directory.uncertain()),
                    "sampled": directory.sampled if directory.method == SAMPLE_METHOD else None,
                    "unchecked": directory.unchecked,
                    "snapshot": self._snapshot(state, drift, directory.method),
                }
                self.result["status"] = "in-sync" if drift.in_sync else "drift"
                if not drift.in_sync and self.mode == HEAL_STATE:
                    self.result["heal"] = self._heal_state(directory)
                elif not drift.in_sync and self.mode == HEAL_CVC:
                    self.result["heal"] = self._heal_cvc(directory, state, workdir)
            except CvcError as exc:
                if exc.code != "DeadlineExceeded":
                    raise
                self.result["status"] = "deadline"
                self.result["messages"].append("the deadline came before CVC's directory was read: nothing healed")
            finally:
                directory.close()
                if state is not None:
                    state.close()
        return self._close()

    # -- reading CVC ----------------------------------------------------------------------------------------------

    def _read_cvc(self, directory: _Directory, workdir: Path) -> None:
        try:
            directory.add(self.ctx.sync.cvc.list_users(deadline=self.deadline))
            return
        except CvcError as exc:
            if exc.code not in LIST_UNAVAILABLE:
                raise
            log.warning("ListUsers is unavailable: checking a sample with GetUser", extra={"code": exc.code})
            self.result["messages"].append(f"ListUsers unavailable ({exc.code}): a sample was checked with GetUser")
        directory.db.execute("DELETE FROM dir.cvc")
        directory.method = SAMPLE_METHOD
        directory.unreadable = 0
        sample = self._sample_ids(workdir)
        directory.sampled = len(sample)
        directory.db.executemany("INSERT INTO dir.scope VALUES (?)", [(uid,) for uid in sample])
        found = []
        for user_id in sample:
            try:
                found.append(self.ctx.sync.cvc.get_user(user_id, deadline=self.deadline))
            except CvcBusinessError:
                continue  # read as "CVC has no such user": it stays out of dir.cvc and shows as missing
            except CvcError as exc:
                if exc.code in AUTH_CODES or exc.code == "DeadlineExceeded":
                    raise
                directory.unchecked += 1
                directory.db.execute("DELETE FROM dir.scope WHERE user_id = ?", (user_id,))
        directory.add(iter(found))

    def _confirm_missing(self, directory: _Directory, missing: list[str]) -> list[str]:
        """Users the state holds and the listing lacked, asked for one by one before the state forgets them: a
        listing is paged, and a page that shifted under concurrent writes skips users that exist. Found ones join
        the directory; ones CVC says it lacks stay missing; the rest (no answer, no time) are returned, to be kept
        as the state holds them rather than forgotten (the read says nothing about them)."""
        unsure: list[str] = []
        found: list[dict[str, Any]] = []
        for user_id in missing:
            if (
                self.ctx.remaining() is not None
                and (self.ctx.remaining() or 0) <= self.ctx.sync.settings.deadline_margin
            ):
                unsure.append(user_id)
                continue
            try:
                found.append(self.ctx.sync.cvc.get_user(user_id, deadline=self.deadline))
            except CvcBusinessError:
                continue  # CVC has no such user: it really is missing
            except CvcError:
                unsure.append(user_id)
        if found:
            directory.add(iter(found))
            self.result["messages"].append(f"{len(found)} user(s) the listing skipped were found with GetUser")
        return unsure

    def _sample_ids(self, workdir: Path) -> list[str]:
        """The state's users to check with GetUser, from a checkout of their own (the comparison reads the state
        again after CVC)."""
        sampling = workdir / "sample"
        sampling.mkdir()
        state = self.ctx.sync.state.checkout(sampling)
        try:
            ids = [uid for (uid,) in state.db.execute("SELECT user_id FROM main.users ORDER BY user_id")]
        finally:
            state.close()
        return self.ctx.rng.sample(ids, min(self.sample_size, len(ids)))

    @staticmethod
    def _snapshot(state: ShadowState, drift: Drift, method: str) -> dict[str, Any]:
        """CVC against the last full snapshot HR sent and cvc-sync accepted (the completeness gate's number)."""
        last = state.snapshot_rows
        if method != LISTED_METHOD or last is None:
            return {"lastAcceptedUsers": last, "cvcUsers": None, "difference": None}
        return {"lastAcceptedUsers": last, "cvcUsers": drift.cvc_users, "difference": drift.cvc_users - last}

    # -- healing --------------------------------------------------------------------------------------------------

    def _heal_state(self, directory: _Directory) -> dict[str, Any]:
        """The state made to match CVC: every readable CVC user (list), or the sampled ones fixed (sample). Users
        a run's in-flight list names stay uncertain and the lists stay: that run may write them after CVC was
        read, and only its own commit can say what it wrote."""
        sampled = directory.method == SAMPLE_METHOD
        missing = [uid for (uid,) in directory.db.execute(directory.not_in_cvc())]
        unsure = [] if sampled else self._confirm_missing(directory, missing)
        path = directory.path
        in_flight: list[int] = []

        def cvc_rows() -> Iterator[list[tuple[str, str, str]]]:
            """The readable CVC users, streamed from the directory file (the commit works on another checkout)."""
            source = sqlite3.connect(path)
            try:
                cursor = source.execute("SELECT user_id, hash, record FROM cvc WHERE hash != ?", (UNREADABLE,))
                while rows := cursor.fetchmany(_BATCH):
                    yield rows
            finally:
                source.close()

        def changes(target: ShadowState) -> None:
            carry_last_sync(target)
            target.rebuild(cvc_rows(), replacing=missing if sampled else None, read_after=self.read_after, keep=unsure)
            in_flight[:] = [target.in_flight_count()]

        generation = self.ctx.sync.state.commit(changes, run_id=self.run_id, settles_in_flight=False)
        self.result["status"] = "healed"
        log.warning("reconcile healed the state from CVC", extra={"runId": self.run_id, "generation": generation})
        return {
            "direction": HEAL_STATE,
            "generationAfter": generation,
            "removedFromState": len(missing),
            "keptInFlight": in_flight[0] if in_flight else 0,  # users of running runs, left uncertain
        }

    def _heal_cvc(self, directory: _Directory, state: ShadowState, workdir: Path) -> dict[str, Any]:
        heal: dict[str, Any] = {"direction": HEAL_CVC}
        if state.generation == 0:
            heal["refused"] = "no shadow state has been committed yet: there is nothing to heal CVC from"
            self.result["status"] = "refused"
            self._refused(heal["refused"])
            return heal
        deletes = directory.count(directory.only_in_cvc())
        settings = self.ctx.sync.settings
        # The percentage is of the users CVC holds: they are the ones a heal would delete.
        cvc_users = directory.count("SELECT user_id FROM dir.cvc")
        facts = guards.GuardFacts(
            mode=DELTA, deletes=deletes, creates=0, valid_users=0, state_users=cvc_users, last_snapshot_users=None
        )
        gate = guards.deletion_threshold(
            facts,
            guards.GuardSettings(settings.max_deletes, settings.max_delete_percent, override=settings.guard_override),
        )
        heal["guard"] = gate.to_dict()
        refused = not gate.passed and not gate.overridden
        send_upserts = not refused or settings.upserts_when_refused
        if refused:
            heal["refused"] = f"REFUSED by the {gate.name} gate: {gate.detail}"
            self.result["status"] = "refused"
            self._refused(heal["refused"])
        plan = new_workspace(workdir, mode=DELTA, state=state, source={"kind": "reconcile"})
        try:
            rows: list[PlanRow] = []
            if send_upserts:
                wanted = f"{directory.only_in_state()} UNION {directory.different()}"
                query = f"SELECT user_id, hash, record FROM main.users WHERE user_id IN ({wanted}) ORDER BY user_id"  # noqa: S608 - constants  # nosec B608
                for user_id, digest, record in directory.db.execute(query):
                    rows.append(PlanRow(len(rows) + 1, user_id, "upsert", "update", digest, record))
            if not refused:
                for (user_id,) in directory.db.execute(directory.only_in_cvc() + " ORDER BY 1"):
                    rows.append(PlanRow(len(rows) + 1, user_id, "delete", "delete"))
            insert_rows(plan, rows)
            # A writer like every other (``runs.run.Run``): in flight first, applied within the budget, settled.
            run = Run(
                self.ctx.sync,
                plan,
                RunReport(run_id=self.run_id, mode=DELTA, source={"kind": "reconcile"}),
                writer="reconcile",
                budget=TimeBudget.until(self.deadline, settings.deadline_margin),
                breaker=self.breaker,
            )
            run.apply()
            if rows:
                heal["repairs"] = self._settle_heal(run, state)
            outcomes = plan.outcome_counts()
            failures = [
                {"userId": uid, "code": orjson.loads(error).get("code") if error else None}
                for uid, error in plan.db.execute(
                    "SELECT user_id, error FROM rows WHERE outcome = ? ORDER BY seq LIMIT ?",
                    (Outcome.DEAD_LETTERED.value, LISTED),
                )
            ]
            heal.update(
                uncertain=directory.count(directory.uncertain()),  # left alone: heal-state settles them
                pushed=outcomes[Outcome.UPDATED.value],
                deleted=outcomes[Outcome.DELETED.value],
                failed=outcomes[Outcome.DEAD_LETTERED.value],
                pending=plan.pending_count(),
                failures=failures,
            )
        finally:
            plan.close()
        if self.breaker.open:
            heal["circuitOpen"] = self.breaker.reason
        if heal["uncertain"]:
            self.result["messages"].append(
                f"{heal['uncertain']} uncertain user(s) were neither pushed nor deleted: heal-state settles them"
            )
        if not refused:
            done = not heal["failed"] and not heal["pending"] and not heal["uncertain"]
            self.result["status"] = "healed" if done else "partly-healed"
        log.warning(
            "reconcile pushed the state back to CVC",
            extra={
                "runId": self.run_id,
                "pushed": heal["pushed"],
                "deleted": heal["deleted"],
                "failed": heal["failed"],
            },
        )
        return heal

    def _settle_heal(self, run: Run, state: ShadowState) -> int:
        """Commit what the heal wrote through the one rule (``engine.settle``). A pushed user is the state's last
        change applied again, at that change's time; a deleted outsider is a change of now. Whatever another writer
        committed since the state was read wins, and is applied again if this heal may have overwritten it."""
        plan = run.plan
        ids = [uid for (uid,) in plan.db.execute("SELECT user_id FROM rows")]
        known = last_changes(state, ids)
        now = clock.stamp(clock.now())
        writes: list[Write] = []
        # Only what went through: a push that failed leaves the state as it was (it still holds the content CVC
        # lacks), and the next reconcile tries again; no dead letter is written for a heal.
        query = "SELECT user_id, op, hash, record FROM rows WHERE outcome IN ('updated', 'deleted')"
        for user_id, op, digest, record in plan.db.execute(query):
            if op == "delete":
                writes.append(Write(user_id, now, DELETE))
            else:
                writes.append(Write(user_id, known.get(user_id) or clock.stamp(clock.EPOCH), UPSERT, digest, record))
        repairs = run.commit(
            lambda: writes, also=lambda target, _repairs: carry_last_sync(target), repair_letters_to_sink=False
        )
        return len(repairs)

    def _refused(self, why: str) -> None:
        self.ctx.alerter.raise_alert(
            alerts.Alert(alerts.RECONCILE_REFUSED, f"reconcile did not heal CVC: {why}", {"runId": self.run_id}),
            source="reconcile",
            request_id=self.ctx.sync.invocation.request_id,
        )

    def _close(self) -> dict[str, Any]:
        self.result["finishedAt"] = iso(self.ctx.now())
        key = self.ctx.key("reports", "reconcile", f"{self.run_id}.json")
        self.result["reportKey"] = key
        self.ctx.sync.put_json(key, self.result)
        drift = self.result.get("drift") or {}
        level = logging.INFO if self.result["status"] == "in-sync" else logging.WARNING
        log.log(
            level,
            "reconcile: %s",
            self.result["status"],
            extra={
                "code": "ReconcileDrift" if level == logging.WARNING else "ReconcileInSync",
                "runId": self.run_id,
                "method": self.result.get("method"),
                "counts": drift.get("counts"),
                "reportKey": key,
            },
        )
        return self.result


def run_reconcile(ctx: ScheduleContext, options: dict[str, Any]) -> dict[str, Any]:
    return Reconcile(ctx, options).run()


__all__ = ["HEAL_CVC", "HEAL_STATE", "LIST_UNAVAILABLE", "REPORT", "Reconcile", "run_reconcile"]
