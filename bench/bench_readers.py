"""Reader benchmark: rows/s of ``read_records`` over a CSV export next to bare ``csv.reader`` over the same file.

Also prints what any reader yielding a dict per row must pay (``csv.reader`` plus ``dict(zip(header, row))``, and
plus a ``SourceRow``), so the ratio can be read against what is possible, and the rows/s of reading and mapping the
columns (``ColumnMap``) together. CPU time, best of several runs, so other load on the machine counts less.

Then the same rows (``--sheet-rows``, 100,000 by default) as a CSV and as an .xlsx workbook (written with openpyxl's
write-only mode, mobiles without ``+86`` as number cells as Excel keeps them: the text a person sees is the CSV's):
rows/s and peak RSS of ``read_records`` alone and of ``build_plan`` (reading, column mapping, validation and the
plan's SQLite workspace, against an empty state), each run in a fresh process so its peak is its own (``VmHWM``),
and the .xlsx figures as a share of the CSV's. Writing the files is not timed.
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.readers import SourceRow, read_records
from figures import write_figures

HEADER = ["工号", "姓名", "部门", "手机", "座机", "邮箱", "状态"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
DEPARTMENTS = ["总部/研发部", "总部/销售部", "总部/行政部", "华东分公司/市场部", "总部/研发部/运维组"]


def export_rows(rows: int) -> Iterator[list[str]]:
    """A realistic export's rows: Chinese names, department paths, mobiles with and without +86, a status column."""
    rng = random.Random(20240601)
    for n in range(rows):
        mobile = f"138{n % 100_000_000:08d}"
        yield [
            f"E{n:07d}",
            rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            rng.choice(DEPARTMENTS),
            mobile if n % 3 else f"+86 {mobile}",
            f"0571-8{n % 10_000_000:07d}",
            f"user{n}@corp.example.com",
            "在职" if n % 50 else "离职",
        ]


def write_export(path: Path, rows: int) -> None:
    """The rows as a UTF-8 CSV with the header."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        writer.writerows(export_rows(rows))


def write_workbook(path: Path, rows: int) -> None:
    """The same rows as ``write_export``'s, as a workbook: a mobile of digits only is a number cell (shown with the
    format ``0``, as Excel keeps a typed mobile), everything else text."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("员工")
    sheet.append(HEADER)
    mobile_column = HEADER.index("手机")
    for row in export_rows(rows):
        cells: list[Any] = list(row)
        if row[mobile_column].isdigit():
            number = WriteOnlyCell(sheet, value=int(row[mobile_column]))
            number.number_format = "0"
            cells[mobile_column] = number
        sheet.append(cells)
    book.save(path)


def bare_csv(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as stream:
        count = 0
        for _ in csv.reader(stream):
            count += 1
    return count - 1


def csv_dicts(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        count = 0
        for row in reader:
            dict(zip(header, row))  # noqa: B905 - the floor, as cheap as it gets
            count += 1
    return count


def csv_source_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        count = 0
        for row in reader:
            SourceRow(reader.line_num, dict(zip(header, row)))  # noqa: B905 - the floor, as cheap as it gets
            count += 1
    return count


def ours(path: Path) -> int:
    with path.open("rb") as stream:
        count = 0
        for _ in read_records(stream, name=path.name):
            count += 1
    return count


def ours_mapped(path: Path) -> int:
    column_map = ColumnMap()
    with path.open("rb") as stream:
        count = 0
        for row in read_records(stream, name=path.name):
            column_map.apply(row.data, position=row.position)
            count += 1
    return count


# One measurement in a fresh process: rows, CPU seconds and peak RSS MB on one line.
CHILD = """
import sys, tempfile, time
from pathlib import Path
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import PlanInput
from cvcsync.inputs.readers import read_records
path, what = Path(sys.argv[1]), sys.argv[2]
cpu = time.process_time()
with tempfile.TemporaryDirectory() as tmp, path.open("rb") as stream:
    records = read_records(stream, name=path.name)
    if what == "read":
        rows = sum(1 for _ in records)
    else:
        state = ShadowState(Path(tmp) / "state.sqlite")
        plan = build_plan(PlanInput(records, "full", {"groupId": "88", "groupName": "示例科技"}), state, Path(tmp))
        rows = plan.rows_read()
        plan.close()
        state.close()
cpu = time.process_time() - cpu
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(rows, cpu, peak / 1024)  # VmHWM: this process's own peak (ru_maxrss would inherit the parent's)
"""


def in_fresh_process(what: str, path: Path, repeats: int) -> dict[str, float]:
    """``read`` or ``plan`` the file, best CPU time of ``repeats`` fresh processes; the highest peak RSS of them."""
    best, peak, rows = float("inf"), 0.0, 0
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), what], capture_output=True, text=True, check=True
        ).stdout.split()
        rows, best, peak = int(out[0]), min(best, float(out[1])), max(peak, float(out[2]))
    return {"rows": rows, "rowsPerSecond": round(rows / best, 1), "peakMb": round(peak, 1)}


def sheet_figures(rows: int, repeats: int) -> dict[str, Any]:
    """The same rows as CSV and as .xlsx: read_records and build_plan, rows/s and peak RSS, .xlsx as a share."""
    with tempfile.TemporaryDirectory() as folder:
        paths = {"csv": Path(folder) / "export.csv", "xlsx": Path(folder) / "export.xlsx"}
        write_export(paths["csv"], rows)
        write_workbook(paths["xlsx"], rows)
        figures: dict[str, Any] = {
            "rows": rows,
            "columns": len(HEADER),
            "csvMb": round(paths["csv"].stat().st_size / 1e6, 2),
            "xlsxMb": round(paths["xlsx"].stat().st_size / 1e6, 2),
            "repeats": repeats,
        }
        for key, what in (("readRecords", "read"), ("buildPlan", "plan")):
            by_format = {fmt: in_fresh_process(what, path, repeats) for fmt, path in paths.items()}
            for fmt, measured in by_format.items():
                if measured.pop("rows") != rows:  # a reader that skipped rows would look fast
                    raise SystemExit(f"{what} of the {fmt} file did not see all {rows} rows")
            csv_rate, xlsx_rate = by_format["csv"]["rowsPerSecond"], by_format["xlsx"]["rowsPerSecond"]
            by_format["xlsxOfCsv"] = {
                "rowsPerSecond": round(xlsx_rate / csv_rate, 4),
                "peakMb": round(by_format["xlsx"]["peakMb"] / by_format["csv"]["peakMb"], 2),
            }
            figures[key] = by_format
        return figures


def rows_per_second(run: Callable[[Path], int], path: Path, repeats: int) -> float:
    best = float("inf")
    rows = 0
    for _ in range(repeats):
        start = time.process_time()
        rows = run(path)
        best = min(best, time.process_time() - start)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sheet-rows", type=int, default=100_000, help="rows of the CSV-versus-.xlsx comparison")
    parser.add_argument("--sheet-repeats", type=int, default=3, help="fresh processes per measure of it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.csv"
        write_export(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"{args.rows} rows, {len(HEADER)} columns, {size:.1f} MB UTF-8; CPU time, best of {args.repeats}")
        runs = [
            ("csv.reader, bare", bare_csv),
            ("csv.reader + dict(zip) (floor for dict rows)", csv_dicts),
            ("csv.reader + dict + SourceRow (floor)", csv_source_rows),
            ("read_records", ours),
            ("read_records + ColumnMap.apply", ours_mapped),
        ]
        baseline = 0.0
        figures = []
        for label, run in runs:
            rate = rows_per_second(run, path, args.repeats)
            baseline = baseline or rate
            print(f"{label:48s} {rate:>12,.0f} rows/s   {rate / baseline:6.0%} of bare csv.reader")
            figures.append({"label": label, "rowsPerSecond": round(rate, 1), "ofBareCsv": round(rate / baseline, 4)})
    sheets = sheet_figures(args.sheet_rows, args.sheet_repeats)
    print(
        f"\nthe same {args.sheet_rows} rows as CSV ({sheets['csvMb']} MB) and as .xlsx ({sheets['xlsxMb']} MB); "
        f"fresh process each, CPU time best of {args.sheet_repeats}, highest peak RSS"
    )
    print(f"{'':48s} {'CSV':>12s} {'.xlsx':>12s} {'.xlsx/CSV':>10s}")
    for key, label in (("readRecords", "read_records"), ("buildPlan", "build_plan")):
        measured = sheets[key]
        for figure, unit, share in (("rowsPerSecond", "rows/s", "{:>10.1%}"), ("peakMb", "peak RSS MB", "{:>9.2f}×")):
            print(
                f"{label + ', ' + unit:48s} {measured['csv'][figure]:>12,.1f} {measured['xlsx'][figure]:>12,.1f} "
                + share.format(measured["xlsxOfCsv"][figure])
            )
        for fmt, name in (("csv", "CSV"), ("xlsx", ".xlsx")):  # also in the readers table, next to csv.reader
            rate = measured[fmt]["rowsPerSecond"]
            figures.append(
                {
                    "label": f"{label}, {args.sheet_rows:,} rows as {name} (fresh process)",
                    "rowsPerSecond": rate,
                    "ofBareCsv": round(rate / baseline, 4),
                }
            )
    write_figures(
        "bench_readers",
        {
            "rows": args.rows,
            "columns": len(HEADER),
            "sizeMb": round(size, 2),
            "repeats": args.repeats,
            "runs": figures,
            "sheets": sheets,
        },
    )


if __name__ == "__main__":
    main()
