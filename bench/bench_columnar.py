"""Columnar engines (DuckDB, Polars, pyarrow) for the plan workspace, measured next to our planner in one run.

Issue 15 asks whether an embedded analytical engine should plan exports (docs/architecture.md, "Planning engine").
Each candidate does, in a fresh process of ``--python`` (``$CVCSYNC_COLUMNAR_PYTHON``: a throwaway venv that holds
them; the project never installs them), what ``build_plan`` does for a plain row, on a 1M-row snapshot of
bench_sync's shape: read the CSV, three validity checks (text with nothing JSON escapes; ids; mobile and e-mail
shapes: a conservative subset of ``PlainRows``, anything else would take our full path), the CreateUser JSON between
constant pieces, a hash, and the diff against a 1M-user SQLite state (1 in 100 users changed, 1% new, 1% gone).
Digests over every row's hash (and over md5 of every record) prove the JSON and hashes byte-identical to ours.

Tasks (wall and CPU seconds, peak RSS from VmHWM, best wall of ``--repeats`` fresh processes): ``read`` (every
column materialised); ``plan`` (blake2b-16 in Python: no engine has blake2b); ``plan-md5`` (DuckDB's own md5: a
change of content hash, so a state migration); ``diff``; ``workspace`` (DuckDB: the diff written into a SQLite plan
workspace, where apply reads it); ``gbk`` (the same rows in GBK); ``xlsx`` (``--xlsx-rows`` rows of a workbook).
Ours: bare ``csv.reader``, ``build_plan`` against an empty and the 1M state, GBK, ``transcode`` (GBK to UTF-8 in a
stream, what an engine reading UTF-8 only needs first) and .xlsx. Also the import time of each engine (median of
fresh processes less ``python -c pass``), wheel sizes from ``--wheels`` (``pip download`` folders named
``cp310-x86_64``...), and where an unchanged re-upload's time goes (``--profile-users``; ``--profile-only`` re-measures
just that into the last results): a SIGALRM sampler over ``runs.export.sync_source`` against a local state.

A candidate not installed in ``--python`` is skipped and said so; so are DuckDB's extension packages
(``duckdb-extension-encodings``, ``-excel``, ``-sqlite-scanner``). Figures go to bench/results/bench_columnar.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson

ENGINES = {"duckdb": "duckdb", "polars": "polars", "pyarrow": "pyarrow.csv, pyarrow.compute"}
TASKS = {
    "ours": ("csv", "plan", "diff", "gbk", "transcode", "xlsx"),
    "duckdb": ("read", "plan", "plan-md5", "diff", "workspace", "gbk", "xlsx"),
    "polars": ("read", "plan", "diff", "gbk", "xlsx"),
    "pyarrow": ("read", "plan", "diff", "gbk", "xlsx"),
}
PROBED = (
    "duckdb",
    "polars",
    "pyarrow",
    "fastexcel",
    "numpy",
    *(f"duckdb-extension-{e}" for e in ("encodings", "excel", "sqlite-scanner")),
)
HEADER = ["userId", "userName", "groupId", "groupName", "departId", "departName", "userEmail", "userMobile"]
OPTIONAL = HEADER[4:]
SEP = "\u241f"  # records.PLAIN_SEPARATOR
# The three checks (regexes both RE2 and Rust's regex accept): joined values with no control, format, separator or
# space character and nothing JSON escapes; ids printable ASCII not starting like Excel's text mark or a formula,
# departName alphanumeric; a mobile of 11 digits and an e-mail of printable ASCII.
TEXT_BAD = r'[\p{C}\p{Z}"\\]'
CODE = r"^[!-&(-<>-~][!-~]*$"
CHECKS = {  # field: (pattern, most characters); counted repetitions of Unicode classes are slow in RE2
    "userId": (CODE, 64),
    "groupId": (CODE, 64),
    "departId": (r"^[0-9A-Za-z]+$", 64),
    "userName": (r"^.+$", 128),
    "groupName": (r"^.+$", 128),
    "departName": (r"^[\p{L}\p{N}]+$", 256),
    "userEmail": (r"^[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+$", 128),
    "userMobile": (r"^[0-9]{11}$", 11),
}
REQUIRED = ("userId", "userName", "groupId", "groupName")
WORKSPACE_ROWS = (  # engine.workspace.SCHEMA's rows table
    "CREATE TABLE rows (seq INTEGER PRIMARY KEY, line INTEGER, user_id TEXT, kind TEXT NOT NULL, op TEXT, hash TEXT, "
    "record TEXT, old TEXT, problem TEXT, outcome TEXT, error TEXT, chunk INTEGER, origin TEXT)"
)
CHANGED_EVERY, MISSING_SHARE = 100, 0.01  # the diff's state: 1 in 100 users changed, the last 1% of rows new


def write_files(folder: Path, rows: int, xlsx_rows: int) -> dict[str, Path]:
    """The snapshot as UTF-8 and GBK CSV, and its first ``xlsx_rows`` rows as a workbook (mobiles as number cells)."""
    paths = {"csv": folder / "snapshot.csv", "gbk": folder / "snapshot-gbk.csv", "xlsx": folder / "snapshot.xlsx"}
    with (
        paths["csv"].open("w", newline="", encoding="utf-8") as utf8,
        paths["gbk"].open("w", newline="", encoding="gbk") as gbk,
    ):
        writers = [csv.writer(utf8), csv.writer(gbk)]
        for writer in writers:
            writer.writerow(HEADER)
        for row in snapshot_rows(rows):
            for writer in writers:
                writer.writerow(row)
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("users")
    sheet.append(HEADER)
    for row in snapshot_rows(xlsx_rows):
        mobile = WriteOnlyCell(sheet, value=int(row[-1]))
        mobile.number_format = "0"
        sheet.append([*row[:-1], mobile])
    book.save(paths["xlsx"])
    return paths


def snapshot_rows(rows: int) -> Any:
    for i in range(rows):
        yield [
            f"u{i:07d}",
            f"用户{i}",
            "88",
            "示例科技",
            f"D{i % 50}",
            f"部门{i % 50}",
            f"u{i}@example.com",
            f"138{i:08d}",
        ]


# --- the children: one task in a fresh process, one JSON line out ---------------------------------------------------


def digest(hashes: Any) -> str:
    """Order-free digest of hex hashes: the sum of their first 15 hex digits (the engines compute it the same)."""
    return str(sum(int(h[:15], 16) for h in hashes))


def ours(task: str, paths: dict[str, Path], state: Path, work: Path) -> dict[str, Any]:
    import hashlib

    from cvcsync.engine.plan import build_plan
    from cvcsync.engine.state import ShadowState
    from cvcsync.engine.workspace import PlanInput
    from cvcsync.inputs.readers import read_records

    if task == "csv":
        with paths["csv"].open(newline="", encoding="utf-8") as stream:
            return {"rows": sum(1 for _ in csv.reader(stream)) - 1}
    if task == "xlsx":
        with paths["xlsx"].open("rb") as stream:
            return {"rows": sum(1 for _ in read_records(stream, name="snapshot.xlsx"))}
    if task == "transcode":
        transcode(paths["gbk"], work / "utf8.csv")
        return {"rows": 0, "mb": round((work / "utf8.csv").stat().st_size / 1e6, 1)}
    path = paths["gbk" if task == "gbk" else "csv"]
    known = ShadowState(state if task == "diff" else work / "empty.sqlite")
    with path.open("rb") as stream:
        plan = build_plan(PlanInput(read_records(stream, name=path.name), "full"), known, work)
    timed, peak = time.perf_counter(), peak_mb()  # the digests below are no part of planning
    out = {"rows": plan.rows_read(), "ops": {op: n for op, n in plan.op_counts().items() if n}, "peakMb": peak}
    out["implied"] = plan.implied_deletions()
    query = "SELECT hash, record FROM rows WHERE kind = 'upsert'"
    out["digest"] = digest(h for h, _ in plan.db.execute(query))
    out["md5Digest"] = digest(hashlib.md5(r.encode()).hexdigest() for _, r in plan.db.execute(query))
    out["untimed"] = time.perf_counter() - timed
    return out


def transcode(source: Path, target: Path) -> None:
    """GBK (as GB18030) to UTF-8 in 1 MiB chunks: what an engine that reads UTF-8 only would need first."""
    import codecs

    decoder = codecs.getincrementaldecoder("gb18030")()
    with source.open("rb") as raw, target.open("w", encoding="utf-8", newline="") as text:
        while chunk := raw.read(1 << 20):
            text.write(decoder.decode(chunk))
        text.write(decoder.decode(b"", final=True))


def peak_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def make_state(paths: dict[str, Path], state: Path, work: Path) -> dict[str, Any]:
    """The diff's state, by our planner: the first 99% of the snapshot's users, 1 in 100 changed, plus as many users
    the snapshot lacks (implied deletes)."""
    from cvcsync.engine.plan import build_plan
    from cvcsync.engine.state import ShadowState
    from cvcsync.engine.workspace import PlanInput
    from cvcsync.inputs.readers import read_records

    with paths["csv"].open("rb") as stream:
        plan = build_plan(
            PlanInput(read_records(stream, name="snapshot.csv"), "full"), ShadowState(work / "e.sqlite"), work
        )
    rows = plan.db.execute("SELECT user_id, hash, record FROM rows WHERE kind = 'upsert' ORDER BY seq").fetchall()
    kept = rows[: int(len(rows) * (1 - MISSING_SHARE))]
    users = [changed(u, r) if n % CHANGED_EVERY == 0 else (u, h, r) for n, (u, h, r) in enumerate(kept)]
    users += [(f"gone{n:07d}", h, r) for n, (_, h, r) in enumerate(rows[len(kept) :])]
    target = ShadowState(state)
    target.db.execute("BEGIN")
    target.upsert(users)
    target.db.execute("COMMIT")
    return {"rows": len(users)}


def changed(user_id: str, record: str) -> tuple[str, str, str]:
    """A user as the state would hold them before a rename."""
    from cvcsync.inputs.records import content_hash

    record = record.replace('"userName":"', '"userName":"旧', 1)
    return user_id, content_hash(record.encode()), record


def duckdb_task(task: str, paths: dict[str, Path], state: Path, work: Path, memory: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = 2; SET memory_limit = '{memory}'; SET temp_directory = '{work}'")
    extensions = duckdb_extensions()
    encoding = "utf-8"
    if task == "gbk":
        if "encodings" not in extensions:
            return {"skipped": "GBK needs the encodings extension (duckdb-extension-encodings): not installed"}
        con.execute(f"LOAD '{extensions['encodings']}'")
        encoding = "gb18030"
    if task == "xlsx":
        if "excel" not in extensions:
            return {"skipped": "needs the excel extension (duckdb-extension-excel): not installed"}
        con.execute(f"LOAD '{extensions['excel']}'")
        return {"rows": con.sql(f"SELECT count(*) FROM read_xlsx('{paths['xlsx']}', all_varchar = true)").fetchone()[0]}
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in HEADER)
    path = paths["gbk" if task == "gbk" else "csv"]
    source = f"read_csv('{path}', header = true, auto_detect = false, columns = {{{columns}}}, encoding = '{encoding}')"
    if task == "read":
        lengths = " + ".join(f"coalesce(length({name}), 0)" for name in HEADER)
        return {"rows": con.sql(f"SELECT count(*), sum({lengths}) FROM {source}").fetchone()[0]}
    value = {name: f"coalesce({name}, '')" for name in HEADER}
    joined = f" || '{SEP}' || ".join(value.values())

    def shaped(name: str) -> str:
        pattern, longest = CHECKS[name]
        return f"(regexp_matches({name}, '{pattern}') AND length({name}) <= {longest})"

    checks = [shaped(name) if name in REQUIRED else f"({value[name]} = '' OR {shaped(name)})" for name in HEADER]
    plain = " AND ".join([f"NOT regexp_matches({joined}, '{TEXT_BAD}')", *checks])
    record = (
        "'{' || "
        + " || ".join(f"'\"{name}\":\"' || {name} || '\",'" for name in REQUIRED)
        + " || "
        + " || ".join(
            f"CASE WHEN {value[name]} = '' THEN '' ELSE '\"{name}\":\"' || {name} || '\",' END" for name in OPTIONAL
        )
    )
    record = f"rtrim({record}, ',') || '}}'"
    rows = f"SELECT userId AS user_id, {plain} AS plain, {record} AS record FROM {source}"
    if task in ("plan-md5", "diff", "workspace"):
        sums = "sum(('0x' || left(md5(record), 15))::UBIGINT)"
        if task == "plan-md5":
            got = con.sql(f"SELECT count(*), sum(plain::INT), {sums} FROM ({rows})").fetchone()
            return {"rows": got[0], "plain": got[1], "md5Digest": str(got[2])}
        if "sqlite_scanner" not in extensions:
            return {
                "skipped": "the state is SQLite: needs the sqlite_scanner extension (duckdb-extension-sqlite-scanner)"
            }
        con.execute(f"LOAD '{extensions['sqlite_scanner']}'")
        con.execute(f"ATTACH '{state}' AS state (TYPE sqlite, READ_ONLY)")
        # After a migration the state's hash is md5(record): computed here from the state's records.
        if task == "workspace":
            return duckdb_workspace(con, rows, work)
        counts = con.sql(
            f"""WITH input AS (SELECT user_id, plain, md5(record) AS hash FROM ({rows})),
                 known AS (SELECT user_id, md5(record) AS hash FROM state.users)
            SELECT CASE WHEN i.user_id IS NULL THEN 'implied' WHEN NOT i.plain THEN 'fullPath'
                        WHEN k.user_id IS NULL THEN 'create' WHEN k.hash = i.hash THEN 'unchanged'
                        ELSE 'update' END AS op, count(*)
            FROM input AS i FULL OUTER JOIN known AS k ON i.user_id = k.user_id GROUP BY op"""
        ).fetchall()
        ops = dict(counts)
        implied = ops.pop("implied", 0)
        return {"rows": sum(ops.values()), "ops": ops, "implied": implied}
    import hashlib

    cursor = con.execute(f"SELECT plain, record FROM ({rows})")  # blake2b: out to Python, row by row
    total = plain_rows = 0
    acc = 0
    blake = hashlib.blake2b
    while batch := cursor.fetchmany(100_000):
        total += len(batch)
        for ok, rec in batch:
            if ok:
                plain_rows += 1
                acc += int(blake(rec.encode(), digest_size=16).hexdigest()[:15], 16)
    return {"rows": total, "plain": plain_rows, "digest": str(acc)}


def duckdb_workspace(con: Any, rows: str, work: Path) -> dict[str, Any]:
    """The diff written where apply and the reports read it: every row, and the implied deletes, into a SQLite plan
    workspace (``rows`` as ``engine.workspace`` has it) through the sqlite_scanner extension."""
    import sqlite3

    workspace = work / "plan.sqlite"
    sqlite3.connect(workspace).execute(WORKSPACE_ROWS).connection.close()
    con.execute(f"ATTACH '{workspace}' AS ws (TYPE sqlite)")
    con.execute(  # one join gives the rows and the implied deletes (users of the state the input lacks)
        f"""INSERT INTO ws.rows (line, user_id, kind, op, hash, record, old, outcome)
        SELECT i.line, coalesce(i.user_id, k.user_id), CASE WHEN i.user_id IS NULL THEN 'implied' ELSE 'upsert' END,
               CASE WHEN i.user_id IS NULL THEN 'delete' WHEN k.user_id IS NULL THEN 'create'
                    WHEN k.hash = i.hash THEN 'unchanged' ELSE 'update' END, i.hash, i.record,
               CASE WHEN i.user_id IS NULL OR k.hash <> i.hash THEN k.record END,
               CASE WHEN k.hash = i.hash THEN 'unchanged' END
        FROM (SELECT row_number() OVER () + 1 AS line, user_id, record, md5(record) AS hash FROM ({rows})) AS i
        FULL OUTER JOIN (SELECT user_id, record, md5(record) AS hash FROM state.users) AS k ON i.user_id = k.user_id"""
    )
    con.close()
    counts = dict(sqlite3.connect(workspace).execute("SELECT op, COUNT(*) FROM rows GROUP BY op").fetchall())
    implied = counts.pop("delete", 0)
    return {"rows": sum(counts.values()), "ops": counts, "implied": implied}


def duckdb_extensions() -> dict[str, str]:
    """The extension files of the ``duckdb-extension-*`` packages installed beside duckdb, by extension name."""
    import importlib.util

    found = {}
    for name in ("encodings", "excel", "sqlite_scanner"):
        spec = importlib.util.find_spec(f"duckdb_extension_{name}")
        if spec is not None and spec.submodule_search_locations:
            files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("extensions/*/*.duckdb_extension"))
            if files:
                found[name] = str(files[0])
    return found


def frame_task(engine: str, task: str, paths: dict[str, Path], state: Path, batch_rows: int) -> dict[str, Any]:
    """Polars or pyarrow: batches of ``batch_rows`` through the engine's kernels, hashes in Python, diff by a join."""
    import hashlib

    if task == "xlsx":
        if engine == "pyarrow":
            return {"skipped": "pyarrow reads no .xlsx: openpyxl stays"}
        import polars as pl

        return {"rows": pl.read_excel(paths["xlsx"], engine="calamine").height}
    path = paths["gbk" if task == "gbk" else "csv"]
    batches = polars_batches(path, task, batch_rows) if engine == "polars" else arrow_batches(path, task, batch_rows)
    total = plain_rows = acc = 0
    pairs: list[Any] = []  # (user ids, hashes) of each batch, as the engine's own arrays
    blake = hashlib.blake2b
    for size, user_ids, plains, records in batches:
        total += size
        if task == "read":
            continue
        ids, hashes = [], []
        for uid, ok, rec in zip(user_ids, plains, records, strict=True):
            if ok:
                digest_hex = blake(rec.encode(), digest_size=16).hexdigest()
                acc += int(digest_hex[:15], 16)
                ids.append(uid)
                hashes.append(digest_hex)
        plain_rows += len(ids)
        if task == "diff":
            pairs.append(native_columns(engine, ids, hashes))
    out: dict[str, Any] = {"rows": total}
    if task != "read":
        out.update(plain=plain_rows, digest=str(acc))
    if task == "diff":
        out.update(frame_diff(engine, pairs, state, total - plain_rows))
    return out


def native_columns(engine: str, ids: list[str], hashes: list[str]) -> Any:
    """Two columns as a Polars frame or an Arrow table: Python lists of a million strings would cost ~150 MB."""
    if engine == "polars":
        import polars as pl

        return pl.DataFrame({"user_id": ids, "hash": hashes})
    import pyarrow as pa

    return pa.table({"user_id": ids, "hash": hashes})


def polars_batches(path: Path, task: str, batch_rows: int) -> Any:
    import polars as pl

    if task == "gbk":  # Polars decodes only UTF-8 itself: any other encoding is decoded by Python, whole file at once
        frame = pl.read_csv(path, encoding="gb18030", infer_schema=False)
        lazy = frame.lazy()
    else:
        lazy = pl.scan_csv(path, infer_schema=False)
    if task == "read":
        lazy = lazy.select(pl.sum_horizontal(pl.col(name).str.len_chars().fill_null(0) for name in HEADER))
        for frame in lazy.collect_batches(chunk_size=batch_rows):
            yield frame.height, (), (), ()
        return
    value = {name: pl.col(name).fill_null("") for name in HEADER}
    plain = ~pl.concat_str(list(value.values()), separator=SEP).str.contains(TEXT_BAD)
    for name in REQUIRED:
        plain = plain & value[name].str.contains(CHECKS[name][0]) & (value[name].str.len_chars() <= CHECKS[name][1])
    for name in OPTIONAL:
        shaped = value[name].str.contains(CHECKS[name][0]) & (value[name].str.len_chars() <= CHECKS[name][1])
        plain = plain & ((value[name] == "") | shaped)
    parts: list[Any] = [pl.lit("{")]
    for name in REQUIRED:
        parts += [pl.lit(f'"{name}":"'), value[name], pl.lit('",')]
    for name in OPTIONAL:
        parts.append(
            pl.when(value[name] == "")
            .then(pl.lit(""))
            .otherwise(pl.concat_str([pl.lit(f'"{name}":"'), value[name], pl.lit('",')]))
        )
    record = pl.concat_str(parts).str.strip_chars_end(",") + pl.lit("}")
    selected = lazy.select(pl.col("userId").fill_null(""), plain.alias("plain"), record.alias("record"))
    for frame in selected.collect_batches(chunk_size=batch_rows):
        yield frame.height, frame["userId"].to_list(), frame["plain"].to_list(), frame["record"].to_list()


def arrow_batches(path: Path, task: str, batch_rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    encoding = "gb18030" if task == "gbk" else "utf8"  # pyarrow transcodes other encodings through Python's codecs
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=batch_rows * 84),  # ~84 bytes a row
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in HEADER}, strings_can_be_null=False
        ),
    )
    for batch in reader:
        if task == "read":
            yield batch.num_rows, (), (), ()
            continue
        value = {name: batch.column(name) for name in HEADER}
        plain = pc.invert(pc.match_substring_regex(pc.binary_join_element_wise(*value.values(), SEP), TEXT_BAD))
        for name in HEADER:
            pattern, longest = CHECKS[name]
            shaped = pc.and_(
                pc.match_substring_regex(value[name], pattern), pc.less_equal(pc.utf8_length(value[name]), longest)
            )
            plain = pc.and_(plain, shaped if name in REQUIRED else pc.or_(pc.equal(value[name], ""), shaped))
        parts = ["{"]
        for name in REQUIRED:
            parts += [f'"{name}":"', value[name], '",']
        for name in OPTIONAL:
            field = pc.binary_join_element_wise(f'"{name}":"', value[name], '",', "")
            parts.append(pc.if_else(pc.equal(value[name], ""), "", field))
        record = pc.binary_join_element_wise(pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), ","), "}", "")
        yield batch.num_rows, value["userId"].to_pylist(), plain.to_pylist(), record.to_pylist()


def frame_diff(engine: str, pairs: list[Any], state: Path, full_path: int) -> dict[str, Any]:
    """The diff as a join with the state's (user_id, hash), read from SQLite by Python (neither engine reads SQLite)."""
    import sqlite3

    db = sqlite3.connect(state)
    cursor = db.execute("SELECT user_id, hash FROM users")
    known = []
    while chunk := cursor.fetchmany(100_000):
        known.append(native_columns(engine, [u for u, _ in chunk], [h for _, h in chunk]))
    db.close()
    if engine == "polars":
        import polars as pl

        left = pl.concat(pairs)
        right = pl.concat(known).rename({"hash": "state_hash"})
        del known, pairs
        joined = left.join(right, on="user_id", how="left")
        ops = joined.select(
            pl.when(pl.col("state_hash").is_null())
            .then(pl.lit("create"))
            .when(pl.col("state_hash") == pl.col("hash"))
            .then(pl.lit("unchanged"))
            .otherwise(pl.lit("update"))
            .alias("op")
        )["op"].value_counts()
        implied = right.join(left, on="user_id", how="anti").height
        counts = dict(zip(ops["op"].to_list(), ops["count"].to_list(), strict=True))
    else:
        import pyarrow as pa
        import pyarrow.compute as pc

        left = pa.concat_tables(pairs)
        right = pa.concat_tables(known).rename_columns(["user_id", "state_hash"])
        del known, pairs
        joined = left.join(right, "user_id", join_type="left outer")
        new = pc.is_null(joined["state_hash"])
        same = pc.fill_null(pc.equal(joined["hash"], joined["state_hash"]), False)
        counts = {
            "create": pc.sum(new).as_py() or 0,
            "unchanged": pc.sum(same).as_py() or 0,
            "update": joined.num_rows - (pc.sum(new).as_py() or 0) - (pc.sum(same).as_py() or 0),
        }
        implied = right.join(left, "user_id", join_type="left anti").num_rows
    if full_path:
        counts["fullPath"] = full_path
    return {"ops": {op: n for op, n in counts.items() if n}, "implied": implied}


def child(argv: list[str]) -> None:
    """``--child ENGINE TASK FOLDER STATE MEMORY BATCH``: one task, then one JSON line with its figures."""
    engine, task, folder, state, memory, batch = argv
    paths = {
        kind: Path(folder) / name
        for kind, name in (("csv", "snapshot.csv"), ("gbk", "snapshot-gbk.csv"), ("xlsx", "snapshot.xlsx"))
    }
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        work = Path(tmp)
        if engine == "ours":
            out = make_state(paths, Path(state), work) if task == "state" else ours(task, paths, Path(state), work)
        elif engine == "duckdb":
            out = duckdb_task(task, paths, Path(state), work, memory)
        else:
            out = frame_task(engine, task, paths, Path(state), int(batch))
        untimed = out.pop("untimed", 0.0)
        out["wallS"] = time.perf_counter() - wall - untimed
        out["cpuS"] = time.process_time() - cpu - untimed
    out.setdefault("peakMb", peak_mb())
    print(orjson.dumps(out).decode())


# --- where an unchanged re-upload's time goes (ours): a sampling profiler over the whole run -------------------------

# The innermost frame of cvcsync names the stage: by (module, function) first, then by module.
STAGE_BY_FUNCTION = {
    ("records", "content_hash"): "hashing (blake2b)",
    ("plan", "flush"): "SQLite inserts (workspace rows)",
    ("plan", "_write_rows"): "plan loop (per row, Python)",
    ("plan", "decide"): "decide (SQL diff against the state)",
    ("state", "checkout"): "state checkout (read, gunzip)",
    ("state", "commit"): "state commit (gzip, write)",
}
STAGE_BY_MODULE = {
    **dict.fromkeys(("csv_rows", "lines", "decoding", "readers", "table_shape", "formats"), "reading (decode, CSV)"),
    **dict.fromkeys(("plain_rows", "columns", "header_mapping", "records", "cell_cleanup"), "mapping and JSON"),
    **dict.fromkeys(("guards", "export"), "gates (guards, capacity)"),
    "workspace": "workspace query: {function}",
    "state": "state (other)",
}


def profile_child(argv: list[str]) -> None:
    """``--profile-child seed|reupload FOLDER USERS CVC_URL``: seed a local state of USERS users, or re-upload the same
    file against it (unchanged: 0 writes) and say where the time went (5 ms samples of the main thread)."""
    import signal

    from cvcsync.adapters.cvc import CvcClient
    from cvcsync.engine.plan import build_plan
    from cvcsync.engine.state import ShadowState
    from cvcsync.engine.workspace import PlanInput
    from cvcsync.inputs.readers import read_records
    from cvcsync.runs.export import sync_source
    from cvcsync_dev.local import local_context

    step, folder, users = argv[0], Path(argv[1]), int(argv[2])
    export = folder / f"users-{users}.csv"
    ctx = local_context(str(folder / f"state-{users}"), CvcClient.from_env(endpoint=argv[3]))
    if step == "seed":
        with export.open("w", newline="", encoding="utf-8") as text:
            writer = csv.writer(text)
            writer.writerow(HEADER)
            writer.writerows(snapshot_rows(users))
        with tempfile.TemporaryDirectory(dir=folder) as tmp, export.open("rb") as raw:
            plan = build_plan(
                PlanInput(read_records(raw, name=export.name), "full"), ShadowState(Path(tmp) / "e"), Path(tmp)
            )
            rows = plan.db.execute("SELECT user_id, hash, record FROM rows WHERE kind = 'upsert'").fetchall()
            plan.close()
        ctx.state.commit(lambda state: state.upsert(rows), run_id="seed", snapshot_rows=users)
        print(orjson.dumps({"seeded": len(rows)}).decode())
        return
    samples: dict[str, float] = {}
    last = [time.perf_counter()]

    def sample(_signum: int, frame: Any) -> None:
        """SIGALRM runs this in the main thread at the next bytecode: a long C call (SQLite, gzip) is over by then
        and its time goes to the frame that made it. (A sampling thread would see the main thread mostly when it
        lets the GIL go, inside SQLite calls, and charge them with the Python work around them.)"""
        now = time.perf_counter()
        stage = stage_of(frame)
        samples[stage] = samples.get(stage, 0.0) + now - last[0]
        last[0] = now

    previous = signal.signal(signal.SIGALRM, sample)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    started = time.perf_counter()
    last[0] = started
    try:
        with export.open("rb") as stream:
            report = sync_source(stream, name=export.name, source={"key": export.name}, mode="full", ctx=ctx)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    wall = time.perf_counter() - started
    total = sum(samples.values()) or 1.0
    peak = peak_mb()
    outcome = report.to_dict() if hasattr(report, "to_dict") else {}
    print(
        orjson.dumps(
            {
                "users": users,
                "wallS": wall,
                "peakMb": peak,
                "calls": outcome.get("calls"),
                "outcomes": {k: v for k, v in (outcome.get("outcomes") or {}).items() if v},
                "stages": {k: round(wall * t / total, 3) for k, t in sorted(samples.items(), key=lambda kv: -kv[1])},
            }
        ).decode()
    )


def stage_of(frame: Any) -> str:
    while frame is not None:
        parts = frame.f_code.co_filename.replace("\\", "/").split("/cvcsync/")
        if len(parts) > 1:
            module = parts[-1].rsplit("/", 1)[-1].removesuffix(".py")
            code = frame.f_code
            function = getattr(code, "co_qualname", code.co_name).replace(".<locals>.<genexpr>", "")
            found = STAGE_BY_FUNCTION.get((module, code.co_name)) or STAGE_BY_MODULE.get(module)
            if found:
                return found.replace("{function}", function)
            if parts[-1].startswith(("runs/", "outputs/")) or module == "outcomes":
                return f"run bookkeeping: {module}.{function}"
        frame = frame.f_back
    return "other (imports, interpreter)"


# --- the parent ------------------------------------------------------------------------------------------------------


def run_child(python: str, args: list[str], *, pythonpath: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([python, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:  # the exception's own line(s), not the traceback
        said = [line for line in done.stderr.splitlines() if "Error" in line or "Exception" in line]
        return {"error": said[-1][:300] if said else f"exit status {done.returncode}"}
    return dict(orjson.loads(done.stdout.strip().splitlines()[-1]))


def measure(python: str, engine: str, task: str, folder: Path, opts: argparse.Namespace) -> dict[str, Any]:
    """Best wall time of ``opts.repeats`` fresh processes (their highest peak); the last run's other figures."""
    args = [
        "--child",
        engine,
        task,
        str(folder),
        str(folder / "state.sqlite"),
        opts.duckdb_memory,
        str(opts.batch_rows),
    ]
    runs = [run_child(python, args) for _ in range(opts.repeats)]
    result = runs[-1]
    if "wallS" in result:
        result["wallS"] = round(min(r["wallS"] for r in runs if "wallS" in r), 3)
        result["cpuS"] = round(min(r["cpuS"] for r in runs if "cpuS" in r), 3)
        result["peakMb"] = round(max(r["peakMb"] for r in runs if "peakMb" in r), 1)
    return result


def installed(python: str) -> dict[str, str | None]:
    """The version of each candidate (and DuckDB's extension packages) in ``python``, None where missing."""
    probe = (
        "import importlib.metadata as m, json\nout = {}\n"
        f"for name in {PROBED!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = None\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return dict(orjson.loads(done.stdout)) if done.returncode == 0 else {}


def import_cost(python: str, statement: str, runs: int) -> dict[str, float]:
    """Median wall of ``python -c statement`` less ``python -c pass`` over fresh processes, and the same by
    ``-X importtime`` (the sum of its top-level imports' cumulative times)."""

    def once(code: str) -> tuple[float, float]:
        started = time.perf_counter()
        done = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        top = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
        return wall, sum(int(cells[1]) for cells in top[1:] if not cells[2].startswith("  ")) / 1000

    bare = [once("pass") for _ in range(runs)]
    full = [once(statement) for _ in range(runs)]
    return {
        "wallMs": round((statistics.median(w for w, _ in full) - statistics.median(w for w, _ in bare)) * 1000, 1),
        "importtimeMs": round(statistics.median(t for _, t in full) - statistics.median(t for _, t in bare), 1),
    }


def wheel_sizes(folder: Path) -> list[dict[str, Any]]:
    """Zipped and unpacked size of every wheel under ``folder/<target>/`` (what it adds to a layer)."""
    sizes = []
    for wheel in sorted(folder.glob("*/*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        name, version = wheel.name.split("-")[:2]
        sizes.append(
            {
                "target": wheel.parent.name,
                "package": name.replace("_", "-"),
                "version": version,
                "zipMb": round(wheel.stat().st_size / 1e6, 1),
                "unpackedMb": round(unpacked / 1e6, 1),
            }
        )
    return sizes


def profile(users: int, folder: Path) -> dict[str, Any]:
    from cvcsync_dev.emulator.process import start_emulator

    key = "bench-key:bench-secret-not-for-production"
    emulator = start_emulator("--capacity", str(users * 2), keys=[key])
    os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = key.split(":")
    os.environ["CVCSYNC_LOG_LEVEL"] = "WARNING"
    try:
        seeded = run_child(sys.executable, ["--profile-child", "seed", str(folder), str(users), emulator.url])
        if "error" in seeded:
            return seeded
        return run_child(sys.executable, ["--profile-child", "reupload", str(folder), str(users), emulator.url])
    finally:
        emulator.stop()


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return 0
    if sys.argv[1:2] == ["--profile-child"]:
        profile_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument(
        "--python",
        default=os.environ.get("CVCSYNC_COLUMNAR_PYTHON", sys.executable),
        help="the interpreter holding the candidates (default: $CVCSYNC_COLUMNAR_PYTHON, else this one)",
    )
    parser.add_argument("--wheels", type=Path, help="pip download folders, one per target (cp310-x86_64...)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per figure (best wall time)")
    parser.add_argument("--import-runs", type=int, default=9)
    parser.add_argument("--duckdb-memory", default="192MB", help="DuckDB's memory_limit (160MB: out of memory)")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="rows per batch for Polars and pyarrow")
    parser.add_argument("--profile-users", default="100000,1000000", help="unchanged re-uploads to profile; '' skips")
    parser.add_argument("--skip-engines", action="store_true", help="only ours and the profile")
    parser.add_argument("--profile-only", action="store_true", help="re-measure the profile into the last results")
    opts = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from figures import RESULTS_DIR, write_figures

    if opts.profile_only:
        last = orjson.loads((RESULTS_DIR / "bench_columnar.json").read_bytes())
        with tempfile.TemporaryDirectory(prefix="bench-columnar-") as tmp:
            last["profile"] = [profile(int(n), Path(tmp)) for n in opts.profile_users.split(",") if n.strip()]
        last.setdefault("enginesMeasuredAt", last.get("generatedAt"))
        last["profiledAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        last["profileNote"] = f"alone, with --profile-only; the engines were measured at {last['enginesMeasuredAt']}"
        write_figures("bench_columnar", {k: v for k, v in last.items() if k not in ("script", "generatedAt", "python")})
        return 0

    versions = installed(opts.python)
    figures: dict[str, Any] = {
        "rows": opts.rows,
        "xlsxRows": opts.xlsx_rows,
        "repeats": opts.repeats,
        "versions": versions,
    }
    figures["duckdbMemoryLimit"] = opts.duckdb_memory
    skipped = {}
    for engine in ENGINES:
        if opts.skip_engines or not versions.get(engine):
            skipped[engine] = "not run" if opts.skip_engines else f"not installed in {opts.python}"
            print(f"skipped {engine}: {skipped[engine]}")
    figures["skipped"] = skipped
    with tempfile.TemporaryDirectory(prefix="bench-columnar-") as tmp:
        folder = Path(tmp)
        write_files(folder, opts.rows, opts.xlsx_rows)
        made = run_child(
            sys.executable, ["--child", "ours", "state", str(folder), str(folder / "state.sqlite"), "", "0"]
        )
        print(f"{opts.rows:,} rows; state of {made.get('rows', 0):,} users ({made.get('error', 'ok')})")
        tasks: dict[str, dict[str, Any]] = {}
        for engine, names in TASKS.items():
            if engine in skipped:
                continue
            python = sys.executable if engine == "ours" else opts.python
            tasks[engine] = {}
            for task in names:
                tasks[engine][task] = measure(python, engine, task, folder, opts)
                shown = {k: v for k, v in tasks[engine][task].items() if k not in ("digest", "md5Digest")}
                print(f"{engine:8s} {task:9s} {orjson.dumps(shown).decode()}")
        figures["tasks"] = tasks
        figures["identical"] = identical(tasks)
        print("byte-identical JSON and hashes:", figures["identical"])
        figures["imports"] = {
            "ours": import_cost(sys.executable, "import cvcsync.engine.plan, cvcsync.inputs.readers", opts.import_runs)
        }
        for engine, statement in ENGINES.items():
            if engine not in skipped:
                figures["imports"][engine] = import_cost(opts.python, f"import {statement}", opts.import_runs)
        print("imports:", figures["imports"])
        figures["profile"] = [profile(int(n), folder) for n in opts.profile_users.split(",") if n.strip()]
        for found in figures["profile"]:
            print("profile:", orjson.dumps(found).decode())
    if opts.wheels is not None:
        figures["wheels"] = wheel_sizes(opts.wheels)
        for size in figures["wheels"]:
            print("wheel:", size)
    write_figures("bench_columnar", figures)
    return 0


def identical(tasks: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Which engine runs produced ours' digests (blake2b-16 hashes; md5 of every record, for DuckDB's md5)."""
    reference = tasks.get("ours", {}).get("plan", {})
    found = {}
    for engine, runs in tasks.items():
        for task, result in runs.items():
            for key in ("digest", "md5Digest"):
                if engine != "ours" and task != "read" and key in result and reference.get(key):
                    found[f"{engine} {task}"] = result[key] == reference[key]
    return found


if __name__ == "__main__":
    sys.exit(main())
