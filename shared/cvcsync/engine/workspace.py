"""The plan workspace: one SQLite file per run holding every row or change, its operation and, once applied, its
outcome (``SyncPlan``). Memory stays flat at any size; a checkpoint saves the file and a continuation loads it.
``engine.plan`` fills and decides it; ``engine.apply`` reads the pending operations and records outcomes.

No count is kept beside the rows: counts are read from two partial indexes that SQLite keeps exact through every
insert and update (planning, apply's outcomes, a guard's skips, a continuation's or a chunk's merge, a saved plan
rebuilt), so none can be stale. ``rows_of_note`` holds every row but the unchanged upserts (nearly all of an
unchanged roster), which are counted as the rest of ``COUNT(*)``; ``rows_pending`` holds the operations not yet done,
in input order, for apply and the in-flight list. A count costs the rows that changed, not the roster.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from cvcsync.engine.outcomes import Outcome, Problem
from cvcsync.inputs.records import content_hash

if TYPE_CHECKING:
    from cvcsync.inputs.columns import ColumnMap
    from cvcsync.inputs.readers import SourceRow
from cvcsync.engine.state import ShadowState

FULL, DELTA = "full", "delta"
MODES = (FULL, DELTA)
INSERT_BATCH = 5000
OUTCOME_SEQS = 500  # row numbers per UPDATE of outcomes (under SQLite's old limit of 999 parameters)
# The workspace is scratch: a crash loses nothing a re-plan would not rebuild, so no journal and no fsync. Pages of
# 32 KiB (before the first table): a million rows are written in 7% less time than in 4 KiB pages, in the same cache.
WORKSPACE_PRAGMAS = (
    "PRAGMA page_size = 32768; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; "
    "PRAGMA cache_size = -16000;"
)

SCHEMA = """
CREATE TABLE rows (
    seq INTEGER PRIMARY KEY,
    line INTEGER,
    user_id TEXT,
    kind TEXT NOT NULL,
    op TEXT,
    hash TEXT,
    record TEXT,
    old TEXT,
    problem TEXT,
    outcome TEXT,
    error TEXT,
    chunk INTEGER,
    origin TEXT
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Every row but an unchanged upsert. A query uses ``rows_of_note`` only when its WHERE holds this very expression.
OF_NOTE = "(op IS NOT 'unchanged' OR outcome IS NOT 'unchanged' OR kind IS NOT 'upsert')"
# Created with the table, so that the bulk of an unchanged roster never enters either index. ``IF NOT EXISTS``: a run
# saved before the indexes existed gets them when it is loaded (``runs.lifecycle.load_run``).
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS rows_of_note ON rows (op, outcome, kind) WHERE {OF_NOTE};"
    "CREATE INDEX IF NOT EXISTS rows_pending ON rows (outcome) WHERE outcome IS NULL;"
)

# Planned operations: what apply will send, in the order it sends them (deletes first free licensed capacity).
CREATE, UPDATE, UNCHANGED, DELETE, REJECT, DUPLICATE = "create", "update", "unchanged", "delete", "reject", "duplicate"
ABSENT = "absent"  # a full snapshot's departed row of a user the state does not hold: nothing to do
STALE = "stale"  # the state knows a newer change of this user (event time, ``clock``): writing would undo it
WRITE_OPS = (DELETE, CREATE, UPDATE)
_SETTLED = {
    UNCHANGED: Outcome.UNCHANGED.value,
    REJECT: Outcome.REJECTED.value,
    DUPLICATE: Outcome.DUPLICATE.value,
    ABSENT: Outcome.UNCHANGED.value,
    STALE: Outcome.STALE.value,
}


@dataclass
class PlanInput:
    rows: Iterable[SourceRow]
    mode: str
    defaults: Mapping[str, str] = field(default_factory=dict)
    mapper: ColumnMap | None = None  # None: the document's names and the presets (``ColumnMap()``)
    source: dict[str, Any] = field(default_factory=dict)
    as_of: str | None = None  # the input's event time (``clock.stamp``): newer changes in the state win over it


@dataclass(frozen=True)
class Tally:
    """A plan's rows by (kind, op, outcome) at one moment (``SyncPlan.tally``), and every count read from them."""

    rows: Mapping[tuple[str, str | None, str | None], int]

    def ops(self) -> dict[str, int]:
        counts: dict[Any, int] = {op: 0 for op in (CREATE, UPDATE, UNCHANGED, DELETE, REJECT, DUPLICATE, ABSENT)}
        for (_, op, _), n in self.rows.items():
            counts[op] = counts.get(op, 0) + n  # op None: a row never decided, counted as before
        return counts

    def outcomes(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for (_, _, outcome), n in self.rows.items():
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + n
        return counts

    @property
    def rows_read(self) -> int:
        return sum(n for (kind, _, _), n in self.rows.items() if kind != "implied")

    @property
    def implied_deletions(self) -> int:
        return sum(n for (kind, _, _), n in self.rows.items() if kind == "implied")

    @property
    def valid_users(self) -> int:
        """Distinct users the input wants present (what the completeness gate compares)."""
        return sum(n for (_, op, _), n in self.rows.items() if op in (CREATE, UPDATE, UNCHANGED))

    @property
    def problems(self) -> int:
        """Rejections and dead letters (``SyncPlan.problems``)."""
        return sum(n for (_, _, outcome), n in self.rows.items() if outcome in _PROBLEMS)


_PROBLEMS = (Outcome.REJECTED.value, Outcome.DEAD_LETTERED.value)


class SyncPlan:
    """A plan in its SQLite workspace: counts, pending operations, outcomes as they are recorded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    @classmethod
    def from_artefact(cls, saved: Mapping[str, Any], workdir: Path) -> SyncPlan:
        """Rebuild a plan from its dry-run artefact, so that applying it sends exactly what it lists."""
        plan = cls(workdir / f"plan-{saved['planId']}.sqlite")
        plan.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA + INDEXES)
        plan.set_meta("plan_id", str(saved["planId"]))
        plan.set_meta("mode", str(saved.get("mode", FULL)))
        plan.set_meta("state_generation", str(saved.get("stateGeneration", 0)))
        plan.set_meta("state_journal", str(saved.get("stateJournal") or ""))
        plan.set_meta("source", orjson.dumps(saved.get("source", {})).decode())
        rows = []
        for op in saved.get("operations", []):
            kind = {
                DELETE: "delete" if op.get("line") is not None else "implied",
                ABSENT: "delete",
                REJECT: "reject",
                DUPLICATE: "upsert",
            }.get(op["op"], "upsert")
            record = orjson.dumps(op["new"]) if "new" in op else None
            outcome = op.get("outcome") or _SETTLED.get(op["op"])
            problem = op.get("problem", op.get("notice"))
            rows.append(
                (
                    op["seq"],
                    op.get("line"),
                    op.get("userId"),
                    kind,
                    op["op"],
                    content_hash(record) if record else None,
                    record.decode() if record else None,
                    orjson.dumps(op["old"]).decode() if "old" in op else None,
                    orjson.dumps(problem).decode() if problem is not None else None,
                    outcome,
                )
            )
        plan.db.execute("BEGIN")
        plan.db.executemany(
            "INSERT INTO rows (seq, line, user_id, kind, op, hash, record, old, problem, outcome) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        plan.db.execute("COMMIT")
        return plan

    # -- metadata -------------------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def plan_id(self) -> str:
        return self.meta("plan_id") or ""

    @property
    def mode(self) -> str:
        return self.meta("mode") or FULL

    @property
    def state_generation(self) -> int:
        return int(self.meta("state_generation") or 0)

    @property
    def state_journal(self) -> str:
        """The fingerprint of the journal entries the state held when planned (``ShadowState.journal_fingerprint``)."""
        return self.meta("state_journal") or ""

    @property
    def notices(self) -> dict[str, Any]:
        """How many notices the mapping raised, and the first few (unmapped columns, formula-like cells...)."""
        raw = self.meta("notices")
        return dict(orjson.loads(raw)) if raw else {"count": 0, "first": []}

    @property
    def source(self) -> dict[str, Any]:
        raw = self.meta("source")
        return dict(orjson.loads(raw)) if raw else {}

    def close(self) -> None:
        self.db.close()

    # -- counts ---------------------------------------------------------------------------------------------

    def tally(self) -> Tally:
        """The plan's counts, exact at this moment: the rows of note from their index (``OF_NOTE``), the unchanged
        upserts as the rest of ``COUNT(*)`` (SQLite counts the pages of the narrowest index). Its cost is the rows
        that changed, whatever the roster's size; take one where several counts are wanted at once."""
        found: dict[tuple[str, str | None, str | None], int] = {}
        query = f"SELECT kind, op, outcome, COUNT(*) FROM rows WHERE {OF_NOTE} GROUP BY op, outcome, kind"  # noqa: S608  # nosec B608 - a constant
        for kind, op, outcome, n in self.db.execute(query):
            found[(kind, op, outcome)] = n
        rest = int(self.db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]) - sum(found.values())
        if rest:
            found[("upsert", UNCHANGED, Outcome.UNCHANGED.value)] = rest
        return Tally(found)

    def op_counts(self) -> dict[str, int]:
        return self.tally().ops()

    def rows_read(self) -> int:
        return self.tally().rows_read

    def implied_deletions(self) -> int:
        return self.tally().implied_deletions

    def valid_users(self) -> int:
        """Distinct users the input wants present (what the completeness gate compares)."""
        return self.tally().valid_users

    def outcome_counts(self) -> dict[str, int]:
        return self.tally().outcomes()

    def pending_count(self, chunk: int | None = None) -> int:
        query = "SELECT COUNT(*) FROM rows WHERE outcome IS NULL"  # through rows_pending
        if chunk is None:
            return int(self.db.execute(query).fetchone()[0])
        return int(self.db.execute(query + " AND chunk = ?", (chunk,)).fetchone()[0])

    # -- operations -----------------------------------------------------------------------------------------

    def pending(self, op: str, chunk: int | None = None) -> Iterator[tuple[int, str, str | None]]:
        """(seq, user_id, record JSON) of operations not yet done, in input order."""
        query = "SELECT seq, user_id, record FROM rows WHERE op = ? AND outcome IS NULL"
        args: tuple[Any, ...] = (op,)
        if chunk is not None:
            query += " AND chunk = ?"
            args += (chunk,)
        yield from self.db.execute(query + " ORDER BY seq", args).fetchall()

    def record_outcomes(self, results: Iterable[tuple[int, str, str | None]]) -> None:
        """(seq, outcome, error JSON) of finished operations.

        Outcomes without an error (nearly all) are written by outcome, one statement per OUTCOME_SEQS rows
        (apply records a batch of 100 after every call: row by row, that was most of the apply thread's time).
        """
        last = {seq: (outcome, error) for seq, outcome, error in results}  # a row recorded twice: the later wins
        plain: dict[str, list[int]] = {}
        failed: list[tuple[str, str, int]] = []
        for seq, (outcome, error) in last.items():
            if error is None:
                plain.setdefault(outcome, []).append(seq)
            else:
                failed.append((outcome, error, seq))
        self.db.execute("BEGIN")
        for outcome, seqs in plain.items():
            for start in range(0, len(seqs), OUTCOME_SEQS):
                part = seqs[start : start + OUTCOME_SEQS]
                marks = ",".join("?" * len(part))
                self.db.execute(
                    f"UPDATE rows SET outcome = ?, error = NULL WHERE seq IN ({marks})",  # noqa: S608  # nosec B608 - marks only
                    (outcome, *part),
                )
        if failed:
            self.db.executemany("UPDATE rows SET outcome = ?, error = ? WHERE seq = ?", failed)
        self.db.execute("COMMIT")

    def skip_pending(self, ops: Iterable[str]) -> int:
        """Guard refusal: pending operations of these kinds end as skipped-by-guard."""
        marks = ",".join("?" for _ in ops)
        cursor = self.db.execute(
            f"UPDATE rows SET outcome = ? WHERE outcome IS NULL AND op IN ({marks})",  # noqa: S608 - placeholders only  # nosec B608
            (Outcome.SKIPPED_BY_GUARD.value, *ops),
        )
        return cursor.rowcount

    def assign_chunks(self, chunk_size: int) -> int:
        """Number pending write operations into chunks of ``chunk_size`` (deletes first); return the chunk count."""
        seqs = [
            seq
            for op in WRITE_OPS
            for (seq,) in self.db.execute("SELECT seq FROM rows WHERE op = ? AND outcome IS NULL ORDER BY seq", (op,))
        ]
        self.db.execute("BEGIN")
        self.db.executemany(
            "UPDATE rows SET chunk = ? WHERE seq = ?", [(i // chunk_size, s) for i, s in enumerate(seqs)]
        )
        self.db.execute("COMMIT")
        return (len(seqs) + chunk_size - 1) // chunk_size

    def problems(self, limit: int | None = None) -> Iterator[Problem]:
        """Rejections (invalid rows, conflicting user ids) and dead letters, in input order; a duplicate is no
        problem (its notice is in ``notices``)."""
        if not self.problem_count():
            return  # the query below reads every row, in input order
        query = (
            "SELECT line, user_id, problem, error FROM rows WHERE outcome IN ('rejected', 'deadLettered') ORDER BY seq"
        )
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        for line, user_id, problem, error in self.db.execute(query):
            detail = orjson.loads(problem or error or b"{}")
            yield Problem(
                str(detail.get("code", "Unknown")),
                str(detail.get("message", "")),
                line,
                user_id,
                detail.get("requestId"),
            )

    def problem_count(self) -> int:
        return self.tally().problems

    def groups(self) -> frozenset[str]:
        """The distinct groupIds of the users this input wants present, which for a delta are those of its valid
        upserts (what the group gate compares with the state's): refused, duplicate and stale rows put nobody
        anywhere."""
        query = "SELECT DISTINCT json_extract(record, '$.groupId') FROM rows "
        query += "WHERE op IN ('create', 'update', 'unchanged')"
        return frozenset(str(g) for (g,) in self.db.execute(query) if g is not None)

    def in_flight(self) -> Iterator[tuple[str, str | None]]:
        """(user_id, record JSON for a create else None) of every write still to send: the state's in-flight list."""
        query = "SELECT user_id, CASE WHEN op = 'create' THEN record END FROM rows WHERE outcome IS NULL AND op IN "
        yield from self.db.execute(query + "('create', 'update', 'delete') ORDER BY seq")

    def users_named(self, user_ids: list[str]) -> dict[str, tuple[str, str] | None]:
        """Which of ``user_ids`` the plan names, with (hash, record) of the row that wins for a valid one and None
        for a user named only by refused rows (invalid, or in conflict: a refused row protects its user too) or
        by deletes."""
        marks = ",".join("?" * len(user_ids))
        wins = "(op IN ('create', 'update', 'unchanged', 'stale') AND record IS NOT NULL)"
        query = (
            f"SELECT user_id, hash, record, {wins} AS wins FROM rows WHERE user_id IN ({marks}) "  # noqa: S608 - marks only  # nosec B608
            "ORDER BY user_id, wins, seq"
        )
        named: dict[str, tuple[str, str] | None] = {}
        for uid, digest, record, wins in self.db.execute(query, user_ids):
            named[uid] = (digest, record) if wins and digest else named.get(uid)
        return named

    def changes_for_state(self) -> tuple[Iterator[tuple[str, str, str]], Iterator[str]]:
        """What CVC now holds because of this plan: upserts that succeeded and deletes that succeeded. Each is read
        in input order by a scan of every row (an index and a sort would hold a million records in memory), so
        only when the counts say there is one."""
        outcomes = self.outcome_counts()
        upserts: Iterator[tuple[str, str, str]] = iter(())
        deletes: Iterator[str] = iter(())
        if outcomes[Outcome.CREATED.value] or outcomes[Outcome.UPDATED.value]:
            upserts = self.db.execute(
                "SELECT user_id, hash, record FROM rows WHERE outcome IN ('created', 'updated') ORDER BY seq"
            )
        if outcomes[Outcome.DELETED.value]:
            deletes = (uid for (uid,) in self.db.execute("SELECT user_id FROM rows WHERE outcome = 'deleted'"))
        return upserts, deletes

    def operations(self) -> Iterator[dict[str, Any]]:
        """Every planned operation for the dry-run artefact: creates, updates (old -> new), deletes, rejections
        (with their problem) and duplicates (with their notice)."""
        query = "SELECT seq, line, user_id, op, record, old, problem, outcome FROM rows ORDER BY seq"
        for seq, line, user_id, op, record, old, problem, outcome in self.db.execute(query):
            entry: dict[str, Any] = {"seq": seq, "op": op, "userId": user_id}
            if line is not None:
                entry["line"] = line
            if op in (CREATE, UPDATE, UNCHANGED):
                entry["new"] = orjson.loads(record)
            if op in (UPDATE, DELETE) and old:
                entry["old"] = orjson.loads(old)
            if op == UPDATE and old:
                entry["changed"] = sorted(
                    k for k in set(entry["new"]) | set(entry["old"]) if entry["new"].get(k) != entry["old"].get(k)
                )
            if problem:  # a duplicate's is a notice (the line that won), no problem to fix
                entry["notice" if op == DUPLICATE else "problem"] = orjson.loads(problem)
            if outcome:
                entry["outcome"] = outcome
            yield entry


def new_workspace(workdir: Path, *, mode: str, state: ShadowState, source: dict[str, Any]) -> SyncPlan:
    """An empty plan workspace for a run against ``state``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    plan_id = str(uuid.uuid4())
    plan = SyncPlan(workdir / f"plan-{plan_id}.sqlite")
    # The rows ``decide`` still has to settle (deletes; upserts inserted with no op) by kind: a small index, so
    # settling them never scans a million planned creates.
    plan.db.executescript(
        WORKSPACE_PRAGMAS + SCHEMA + INDEXES + "CREATE INDEX rows_undecided ON rows (kind) WHERE op IS NULL;"
    )
    plan.set_meta("plan_id", plan_id)
    plan.set_meta("mode", mode)
    plan.set_meta("state_generation", str(state.generation))
    plan.set_meta("state_journal", state.journal_fingerprint)
    plan.set_meta("source", orjson.dumps(source).decode())
    return plan


INSERT_ROW = (
    "INSERT INTO rows (line, user_id, kind, op, hash, record, problem, outcome, origin) VALUES (?,?,?,?,?,?,?,?,?)"
)


class PlanRow(NamedTuple):
    """One row a writer puts in the workspace (``insert_rows``): ``kind`` is ``upsert``, ``delete`` or
    ``settled`` (decided before planning, with its ``outcome``); ``op`` is left to ``engine.plan.decide`` unless
    the writer knows it; ``origin`` is JSON saying where the row came from."""

    line: int
    user_id: str
    kind: str
    op: str | None = None
    hash: str | None = None
    record: str | None = None
    problem: str | None = None
    outcome: str | None = None
    origin: str | None = None


def insert_rows(plan: SyncPlan, entries: Iterable[PlanRow]) -> None:
    """The rows, in batches."""
    db = plan.db
    db.execute("BEGIN")
    batch: list[PlanRow] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= INSERT_BATCH:
            db.executemany(INSERT_ROW, batch)
            batch.clear()
    if batch:
        db.executemany(INSERT_ROW, batch)
    db.execute("COMMIT")
