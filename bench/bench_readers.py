"""Reader benchmark: rows/s of ``read_records`` over a CSV export next to bare ``csv.reader`` over the same file.

Also prints what any reader yielding a dict per row must pay (``csv.reader`` plus ``dict(zip(header, row))``, and
plus a ``SourceRow``), so the ratio can be read against what is possible, and the rows/s of reading and mapping the
columns (``ColumnMap``) together. CPU time, best of several runs, so other load on the machine counts less.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cvcsync.inputs.columns import ColumnMap
from cvcsync.inputs.readers import SourceRow, read_records
from figures import write_figures

HEADER = ["工号", "姓名", "部门", "手机", "座机", "邮箱", "状态"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
DEPARTMENTS = ["总部/研发部", "总部/销售部", "总部/行政部", "华东分公司/市场部", "总部/研发部/运维组"]


def write_export(path: Path, rows: int) -> None:
    """A realistic export: Chinese names, department paths, mobiles with and without +86, a status column."""
    rng = random.Random(20240601)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for n in range(rows):
            mobile = f"138{n % 100_000_000:08d}"
            writer.writerow(
                [
                    f"E{n:07d}",
                    rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                    rng.choice(DEPARTMENTS),
                    mobile if n % 3 else f"+86 {mobile}",
                    f"0571-8{n % 10_000_000:07d}",
                    f"user{n}@corp.example.com",
                    "在职" if n % 50 else "离职",
                ]
            )


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
        baseline = None
        figures = []
        for label, run in runs:
            rate = rows_per_second(run, path, args.repeats)
            baseline = baseline or rate
            print(f"{label:48s} {rate:>12,.0f} rows/s   {rate / baseline:6.0%} of bare csv.reader")
            figures.append({"label": label, "rowsPerSecond": round(rate, 1), "ofBareCsv": round(rate / baseline, 4)})
    write_figures(
        "bench_readers",
        {"rows": args.rows, "columns": len(HEADER), "sizeMb": round(size, 2), "repeats": args.repeats, "runs": figures},
    )


if __name__ == "__main__":
    main()
