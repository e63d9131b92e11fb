"""Planning: stream the input, validate every row, settle repeated user ids, compare with the shadow state.

The plan lives in a SQLite workspace rather than in memory, so planning a million-user snapshot keeps memory
flat, and the same file can be checkpointed to the object store, resumed, or split among parallel invocations.
Nothing here calls CVC.

Rules (one test each):
- a row that cannot be read or validated is rejected with its line, field and reason, and planning goes on;
- of several rows for one user id naming one person (the same userName; other fields, or a delete in between,
  may differ), the last wins; the earlier ones are duplicates: a notice, not a problem, never sent;
- a user id whose rows name different people (two people, or ids a spreadsheet mangled alike) is refused on every
  one of its rows (ConflictingUserId, naming the lines and the names): no row can be told to be the right person;
- an upsert whose content hash equals the state's is unchanged and costs no call;
- in a full snapshot, users in the state with no row at all are deleted; a user whose row was rejected (invalid,
  or in conflict) is NOT deleted (a refused row is no evidence the person left);
- a delete in a delta is planned whatever the state says: DeleteUser of an absent user is harmless, and CVC may
  hold users the state never saw; in a full snapshot a departed row (its status says the person left) is an
  absence: a synced user is deleted (through the gates), one the state does not hold needs nothing (``unchanged``),
  so an unchanged roster that still lists its leavers changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync.engine.outcomes import Outcome
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.records import RecordError, content_hash, fast_user_json, parse_user

if TYPE_CHECKING:
    from cvcsync.inputs.columns import ColumnMap
    from cvcsync.inputs.readers import SourceRow
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import FULL, INSERT_ROW, REJECT, UNCHANGED, PlanInput, SyncPlan, new_workspace


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
        if user.notices:  # what the clean-up changed and says (a line break in a name replaced, say)
            notices.add(user.notices, row.position)
        user_id, payload = user.user_id, user.to_json()
    return (row.line, user_id, "upsert", None, content_hash(payload), payload.decode(), None, None)


UPSERTS_PER_INSERT = 200  # valid rows per INSERT statement (4 parameters each: under SQLite's old 999 limit)


def _insert_compared(rows: int) -> str:
    """INSERT of ``rows`` plain upserts (line, user id, hash, record), each compared with the state as it goes in:
    create, update (with the state's record as ``old``) or unchanged (settled at once). Deciding here writes each row
    once; an UPDATE in ``decide`` rewrote every row, and the unchanged ones would have entered ``rows_of_note`` only to
    leave it again. The VALUES drive the LEFT JOIN, so the rows go in in input order."""
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO rows (line, user_id, kind, op, hash, record, outcome, old) "  # noqa: S608  # nosec B608 - constants
        "SELECT v.column1, v.column2, 'upsert', "
        "CASE WHEN s.hash IS NULL THEN 'create' WHEN s.hash = v.column3 THEN 'unchanged' ELSE 'update' END, "
        "v.column3, v.column4, CASE WHEN s.hash = v.column3 THEN 'unchanged' END, "
        "CASE WHEN s.hash <> v.column3 THEN s.record END "
        f"FROM (VALUES {values}) AS v LEFT JOIN state.users AS s ON s.user_id = v.column2"
    )


_INSERT_UPSERT = _insert_compared(1)
_INSERT_UPSERTS = _insert_compared(UPSERTS_PER_INSERT)
_MAX_PLAIN_HEADERS = 256


def _write_rows(plan: SyncPlan, item: PlanInput, notices: _Notices) -> None:
    """Classify every row into the workspace, in input order.

    Plain rows (``columns.PlainRows``: the common case) go straight to CreateUser JSON, are inserted
    UPSERTS_PER_INSERT to a statement, and are compared with the state (attached as ``state``) as they go in
    (``_insert_compared``); any other row takes ``_classify`` and is compared by ``decide``. A CSV file's or a
    sheet's rows come as cell lists (``RecordStream.cells``): no dict is built for a plain row. Upserts are never
    NULL-bound: binding None costs sqlite3 an adapter lookup per parameter.

    The reader finds a table's header by the columns this run's column map would map, and the rows it skipped (title
    rows above the header, summary rows) join the run's notices: those above the header before the header's own.
    """
    from cvcsync.inputs.columns import ColumnMap, PlainRows
    from cvcsync.inputs.readers import RecordStream, SourceRow
    from cvcsync.inputs.table_shape import column_recogniser

    if item.mapper is None:
        item.mapper = ColumnMap()
    mapper, defaults, db = item.mapper, item.defaults, plan.db
    reader = item.rows if isinstance(item.rows, RecordStream) else None
    if reader is not None:
        reader.recogniser = column_recogniser(mapper)
    rows: Iterable[Any] = reader.cells() if reader is not None else item.rows
    reader_notices = 0  # how many of the reader's notices are already added
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
                notices.add(reader.notices)
                reader_notices = len(reader.notices)
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
    if reader is not None:
        notices.add(reader.notices[reader_notices:])


def decide(plan: SyncPlan, state: ShadowState, *, as_of: str | None = None, notices: _Notices | None = None) -> None:
    """Each inserted row's operation against the state: conflicts, duplicates, creates, updates, unchanged, deletes
    and, for a full snapshot, the implied deletions of users the input no longer mentions. Duplicates are no
    problem (nothing to fix: the last row is what the file meant) but each is worth a notice, in ``notices``.

    ``as_of``: the input's event time. A user whose last applied change is newer (a queue or HTTP change after the
    export was made) is ``stale`` here, written neither back nor away: one ordering rule for every writer."""
    db = plan.db
    # Indexed after the inserts (faster than keeping an index up to date row by row); with the kind, the duplicate
    # check reads the index alone.
    db.execute("CREATE INDEX rows_user ON rows (user_id, kind)")
    attach = not _attached(plan)  # ``build_plan`` attached it for the inserts
    if attach:
        db.execute("ATTACH DATABASE ? AS state", (str(state.path),))
    db.execute("BEGIN")
    # Users with one row (nearly all) are ruled out by the index alone; the others go to a small table with their
    # last row and how many different people (userNames) their upserts name, which the updates read by user (an
    # UPDATE ... FROM would first copy every duplicate row in memory; a plain JOIN would scan the whole index).
    db.execute(
        "CREATE TEMP TABLE last_rows (user_id TEXT PRIMARY KEY, seq INTEGER, line INTEGER, people INTEGER) "
        "WITHOUT ROWID"
    )
    db.execute(
        """
        INSERT INTO last_rows SELECT user_id, MAX(seq), MAX(line), COUNT(DISTINCT json_extract(record, '$.userName'))
        FROM rows
        WHERE kind IN ('upsert', 'delete') AND user_id IN (SELECT user_id FROM rows WHERE kind IN ('upsert', 'delete')
                                                           GROUP BY user_id HAVING COUNT(*) > 1)
        GROUP BY user_id
        """
    )
    if db.execute("SELECT 1 FROM last_rows LIMIT 1").fetchone() is not None:
        _refuse_conflicts(plan)
        # The same person again (a status change, a corrected phone): the last row wins, earlier ones are
        # duplicates, settled with a notice naming the line that won, never sent.
        duplicates = db.execute(
            """
            UPDATE rows SET op = 'duplicate', outcome = 'duplicate', old = NULL,
                problem = json_object('code', 'DuplicateUserId',
                                      'message', 'line ' || rows.line || ': user ' || quote(rows.user_id)
                                                 || ' appears again on line '
                                                 || (SELECT line FROM last_rows AS l WHERE l.user_id = rows.user_id)
                                                 || ', which wins')
            WHERE seq IN (SELECT r.seq FROM last_rows AS l CROSS JOIN rows AS r ON r.user_id = l.user_id
                          AND r.kind IN ('upsert', 'delete') AND r.seq < l.seq)
            """
        ).rowcount
        if notices is not None and duplicates:
            _duplicate_notices(plan, notices, duplicates)
    db.execute("DROP TABLE last_rows")
    # The rows not compared as they went in (``_classify``'s, a change run's), through the index of undecided rows.
    if db.execute("SELECT 1 FROM state.users LIMIT 1").fetchone() is not None:  # a first sync compares nothing
        db.execute(
            """
            UPDATE rows SET op = CASE WHEN s.hash = rows.hash THEN 'unchanged' ELSE 'update' END,
                            outcome = CASE WHEN s.hash = rows.hash THEN 'unchanged' ELSE NULL END,
                            old = CASE WHEN s.hash = rows.hash THEN NULL ELSE s.record END
            FROM state.users AS s WHERE s.user_id = rows.user_id AND rows.kind = 'upsert' AND rows.op IS NULL
            """
        )
    db.execute("UPDATE rows SET op = 'create' WHERE kind = 'upsert' AND op IS NULL")
    if plan.mode == FULL:
        # A full snapshot's departed row (its status says the person left) is an absence: a user the state holds is
        # deleted (through the gates, as an implied deletion would be), one it does not hold needs nothing. Deleting
        # those on every upload would send a DeleteUser for each leaver still listed, every time, and count them all
        # against the deletion gate, refusing an unchanged roster.
        db.execute(
            "UPDATE rows SET op = 'absent', outcome = 'unchanged' WHERE kind = 'delete' AND op IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM state.users AS s WHERE s.user_id = rows.user_id)"
        )
    db.execute(
        "UPDATE rows SET op = 'delete', old = (SELECT s.record FROM state.users AS s WHERE s.user_id = rows.user_id) "
        "WHERE kind = 'delete' AND op IS NULL"
    )
    if plan.mode == FULL and not _names_every_synced_user(plan):
        db.execute(
            """
            INSERT INTO rows (line, user_id, kind, op, old)
            SELECT NULL, s.user_id, 'implied', 'delete', s.record FROM state.users AS s
            WHERE NOT EXISTS (SELECT 1 FROM rows AS r WHERE r.user_id = s.user_id)
            ORDER BY s.user_id
            """
        )
    if as_of is not None:  # one ordering rule (``engine.settle``): a newer change, or a newer full snapshot, wins
        newest = db.execute("SELECT COALESCE(MAX(value), '') FROM state.meta WHERE key = 'snapshot_at'").fetchone()[0]
        writes = "op IN ('create', 'update', 'delete')"
        if as_of < newest:  # a newer full snapshot was accepted: every write of this input is stale
            db.execute(f"UPDATE rows SET op = 'stale', outcome = 'stale' WHERE {writes}")  # noqa: S608  # nosec B608
        else:  # the users changed after it, found through rows_user (not a scan of every row)
            db.execute(
                "UPDATE rows SET op = 'stale', outcome = 'stale' "  # noqa: S608  # nosec B608 - a constant
                f"WHERE user_id IN (SELECT user_id FROM state.changes WHERE occurred_at > ?) AND {writes}",
                (as_of,),
            )
    db.execute("COMMIT")
    if attach:
        db.execute("DETACH DATABASE state")


def _attached(plan: SyncPlan) -> bool:
    return any(name == "state" for _, name, _ in plan.db.execute("PRAGMA database_list"))


def _names_every_synced_user(plan: SyncPlan) -> bool:
    """Whether every user the state holds has a row, so that a full snapshot implies no deletion, known from two counts
    rather than a scan of the state: the unchanged upserts are users the state holds (their hash is the state's), one
    row each (``decide`` has made every earlier row of a user a duplicate, or refused them all), so as many of them as
    the state has users are all of them. Called inside ``decide``'s transaction, before stale rows are marked."""
    unchanged = plan.tally().rows.get(("upsert", UNCHANGED, Outcome.UNCHANGED.value), 0)
    return bool(unchanged == plan.db.execute("SELECT COUNT(*) FROM state.users").fetchone()[0])


NAMED_IN_CONFLICT = 5  # lines, and names, a conflict message lists before "and N more"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:NAMED_IN_CONFLICT])
    return shown + (f" and {len(items) - NAMED_IN_CONFLICT} more" if len(items) > NAMED_IN_CONFLICT else "")


def _quoted(text: str) -> str:
    """As SQLite's ``quote()`` writes it (the duplicate notices use that): one quoting in every message."""
    return "'" + text.replace("'", "''") + "'"


def _refuse_conflicts(plan: SyncPlan) -> None:
    """A user id whose upserts name different people (``last_rows.people > 1``: two people given one id by hand,
    or ids a spreadsheet mangled alike) is refused on every one of its rows: no row can be told to be the right
    person, and letting the last one win would overwrite one person with another. The rows keep their user id,
    so a full snapshot does not imply the user's deletion either. Called inside ``decide``'s transaction."""
    db = plan.db
    # CROSS JOIN: the few users in last_rows drive the join (SQLite would rather scan the whole index of rows).
    found = db.execute(
        "SELECT r.user_id, r.seq, r.line, json_extract(r.record, '$.userName') FROM last_rows AS l "
        "CROSS JOIN rows AS r ON r.user_id = l.user_id AND r.kind IN ('upsert', 'delete') WHERE l.people > 1 "
        "ORDER BY r.user_id, r.seq"
    ).fetchall()
    if not found:
        return
    refusals: list[tuple[str, int]] = []
    for user_id, group in itertools.groupby(found, key=lambda row: row[0]):
        rows_of_user = list(group)
        names = list(dict.fromkeys(str(name) for *_, name in rows_of_user if name is not None))
        people, nobody = ("two people", "neither") if len(names) == 2 else (f"{len(names)} people", "none of them")
        detail = (
            f"{people} share user id {_quoted(user_id)} (lines {_listed([str(r[2]) for r in rows_of_user])}: "
            f"{_listed([_quoted(name) for name in names])}): fix the export; {nobody} is synced"
        )
        refusals.extend(
            (_problem("ConflictingUserId", f"line {line}: {detail}"), seq) for _, seq, line, _ in rows_of_user
        )
    db.executemany(
        "UPDATE rows SET op = 'reject', outcome = 'rejected', problem = ?, old = NULL WHERE seq = ?", refusals
    )
    db.execute("DELETE FROM last_rows WHERE people > 1")


def _duplicate_notices(plan: SyncPlan, notices: _Notices, duplicates: int) -> None:
    """The first few duplicates' notices, found through ``last_rows`` (a scan for them would read every row); the
    others are counted only."""
    first = plan.db.execute(
        "SELECT json_extract(r.problem, '$.message') FROM last_rows AS l CROSS JOIN rows AS r "
        "ON r.user_id = l.user_id AND r.kind IN ('upsert', 'delete') AND r.seq < l.seq ORDER BY r.seq LIMIT ?",
        (MAX_NOTICES,),
    ).fetchall()
    notices.add(str(message) for (message,) in first)
    notices.count += duplicates - len(first)


def build_plan(item: PlanInput, state: ShadowState, workdir: Path) -> SyncPlan:
    """Stream the input into a new plan workspace and decide every row's operation against ``state``."""
    plan = new_workspace(workdir, mode=item.mode, state=state, source=item.source)
    notices = _Notices()
    # Attached for the inserts too (``_insert_compared``). Not detached if reading fails: the plan is dropped.
    plan.db.execute("ATTACH DATABASE ? AS state", (str(state.path),))
    _write_rows(plan, item, notices)
    decide(plan, state, as_of=item.as_of, notices=notices)
    plan.db.execute("DETACH DATABASE state")
    plan.set_meta("notices", orjson.dumps({"count": notices.count, "first": list(notices.seen)}).decode())
    return plan
