"""Planning: stream the input, validate every row, drop duplicates, compare with the shadow state.

The plan lives in a SQLite workspace rather than in memory, so planning a million-user snapshot keeps memory
flat, and the same file can be checkpointed to the object store, resumed, or split among parallel invocations.
Nothing here calls CVC.

Rules (one test each):
- a row that cannot be read or validated is rejected with its line, field and reason, and planning goes on;
- of several rows for one user id, the last wins; the earlier ones are rejected as duplicates;
- an upsert whose content hash equals the state's is unchanged and costs no call;
- in a full snapshot, users in the state with no row at all are deleted; a user whose row was rejected is NOT
  deleted (an invalid row is no evidence the person left);
- a delete (delta mode, or a row whose status says the person left) is planned whatever the state says:
  DeleteUser of an absent user is harmless, and CVC may hold users the state never saw.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync.engine.outcomes import Outcome, Problem
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.records import RecordError, content_hash, fast_user_json, parse_user

if TYPE_CHECKING:
    from cvcsync.inputs.columns import ColumnMap
    from cvcsync.inputs.readers import SourceRow
from cvcsync.engine.state import ShadowState

FULL, DELTA = "full", "delta"
MODES = (FULL, DELTA)
INSERT_BATCH = 5000
OUTCOME_SEQS = 500  # row numbers per UPDATE of outcomes (under SQLite's old limit of 999 parameters)
# The workspace is scratch: a crash loses nothing a re-plan would not rebuild, so no journal and no fsync.
WORKSPACE_PRAGMAS = (
    "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000;"
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

# Planned operations: what apply will send, in the order it sends them (deletes first free licensed capacity).
CREATE, UPDATE, UNCHANGED, DELETE, REJECT, DUPLICATE = "create", "update", "unchanged", "delete", "reject", "duplicate"
STALE = "stale"  # the state knows a newer change of this user (event time, ``clock``): writing would undo it
WRITE_OPS = (DELETE, CREATE, UPDATE)
_SETTLED = {
    UNCHANGED: Outcome.UNCHANGED.value,
    REJECT: Outcome.REJECTED.value,
    DUPLICATE: Outcome.REJECTED.value,
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


class SyncPlan:
    """A plan in its SQLite workspace: counts, pending operations, outcomes as they are recorded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    @classmethod
    def from_artefact(cls, saved: Mapping[str, Any], workdir: Path) -> SyncPlan:
        """Rebuild a plan from its dry-run artefact, so that applying it sends exactly what it lists."""
        plan = cls(workdir / f"plan-{saved['planId']}.sqlite")
        plan.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
        plan.set_meta("plan_id", str(saved["planId"]))
        plan.set_meta("mode", str(saved.get("mode", FULL)))
        plan.set_meta("state_generation", str(saved.get("stateGeneration", 0)))
        plan.set_meta("source", orjson.dumps(saved.get("source", {})).decode())
        rows = []
        for op in saved.get("operations", []):
            kind = {
                DELETE: "delete" if op.get("line") is not None else "implied",
                REJECT: "reject",
                DUPLICATE: "upsert",
            }.get(op["op"], "upsert")
            record = orjson.dumps(op["new"]) if "new" in op else None
            outcome = op.get("outcome") or _SETTLED.get(op["op"])
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
                    orjson.dumps(op["problem"]).decode() if "problem" in op else None,
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

    def op_counts(self) -> dict[str, int]:
        counts = {op: 0 for op in (CREATE, UPDATE, UNCHANGED, DELETE, REJECT, DUPLICATE)}
        for op, n in self.db.execute("SELECT op, COUNT(*) FROM rows GROUP BY op"):
            counts[op] = n
        return counts

    def rows_read(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE kind != 'implied'").fetchone()[0])

    def implied_deletions(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM rows WHERE kind = 'implied'").fetchone()[0])

    def valid_users(self) -> int:
        """Distinct users the input wants present (what the completeness gate compares)."""
        query = "SELECT COUNT(*) FROM rows WHERE op IN ('create', 'update', 'unchanged')"
        return int(self.db.execute(query).fetchone()[0])

    def outcome_counts(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for outcome, n in self.db.execute("SELECT outcome, COUNT(*) FROM rows WHERE outcome IS NOT NULL GROUP BY 1"):
            counts[outcome] = n
        return counts

    def pending_count(self, chunk: int | None = None) -> int:
        query = "SELECT COUNT(*) FROM rows WHERE outcome IS NULL"
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
        """Rejections and dead letters, in input order."""
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
        query = "SELECT COUNT(*) FROM rows WHERE outcome IN ('rejected', 'deadLettered')"
        return int(self.db.execute(query).fetchone()[0])

    def groups(self) -> frozenset[str]:
        """The distinct groupIds of the users this input wants present."""
        query = "SELECT DISTINCT json_extract(record, '$.groupId') FROM rows "
        query += "WHERE op IN ('create', 'update', 'unchanged')"
        return frozenset(str(g) for (g,) in self.db.execute(query) if g is not None)

    def in_flight(self) -> Iterator[tuple[str, str | None]]:
        """(user_id, record JSON for a create else None) of every write still to send: the state's in-flight list."""
        query = "SELECT user_id, CASE WHEN op = 'create' THEN record END FROM rows WHERE outcome IS NULL AND op IN "
        yield from self.db.execute(query + "('create', 'update', 'delete') ORDER BY seq")

    def users_named(self, user_ids: list[str]) -> dict[str, tuple[str, str] | None]:
        """Which of ``user_ids`` the plan names, with (hash, record) of the row that wins for a valid one and None
        for a user named only by invalid rows (an invalid row protects its user too)."""
        marks = ",".join("?" * len(user_ids))
        query = (
            f"SELECT user_id, hash, record FROM rows WHERE user_id IN ({marks}) "  # noqa: S608 - marks only  # nosec B608
            "ORDER BY user_id, (op IN ('create', 'update', 'unchanged', 'stale') AND record IS NOT NULL), seq"
        )
        named: dict[str, tuple[str, str] | None] = {}
        for uid, digest, record in self.db.execute(query, user_ids):
            named[uid] = (digest, record) if digest and record else named.get(uid)
        return named

    def changes_for_state(self) -> tuple[Iterator[tuple[str, str, str]], Iterator[str]]:
        """What CVC now holds because of this plan: upserts that succeeded and deletes that succeeded."""
        upserts = self.db.execute(
            "SELECT user_id, hash, record FROM rows WHERE outcome IN ('created', 'updated') ORDER BY seq"
        )
        deletes = (uid for (uid,) in self.db.execute("SELECT user_id FROM rows WHERE outcome = 'deleted'"))
        return upserts, deletes

    def operations(self) -> Iterator[dict[str, Any]]:
        """Every planned operation for the dry-run artefact: creates, updates (old -> new), deletes, rejections."""
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
            if problem:
                entry["problem"] = orjson.loads(problem)
            if outcome:
                entry["outcome"] = outcome
            yield entry


def _problem(code: str, message: str) -> str:
    return orjson.dumps({"code": code, "message": message}).decode()


MAX_NOTICES = 20


class _Notices:
    """What the mapper noticed (unmapped columns, formula-like cells, several departments): kept, few, counted."""

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}
        self.count = 0
        self.headers: set[tuple[str, ...]] = set()

    def add(self, notices: Iterable[str], position: str | None = None) -> None:
        for notice in notices:
            self.count += 1
            if len(self.seen) < MAX_NOTICES:
                self.seen[f"{position}: {notice}" if position else notice] = None


def _reject(line: int, user_id: str | None, problem: str) -> tuple[Any, ...]:
    return (line, user_id, "reject", REJECT, None, None, problem, Outcome.REJECTED.value)


def _classify(row: SourceRow, mapper: ColumnMap, defaults: Mapping[str, str], notices: _Notices) -> tuple[Any, ...]:
    """One row as (line, user_id, kind, op, hash, record, problem, outcome) by the full path, which cleans values
    up and explains every refusal."""
    if row.error:
        return _reject(row.line, None, _problem("UnreadableRecord", f"{row.position}: {row.error}"))
    keys = tuple(row.data)
    if keys not in notices.headers:
        notices.headers.add(keys)
        notices.add(mapper.for_header(keys).notices)
    try:
        mapped = mapper.apply(row.data, position=row.position)
    except RecordError as exc:  # an unknown operation value, say: about this row only
        return _reject(row.line, exc.user_id, orjson.dumps(exc.to_dict()).decode())
    except InvalidInputError as exc:
        return _reject(row.line, None, _problem(exc.code, f"{row.position}: {exc.message}"))
    if mapped.notices:
        notices.add(mapped.notices, row.position)
    if mapped.op == "delete":
        user_id = str(mapped.fields.get("userId") or "").strip()
        if user_id:
            return (row.line, user_id, "delete", None, None, None, None, None)
        return _reject(row.line, None, _problem("InvalidRecord", f"{row.position}: userId: is required to delete"))
    fast = fast_user_json(mapped.fields, defaults)
    if fast is not None:
        user_id, payload = fast
    else:
        try:
            user = parse_user(mapped.fields, position=row.position, defaults=defaults)
        except RecordError as exc:
            return _reject(row.line, exc.user_id, orjson.dumps(exc.to_dict()).decode())
        user_id, payload = user.user_id, user.to_json()
    return (row.line, user_id, "upsert", None, content_hash(payload), payload.decode(), None, None)


UPSERTS_PER_INSERT = 200  # valid rows per INSERT statement (4 parameters each: under SQLite's old 999 limit)
_INSERT_UPSERT = "INSERT INTO rows (line, user_id, kind, op, hash, record) VALUES (?, ?, 'upsert', 'create', ?, ?)"
_INSERT_UPSERTS = _INSERT_UPSERT + ", (?, ?, 'upsert', 'create', ?, ?)" * (UPSERTS_PER_INSERT - 1)
_MAX_PLAIN_HEADERS = 256


def _write_rows(plan: SyncPlan, item: PlanInput, notices: _Notices) -> None:
    """Classify every row into the workspace, in input order.

    Plain rows (``columns.PlainRows``: the common case) go straight to CreateUser JSON, are inserted
    UPSERTS_PER_INSERT to a statement, and are planned 'create' at once (``decide`` turns them into updates or
    unchanged against the state); any other row takes ``_classify``. A CSV file's rows come as cell lists
    (``RecordStream.cells``): no dict is built for a plain row. Upserts are never NULL-bound: binding None costs
    sqlite3 an adapter lookup per parameter.
    """
    from cvcsync.inputs.columns import ColumnMap, PlainRows
    from cvcsync.inputs.readers import RecordStream, SourceRow

    if item.mapper is None:
        item.mapper = ColumnMap()
    mapper, defaults, db = item.mapper, item.defaults, plan.db
    reader = item.rows if isinstance(item.rows, RecordStream) else None
    rows: Iterable[Any] = reader.cells() if reader is not None else item.rows
    plains: dict[tuple[str, ...], PlainRows | None] = {}
    header: tuple[str, ...] = ()
    csv_plain: PlainRows | None = None
    upserts: list[tuple[int, str, str, str]] = []

    def plain_rows(keys: tuple[str, ...], *, cells: bool) -> PlainRows | None:
        mapping = mapper.for_header(keys)
        if keys not in notices.headers:
            notices.headers.add(keys)
            notices.add(mapping.notices)
        try:
            found = PlainRows(mapping, defaults, keys if cells else None)
        except ValueError:  # no row of this header can be plain (no userId column, say)
            found = None
        if len(plains) >= _MAX_PLAIN_HEADERS:
            plains.clear()
        plains[keys] = found
        return found

    def flush() -> None:
        if len(upserts) == UPSERTS_PER_INSERT:
            db.execute(_INSERT_UPSERTS, [*itertools.chain.from_iterable(upserts)])
        elif upserts:
            db.executemany(_INSERT_UPSERT, upserts)
        upserts.clear()

    db.execute("BEGIN")
    for row in rows:
        if row.__class__ is tuple:  # a CSV row: (line, cells)
            line, cells = row
            if not header:  # set by the reader before the first row
                assert reader is not None and reader.header is not None
                header = reader.header
                csv_plain = plain_rows(header, cells=True)
            found = csv_plain.user_json(cells) if csv_plain is not None else None
            if found is None:
                row = SourceRow(line, dict(zip(header, cells)))  # noqa: B905 - the reader checked the cell count
        elif row.error:
            found = None
        else:
            keys = tuple(row.data)
            plain = plains[keys] if keys in plains else plain_rows(keys, cells=False)
            found = plain.user_json(row.data) if plain is not None else None
            line = row.line
        if found is not None:
            upserts.append((line, found[0], content_hash(found[1].encode()), found[1]))
            if len(upserts) == UPSERTS_PER_INSERT:
                flush()
            continue
        flush()
        db.execute(INSERT_ROW, (*_classify(row, mapper, defaults, notices), None))
    flush()
    db.execute("COMMIT")


def new_workspace(workdir: Path, *, mode: str, state: ShadowState, source: dict[str, Any]) -> SyncPlan:
    """An empty plan workspace for a run against ``state``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    plan_id = str(uuid.uuid4())
    plan = SyncPlan(workdir / f"plan-{plan_id}.sqlite")
    # The rows ``decide`` still has to settle (deletes; upserts inserted with no op) by kind: a small index, so
    # settling them never scans a million planned creates.
    plan.db.executescript(WORKSPACE_PRAGMAS + SCHEMA + "CREATE INDEX rows_undecided ON rows (kind) WHERE op IS NULL;")
    plan.set_meta("plan_id", plan_id)
    plan.set_meta("mode", mode)
    plan.set_meta("state_generation", str(state.generation))
    plan.set_meta("source", orjson.dumps(source).decode())
    return plan


INSERT_ROW = (
    "INSERT INTO rows (line, user_id, kind, op, hash, record, problem, outcome, origin) VALUES (?,?,?,?,?,?,?,?,?)"
)


def insert_rows(plan: SyncPlan, entries: Iterable[tuple[Any, ...]]) -> None:
    """Rows as (line, user_id, kind, op, hash, record, problem, outcome, origin), in batches."""
    db = plan.db
    db.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= INSERT_BATCH:
            db.executemany(INSERT_ROW, batch)
            batch.clear()
    if batch:
        db.executemany(INSERT_ROW, batch)
    db.execute("COMMIT")


def decide(plan: SyncPlan, state: ShadowState, *, as_of: str | None = None) -> None:
    """Each inserted row's operation against the state: duplicates, creates, updates, unchanged, deletes and, for
    a full snapshot, the implied deletions of users the input no longer mentions.

    ``as_of``: the input's event time. A user whose last applied change is newer (a queue or HTTP change after the
    export was made) is ``stale`` here, written neither back nor away: one ordering rule for every writer."""
    db = plan.db
    # Indexed after the inserts (faster than keeping an index up to date row by row); with the kind, the duplicate
    # check reads the index alone.
    db.execute("CREATE INDEX rows_user ON rows (user_id, kind)")
    db.execute("ATTACH DATABASE ? AS state", (str(state.path),))
    db.execute("BEGIN")
    # The last row of a user wins; earlier ones are duplicates (rejected, with the line that superseded them).
    # Users with one row (nearly all) are ruled out by the index alone; the last rows of the others go to a small
    # table, which the update reads by user (an UPDATE ... FROM would first copy every duplicate row in memory).
    db.execute("CREATE TEMP TABLE last_rows (user_id TEXT PRIMARY KEY, seq INTEGER, line INTEGER) WITHOUT ROWID")
    db.execute(
        """
        INSERT INTO last_rows SELECT user_id, MAX(seq), MAX(line) FROM rows
        WHERE kind IN ('upsert', 'delete') AND user_id IN (SELECT user_id FROM rows WHERE kind IN ('upsert', 'delete')
                                                           GROUP BY user_id HAVING COUNT(*) > 1)
        GROUP BY user_id
        """
    )
    if db.execute("SELECT 1 FROM last_rows LIMIT 1").fetchone() is not None:
        db.execute(
            """
            UPDATE rows SET op = 'duplicate', outcome = 'rejected',
                problem = json_object('code', 'DuplicateUserId',
                                      'message', 'line ' || rows.line || ': user ' || quote(rows.user_id)
                                                 || ' appears again on line '
                                                 || (SELECT line FROM last_rows AS l WHERE l.user_id = rows.user_id)
                                                 || ', which wins')
            WHERE seq IN (SELECT r.seq FROM last_rows AS l JOIN rows AS r ON r.user_id = l.user_id
                          AND r.kind IN ('upsert', 'delete') AND r.seq < l.seq)
            """
        )
    db.execute("DROP TABLE last_rows")
    db.execute("UPDATE rows SET op = 'create' WHERE kind = 'upsert' AND op IS NULL")
    if db.execute("SELECT 1 FROM state.users LIMIT 1").fetchone() is not None:  # a first sync compares nothing
        db.execute(
            """
            UPDATE rows SET op = CASE WHEN s.hash = rows.hash THEN 'unchanged' ELSE 'update' END,
                            outcome = CASE WHEN s.hash = rows.hash THEN 'unchanged' ELSE NULL END,
                            old = s.record
            FROM state.users AS s WHERE s.user_id = rows.user_id AND rows.op = 'create'
            """
        )
    db.execute(
        "UPDATE rows SET op = 'delete', old = (SELECT s.record FROM state.users AS s WHERE s.user_id = rows.user_id) "
        "WHERE kind = 'delete' AND op IS NULL"
    )
    if plan.mode == FULL:
        db.execute(
            """
            INSERT INTO rows (line, user_id, kind, op, old)
            SELECT NULL, s.user_id, 'implied', 'delete', s.record FROM state.users AS s
            WHERE NOT EXISTS (SELECT 1 FROM rows AS r WHERE r.user_id = s.user_id)
            ORDER BY s.user_id
            """
        )
    if as_of is not None:  # one ordering rule (``engine.settle``): a newer change, or a newer full snapshot, wins
        db.execute(
            "UPDATE rows SET op = 'stale', outcome = 'stale' WHERE op IN ('create', 'update', 'delete') "
            "AND (user_id IN (SELECT user_id FROM state.changes WHERE occurred_at > ?) "
            "OR ? < (SELECT COALESCE(MAX(value), '') FROM state.meta WHERE key = 'snapshot_at'))",
            (as_of, as_of),
        )
    db.execute("COMMIT")
    db.execute("DETACH DATABASE state")


def build_plan(item: PlanInput, state: ShadowState, workdir: Path) -> SyncPlan:
    """Stream the input into a new plan workspace and decide every row's operation against ``state``."""
    plan = new_workspace(workdir, mode=item.mode, state=state, source=item.source)
    notices = _Notices()
    _write_rows(plan, item, notices)
    plan.set_meta("notices", orjson.dumps({"count": notices.count, "first": list(notices.seen)}).decode())
    decide(plan, state, as_of=item.as_of)
    return plan
