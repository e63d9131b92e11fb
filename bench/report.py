"""One generated benchmark report: every ``bench/results/*.json`` side by side, with ratios and the issues' targets.

``.venv/bin/python bench/report.py [--results DIR] [--output FILE]`` (the last step of ``make bench``) writes
``bench/RESULTS.md``: the machine and package versions, then one table per benchmark. A benchmark that did not
run (no results file) shows "not run"; one whose file cannot be read says why. Nothing here measures anything.

Ratios say how many times better cvc-sync is than the baseline (higher is better): baseline time / our time for
times, our rate / baseline rate for rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
OUTPUT = BENCH_DIR / "RESULTS.md"
PACKAGES = ("requests", "boto3", "orjson", "aliyun-python-sdk-core")

# The targets of the issues.
NAIVE_LOOP_TIMES = 50.0  # users/s, at least 50x the naive official-SDK loop
PEAK_RSS_MB = 256.0  # peak RSS planning 1M users
PLAN_ROWS_FOR_RSS = 1_000_000
CSV_SHARE = 0.40  # planning rows/s, at least 40% of bare csv.reader's
BOOKKEEPING_SHARE = 0.25  # a first sync's bookkeeping around apply, at most 25% of apply (issue 15)
SETTLE_SHARE, THROTTLED_SHARE = 0.90, 0.02  # the adaptive concurrency settles at >= 90% of the limit, <= 2% throttled
BATCHED_LOOP_TIMES = {0: 1.0, 50: 2.0}  # full sync users/s vs the plain batched SDK loop, by latency (ms)
NAIVE_AT_50_TIMES = 500.0  # full sync users/s at 50 ms vs the one-per-call loop
MET, NOT_MET, NO_TARGET = "met ✅", "not met ❌", "—"

Results = Mapping[str, Any]
Section = Callable[[Results], list[str]]


# --- formatting --------------------------------------------------------------------------------------------------


def number(value: float, decimals: int | None = None) -> str:
    """Thousands separators; fewer decimals as numbers grow (``decimals`` forces a count)."""
    if decimals is None:
        decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{decimals}f}"


def ratio(value: float) -> str:
    return f"{value:,.2f}×" if value < 100 else f"{value:,.0f}×"


def verdict(met: bool | None) -> str:
    return NO_TARGET if met is None else MET if met else NOT_MET


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def figure_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def key_values(mapping: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={figure_text(v)}" for k, v in (mapping or {}).items()) or "—"


def measured(data: Results) -> str:
    python = f", Python {data['python']}" if data.get("python") else ""
    return f"_Measured {data.get('generatedAt', 'at an unknown time')}{python}._"


# --- the machine -------------------------------------------------------------------------------------------------


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip()
    except OSError:
        return None
    return None


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and the versions of the packages the benchmarks compare."""
    memory = _first_line("/proc/meminfo", "MemTotal:")
    os_name = (_first_line("/etc/os-release", "PRETTY_NAME=") or "").strip('"')
    info = {
        "CPU": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": str(os.cpu_count() or "unknown"),
        "RAM": f"{int(memory.split()[0]) / 1024 / 1024:.1f} GiB" if memory else "unknown",
        "OS": f"{os_name} ({platform.system()} {platform.release()})" if os_name else platform.platform(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


# --- the sections ------------------------------------------------------------------------------------------------


def cold_start(data: Results) -> list[str]:
    sdk = data["sdk"]
    rows, splits = [], []
    for handler in data["handlers"]:
        better = sdk["ms"] / handler["ms"]
        cpu = f"{number(handler['cpuMs'])} / {number(sdk['cpuMs'])}" if "cpuMs" in handler and "cpuMs" in sdk else "—"
        rows.append(
            [
                f"`{handler['name']}`",
                handler["event"],
                number(handler["ms"]),
                number(sdk["ms"]),
                ratio(better),
                cpu,
                "yes" if handler.get("boto3Imported") else "no",
                "≤ official SDK (ratio ≥ 1)",
                verdict(handler["ms"] <= sdk["ms"]),
            ]
        )
        splits.append((handler["name"], handler.get("importSplitMs") or {}))
    lines = [
        f"Fresh interpreter with an empty TMPDIR: import the handler and handle one event, median of {data['runs']} "
        f"runs per side, interleaved. Official SDK: {sdk.get('what', 'import + one CreateUser call')}.",
        "",
        *table(
            [
                "handler",
                "event",
                "cvc-sync ms",
                "official SDK ms",
                "ratio",
                "CPU ms (ours / SDK)",
                "boto3",
                "target",
                "",
            ],
            rows,
        ),
        *_cold_start_floors(data),
    ]
    uncompiled = data.get("uncompiled")
    if uncompiled:
        base = uncompiled["sdk"]["ms"]
        lines += [
            "",
            f"Without `.pyc` files for anything but the standard library (a package built without its target "
            f"interpreter: each cold start compiles every other module), median of {uncompiled['runs']}:",
            "",
            *table(
                ["handler", "cvc-sync ms", "official SDK ms", "ratio"],
                [
                    [f"`{h['name']}`", number(h["uncompiled"]["ms"]), number(base), ratio(base / h["uncompiled"]["ms"])]
                    for h in data["handlers"]
                    if "uncompiled" in h
                ],
            ),
        ]
    sdk_split = sdk.get("importSplitMs") or {}
    floor_groups = {g for floor in (data.get("floors") or {}).values() for g in floor.get("importSplitMs") or {}}
    groups = sorted({g for _, split in splits for g in split} | set(sdk_split) | floor_groups, key=_group_order)
    if groups:
        split_rows = [[f"`{name}`", *_split_cells(split, groups)] for name, split in splits]
        split_rows.append(["official SDK", *_split_cells(sdk_split, groups)])
        split_rows += [
            [f"{kind} floor", *_split_cells(floor.get("importSplitMs") or {}, groups)]
            for kind, floor in (data.get("floors") or {}).items()
        ]
        lines += [
            "",
            "Where the import time goes (ms under `python -X importtime`, which inflates every figure; each module's "
            "own time goes to its package, else to the package that imported it; `other`: imported outside any "
            "import, e.g. lazily at the first event):",
            "",
            *table(["", *groups, "total"], split_rows),
        ]
    imported = data.get("requestsImport")
    if imported:
        lines += [
            "",
            *table(
                ["import alone (fresh process)", "ms", "-X importtime split (ms)"],
                [
                    ["`import requests` (cvc-sync's)", number(imported["oursMs"]), key_values(imported["oursSplitMs"])],
                    [
                        "the SDK's vendored requests",
                        number(imported["sdkVendoredMs"]),
                        key_values(imported["sdkVendoredSplitMs"]),
                    ],
                ],
            ),
        ]
    return lines


def _cold_start_floors(data: Results) -> list[str]:
    """Each handler against its floor (issue 15): the whole process, ours / the floor's, at most the target."""
    floors = data.get("floors")
    if not floors:
        return []
    rows = []
    for handler in data["handlers"]:
        floor = handler.get("floor")
        if not floor:
            continue
        rows.append(
            [
                f"`{handler['name']}`",
                number(handler["processMs"]),
                floor["kind"],
                number(floor["processMs"]),
                ratio(floor["ratio"]),
                ratio(floor["inProcessRatio"]),
                f"≤ {floor['target']:g}× its floor",
                verdict(floor["ratio"] <= floor["target"]),
            ]
        )
    what = "; ".join(f"{kind}: {floor['what']}" for kind, floor in floors.items())
    return [
        "",
        "Against the floor, the smallest script doing the same work in a fresh process, measured in the same runs "
        f"({what}). Whole process: from spawning the interpreter to the answer; ours / the floor's time, so lower "
        "is better here:",
        "",
        *table(
            ["handler", "cvc-sync ms", "floor", "floor ms", "ours / floor", "in process", "target", ""],
            rows,
        ),
    ]


SPLIT_ORDER = (
    "requests+urllib3",
    "requests (SDK's vendored copy)",
    "boto3+botocore",
    "cvcsync",
    "stdlib/orjson via cvcsync",
    "official SDK",
    "stdlib/jmespath via official SDK",
)


def _group_order(group: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(group) if group in SPLIT_ORDER else len(SPLIT_ORDER), group)


def _split_cells(split: Mapping[str, float], groups: Sequence[str]) -> list[str]:
    return [number(split[g]) if split.get(g) else "—" for g in groups] + [number(sum(split.values()))]


def client(data: Results) -> list[str]:
    rows = []
    for label, key in (
        ("import time (ms, fresh processes)", "importMs"),
        ("GetAccountInfo wall time per call (ms, median)", "callWallMs"),
        ("GetAccountInfo client CPU per call (ms)", "callCpuMs"),
    ):
        ours, sdk = data[key]["ours"], data[key]["sdk"]
        rows.append([label, number(ours), number(sdk), ratio(sdk / ours), NO_TARGET])
    users = data["usersPerSecond"]
    count = data.get("params", {}).get("users", "N")
    rows.append(
        [
            f"users/s creating {count} users (ours batched, SDK one per call)",
            number(users["ours"]),
            number(users["sdk"]),
            ratio(users["ours"] / users["sdk"]),
            NO_TARGET,
        ]
    )
    return table(["measure", "cvc-sync", "official SDK", "ratio", "target"], rows)


def sync_throughput(data: Results) -> list[str]:
    users = data.get("params", {}).get("users", "N")
    rows = []
    for run in data["fullSync"]:
        better = run["usersPerSecond"] / run["naivePerSecond"]
        rows.append(
            [
                f"users/s, full sync of {users} users, {run['latencyMs']} ms emulator latency",
                number(run["usersPerSecond"]),
                number(run["naivePerSecond"]),
                ratio(better),
                f"≥ {NAIVE_LOOP_TIMES:g}× the naive loop",
                verdict(better >= NAIVE_LOOP_TIMES),
            ]
        )
    return table(["measure", "cvc-sync", "naive SDK loop", "ratio", "target", ""], rows)


def concurrency(data: Results) -> list[str]:
    """bench_concurrency: users/s next to both SDK loops, and where the adaptive concurrency settled."""
    params = data["params"]
    users = number(params["users"], 0)
    speed, settle = [], []
    for run in data["runs"]:
        latency, limit = run["latencyMs"], run["limit"]
        batched, naive = run["batchedSdkPerSecond"], run["naivePerSecond"]
        for key, label in (("fullSync", "full sync (upload function)"), ("apply", "apply step alone")):
            figures = run[key]
            rate = figures["usersPerSecond"]
            targets, met = [], []
            if key == "fullSync" and latency in BATCHED_LOOP_TIMES:
                targets.append(f"≥ {BATCHED_LOOP_TIMES[latency]:g}× batched")
                met.append(rate >= BATCHED_LOOP_TIMES[latency] * batched)
            if key == "fullSync" and latency == 50:
                targets.append(f"≥ {NAIVE_AT_50_TIMES:g}× one per call")
                met.append(rate >= NAIVE_AT_50_TIMES * naive)
            speed.append(
                [
                    f"{latency} ms",
                    label,
                    number(rate),
                    number(batched),
                    ratio(rate / batched),
                    number(naive),
                    ratio(rate / naive),
                    ", ".join(targets) or NO_TARGET,
                    verdict(all(met) if met else None),
                ]
            )
            moved, seen, judged = figures.get("concurrency"), figures["emulator"], figures["settle"]
            if not moved:
                settle.append([f"{latency} ms", label, "not logged", "—", "—", "—", "—", verdict(None)])
                continue
            share = moved["throttled"] / moved["attempts"] if moved["attempts"] else 0.0
            why = judged.get("why")
            settle.append(
                [
                    f"{latency} ms",
                    label,
                    f"{moved['settled']:g} ({moved['settled'] / limit:.0%} of {limit})",
                    f"{moved['start']} → {moved['low']} … {moved['high']} → {moved['final']} (max {moved['max']})",
                    f"{moved['throttled']} of {moved['attempts']} ({share:.1%})",
                    f"{seen['refused']} refused, at most {seen['peakInFlight']} at once",
                    f"≥ {SETTLE_SHARE:.0%} of L, ≤ {THROTTLED_SHARE:.0%} throttled",
                    f"n/a: {why}" if why else verdict(judged.get("met")),
                ]
            )
    return [
        f"{users} users; the emulator serves L = {params['limit']} calls at once (`--max-concurrency`) and answers "
        f"`Throttling.User` beyond; the run starts at {params['start']} calls in flight and may adapt up to "
        f"{params['maxConcurrency']}. The official-SDK loops make one call at a time against an emulator with the "
        "same latency (they never meet the limit); batched: 100 users per CreateUser.",
        "",
        *table(
            [
                "latency",
                "cvc-sync",
                "users/s",
                "batched SDK loop",
                "ratio",
                "one-per-call loop",
                "ratio",
                "target",
                "",
            ],
            speed,
        ),
        "",
        "Where the concurrency settled (its mean over the second half of the run's calls):",
        "",
        *table(
            ["latency", "cvc-sync", "settled", "start → low … high → final", "throttled", "emulator", "target", ""],
            settle,
        ),
    ]


def reupload(data: Results) -> list[str]:
    unchanged = data["unchangedReupload"]
    return table(
        ["run", "CVC calls", "unchanged records"],
        [
            ["first sync", key_values(data["firstSync"]["calls"]), "—"],
            ["unchanged re-upload", key_values(unchanged["calls"]), number(unchanged["unchanged"], 0)],
        ],
    )


def planning(data: Results) -> list[str]:
    plan = data["planning"]
    at_scale = plan["rows"] >= PLAN_ROWS_FOR_RSS
    share = plan["rowsPerSecond"] / plan["csvRowsPerSecond"]
    rss_verdict = verdict(plan["peakMb"] <= PEAK_RSS_MB) if at_scale else f"n/a ({number(plan['rows'], 0)} rows)"
    return table(
        ["measure", "cvc-sync", "csv.reader", "ratio", "target", ""],
        [
            [
                f"rows/s planning {number(plan['rows'], 0)} users",
                number(plan["rowsPerSecond"]),
                number(plan["csvRowsPerSecond"]),
                f"{share:.0%}",
                f"≥ {CSV_SHARE:.0%} of csv.reader",
                verdict(share >= CSV_SHARE),
            ],
            [
                f"peak RSS MB planning {number(plan['rows'], 0)} users",
                number(plan["peakMb"]),
                number(plan["csvPeakMb"]),
                ratio(plan["csvPeakMb"] / plan["peakMb"]),
                f"≤ {PEAK_RSS_MB:g} MB at 1M users",
                rss_verdict,
            ],
        ],
    )


def first_sync_at_scale(data: Results) -> list[str]:
    """bench_sync's first sync at scale (issue 15): what the run spends around apply, and the process's peak."""
    run = data["firstSyncAtScale"]
    users, share = run["users"], run["bookkeepingOfApply"]
    at_scale = users >= PLAN_ROWS_FOR_RSS
    rss_verdict = verdict(run["peakMb"] <= PEAK_RSS_MB) if at_scale else f"n/a ({number(users, 0)} users)"
    return [
        f"A first sync of {number(users, 0)} users into an empty directory: the upload handler alone in a fresh "
        "process, the export streamed to moto's S3, the emulator at 0 ms. Wall: timed around `handle`; plan, apply "
        "and total: the run's report. Bookkeeping: total − plan − apply, what the run does around apply (in-flight "
        f"list, dead letters, state commit, report). CVC calls: {key_values(run.get('calls'))}.",
        "",
        *table(
            ["measure", "cvc-sync", "target", ""],
            [
                ["users", number(users, 0), NO_TARGET, ""],
                ["wall s (users/s)", f"{number(run['wallS'])} ({number(run['usersPerSecond'])})", NO_TARGET, ""],
                ["plan s", number(run["planS"]), NO_TARGET, ""],
                ["apply s", number(run["applyS"]), NO_TARGET, ""],
                [
                    "bookkeeping s (of apply)",
                    f"{number(run['bookkeepingS'])} ({share:.0%})",
                    f"≤ {BOOKKEEPING_SHARE:.0%} of apply",
                    verdict(share <= BOOKKEEPING_SHARE),
                ],
                ["peak RSS MB", number(run["peakMb"]), f"≤ {PEAK_RSS_MB:g} MB at 1M users", rss_verdict],
            ],
        ),
    ]


def readers(data: Results) -> list[str]:
    lines = [
        f"{number(data['rows'], 0)} rows, {data['columns']} columns, {data['sizeMb']} MB UTF-8; CPU time, best of "
        f"{data['repeats']}.",
        "",
        *table(
            ["reader", "rows/s", "of bare csv.reader"],
            [[run["label"], number(run["rowsPerSecond"]), f"{run['ofBareCsv']:.0%}"] for run in data["runs"]],
        ),
    ]
    sheets = data.get("sheets")
    if sheets:  # the same rows as .xlsx next to CSV (issue 12)
        rows = []
        for key, label in (("readRecords", "`read_records`"), ("buildPlan", "`build_plan`")):
            measured = sheets[key]
            csv_, xlsx, share = measured["csv"], measured["xlsx"], measured["xlsxOfCsv"]
            rows.append(
                [
                    f"{label} rows/s",
                    number(csv_["rowsPerSecond"]),
                    number(xlsx["rowsPerSecond"]),
                    f"{share['rowsPerSecond']:.1%}",
                ]
            )
            rows.append(
                [f"{label} peak RSS MB", number(csv_["peakMb"]), number(xlsx["peakMb"]), f"{share['peakMb']:.2f}×"]
            )
        lines += [
            "",
            f"The same {number(sheets['rows'], 0)} rows as CSV ({sheets['csvMb']} MB) and as .xlsx "
            f"({sheets['xlsxMb']} MB, mobiles as number cells); each measure in a fresh process: CPU time best of "
            f"{sheets['repeats']}, the highest peak RSS.",
            "",
            *table(["measure", "CSV", ".xlsx", ".xlsx / CSV"], rows),
        ]
    return lines


COLUMNAR_ENGINES = ("ours", "duckdb", "polars", "pyarrow")
COLUMNAR_TASKS = (
    ("csv", "bare csv.reader"),
    ("read", "read the CSV into the engine"),
    ("plan", "plan: checks, JSON, blake2b-16 (ours: build_plan, empty state)"),
    ("plan-md5", "plan with the engine's md5 (a hash migration)"),
    ("diff", "plan and diff against a 1M-user SQLite state"),
    ("workspace", "the diff written into the SQLite plan workspace (every row, implied deletes)"),
    ("gbk", "plan of the GBK file"),
    ("transcode", "GBK to UTF-8 in a stream (Python codecs), for an engine that reads UTF-8 only"),
    ("xlsx", "read the .xlsx rows"),
)


def _columnar_cell(result: Mapping[str, Any] | None, csv_wall: float | None) -> str:
    if result is None:
        return "—"
    if "skipped" in result or "error" in result:
        return f"n/a: {result.get('skipped') or result.get('error')}"
    share = f", {csv_wall / result['wallS']:.0%} of csv.reader" if csv_wall and result.get("plain", 1) else ""
    return f"{number(result['wallS'])} s, {number(result['peakMb'])} MB{share}"


def columnar(data: Results) -> list[str]:
    """bench_columnar: the candidates' tasks beside ours, imports, wheel sizes; targets on the diff (full planning)."""
    tasks = data["tasks"]
    engines = [e for e in COLUMNAR_ENGINES if e in tasks]
    csv_wall = tasks.get("ours", {}).get("csv", {}).get("wallS")
    rows = []
    for task, label in COLUMNAR_TASKS:
        if any(task in tasks[e] for e in engines):
            shares = csv_wall if task in ("plan", "plan-md5", "diff", "workspace", "gbk") else None
            rows.append([label, *(_columnar_cell(tasks[e].get(task), shares) for e in engines)])
    verdicts = []
    for engine in engines:  # full planning: ours' diff fills the workspace; an engine's counts only until "workspace"
        found = tasks[engine].get("workspace") or tasks[engine].get("diff") or {}
        if csv_wall and "wallS" in found and "peakMb" in found:
            share, peak = csv_wall / found["wallS"], found["peakMb"]
            met = share >= CSV_SHARE and peak <= PEAK_RSS_MB
            verdicts.append(f"{verdict(met)} ({share:.0%}, {number(peak)} MB)")
        else:
            verdicts.append("n/a")
    rows.append([f"target: planning ≥ {CSV_SHARE:.0%} of csv.reader and ≤ {PEAK_RSS_MB:g} MB", *verdicts])
    versions = data.get("versions", {})
    heads = [e if e == "ours" else f"{e} {versions.get(e) or ''}".strip() for e in engines]
    skipped = "; ".join(f"{e}: {why}" for e, why in data.get("skipped", {}).items()) or "none"
    when = f"Engines measured {data['enginesMeasuredAt']}; " if data.get("enginesMeasuredAt") else ""
    lines = [
        f"{when}{number(data['rows'], 0)} rows (bench_sync's snapshot shape), .xlsx {number(data['xlsxRows'], 0)} "
        f"rows; wall time (best of {data['repeats']} fresh processes), peak RSS (VmHWM); DuckDB memory_limit "
        f"{data.get('duckdbMemoryLimit', '?')}, 2 threads. Skipped: {skipped}. Targets: planning (the diff row) "
        f"≥ {CSV_SHARE:.0%} of csv.reader, ≤ {PEAK_RSS_MB:g} MB.",
        "",
        *table(["task", *heads], rows),
    ]
    same = data.get("identical") or {}
    if same:
        lines += [
            "",
            "Byte-identical CreateUser JSON and hashes (digests over every row): "
            + ", ".join(f"{run} {'✅' if ok else '❌'}" for run, ok in same.items())
            + ".",
        ]
    imports = data.get("imports") or {}
    if imports:
        lines += [
            "",
            *table(
                ["import (fresh process, median, less `python -c pass`)", "wall ms", "-X importtime ms"],
                [[e, number(v["wallMs"]), number(v["importtimeMs"])] for e, v in imports.items()],
            ),
        ]
    wheels = data.get("wheels") or []
    if wheels:
        targets = sorted({w["target"] for w in wheels})
        by_package: dict[tuple[str, str], dict[str, str]] = {}
        for w in wheels:
            by_package.setdefault((w["package"], w["version"]), {})[w["target"]] = (
                f"{number(w['zipMb'])} / {number(w['unpackedMb'])}"
            )
        lines += [
            "",
            "Wheel sizes, MB zipped / unpacked (what each adds to a layer):",
            "",
            *table(
                ["package", *targets],
                [[f"{p} {v}", *(cells.get(t, "—") for t in targets)] for (p, v), cells in sorted(by_package.items())],
            ),
        ]
    return lines


def reupload_profile(data: Results) -> list[str]:
    """bench_columnar's profile: an unchanged re-upload's wall time split by stage (5 ms samples)."""
    rows = []
    for run in data.get("profile") or []:
        if "error" in run:
            rows.append(["—", f"error: {run['error']}", "", "", ""])
            continue
        stages = ", ".join(f"{name} {number(s)} s" for name, s in list(run["stages"].items())[:6])
        rows.append(
            [number(run["users"], 0), number(run["wallS"]), number(run["peakMb"]), key_values(run["calls"]), stages]
        )
    when = (
        f"Profiled {data['profiledAt']} ({data.get('profileNote') or 'with the engines'}): "
        if data.get("profiledAt")
        else ""
    )
    return [
        f"{when}`runs.export.sync_source` against a local state (no S3 transfer), 0 writes expected; the biggest "
        "stages (a SIGALRM sampler, 2 ms):",
        "",
        *table(["users", "wall s", "peak MB", "CVC calls", "where the time goes"], rows),
    ]


def queue(data: Results) -> list[str]:
    by_batch: dict[int, dict[bool, float]] = {}
    for run in data["eventsPerSecond"]:
        by_batch.setdefault(int(run["batch"]), {})[bool(run["stateBucket"])] = float(run["eventsPerSecond"])
    rows = []
    for batch, rates in sorted(by_batch.items()):
        without, with_state = rates.get(False), rates.get(True)
        rows.append(
            [
                f"batches of {batch}",
                number(without) if without is not None else "not run",
                number(with_state) if with_state is not None else "not run",
                ratio(with_state / without) if without and with_state is not None else "—",
            ]
        )
    return table(["events/s", "no state bucket (FC default)", "shadow state in S3 (moto)", "with / without"], rows)


STATE_FLAT = 1.10  # a single-user change's state requests at the largest directory, at most this times the smallest's


def state(data: Results) -> list[str]:
    """bench_state: one single-user change's cost to the shadow state against the directory's size, before (the
    whole snapshot down and up per run) and after (the journal), and the batch path's checkout with entries pending."""
    before = {row["users"]: row for row in (data.get("before") or {}).get("perChange", [])}
    rows = []
    for row in data["perChange"]:
        old = before.get(row["users"])
        rows.append(
            [
                number(row["users"], 0),
                f"{number(old['eventsPerSecond'])} → {number(row['eventsPerSecond'])}"
                if old
                else number(row["eventsPerSecond"]),
                f"{number(old['requestsPerChange'])} → {number(row['requestsPerChange'])}"
                if old
                else number(row["requestsPerChange"]),
                f"{number(old['bytesInPerChange'], 0)} → {number(row['bytesInPerChange'], 0)}"
                if old
                else number(row["bytesInPerChange"], 0),
                f"{number(old['concurrent']['eventsPerSecond'])} → {number(row['concurrent']['eventsPerSecond'])}"
                if old
                else number(row["concurrent"]["eventsPerSecond"]),
                number(row["concurrent"]["failed"], 0),
            ]
        )
    requests = [row["requestsPerChange"] for row in data["perChange"]]
    flat = max(requests) <= STATE_FLAT * min(requests) if requests and min(requests) else None
    lines = [
        "Single-user changes through the queue's writer, the state in moto's S3, before (the whole snapshot per run) "
        f"→ after (the journal, `engine.views`). Requests per change flat from the smallest directory to the largest "
        f"(≤ {STATE_FLAT:g}×): {verdict(flat)}",
        "",
        *table(
            ["users", "events/s", "state requests / change", "bytes down / change", "4 writers events/s", "lost"],
            rows,
        ),
    ]
    pending = data.get("checkoutWithPending") or []
    if pending:
        lines += [
            "",
            "The batch path's checkout with journal entries pending (folded in, one GET each):",
            "",
            *table(
                ["entries pending", "seconds", "requests", "bytes down"],
                [
                    [number(r["pending"], 0), number(r["seconds"]), number(r["requests"], 0), number(r["bytesIn"], 0)]
                    for r in pending
                ],
            ),
        ]
    return lines


def scenarios(data: Results) -> list[str]:
    runs = data["scenarios"]
    passed = sum(1 for s in runs if s.get("passed"))
    rows = [
        [
            s["name"],
            number(s["users"], 0) if isinstance(s.get("users"), (int, float)) else "—",
            "passed ✅" if s.get("passed") else "FAILED ❌",
            number(s["seconds"]) if isinstance(s.get("seconds"), (int, float)) else "—",
            key_values(s.get("figures")),
        ]
        for s in runs
    ]
    return [
        f"{passed} of {len(runs)} scenarios passed.",
        "",
        *table(["scenario", "users", "result", "seconds", "figures"], rows),
    ]


SCIM_FLAT = 1.10  # a SCIM request's object-store requests at the largest directory, at most this times the smallest's


def scim_provisioning(data: Results) -> list[str]:
    """bench_scim: an IdP's initial provisioning under faults (rates, latency per kind, the check of what CVC, the
    SCIM store and the state hold), then one SCIM request's object-store cost against the directory's size."""
    params, done, checked = data["params"], data["provisioning"], data["check"]
    create, patch = done["passes"]["create"], done["passes"]["patch"]
    rows = [
        [kind, number(row["count"], 0), number(row["p50Ms"]), number(row["p99Ms"]), key_values(row["statuses"])]
        for kind, row in done["requests"].items()
    ]
    wrong = {name: count for name, count in checked["mismatches"].items() if count}
    failed = checked["failedWrites"]
    lines = [
        f"{number(params['users'], 0)} users provisioned by {params['clients']} clients at once through `cvcsync "
        f"serve` (per user Entra ID's probe `GET /Users?filter=userName eq …`, then `POST`; then PATCHes: "
        f"{params['deactivated']} deactivated, {params['updated']} updated); the emulator faulting "
        f"({key_values(params['faults'])}, {params['cvcMaxAttempts']} attempts per CVC call), the state in moto's S3; "
        f"429 and 5xx retried as an IdP does. Create pass: {number(create['usersPerSecond'])} users/s, "
        f"{number(create['requestsPerSecond'])} requests/s; PATCH pass: {number(patch['requestsPerSecond'])} "
        "requests/s.",
        "",
        *table(["request", "count", "p50 ms", "p99 ms", "answers"], rows),
        "",
    ]
    if done.get("createsPerSecondByTenth"):
        lines += [
            "Creates per second in each tenth of the create pass (moto lists a prefix by scanning the whole bucket, "
            f"which fills as the pass goes; S3 does not): {', '.join(map(number, done['createsPerSecondByTenth']))}.",
            "",
        ]
    lines += [
        f"**Check: {'passed ✅' if checked['passed'] else 'FAILED ❌'}.** CVC holds {number(checked['cvcUsers'], 0)} "
        f"users ({number(checked['expectedInCvc'], 0)} sent active), SCIM serves {number(checked['scimUsers'], 0)}, "
        f"the state holds {number(checked['stateUsers'], 0)}; {number(checked['reports'], 0)} run reports "
        f"({key_values(checked['reportOutcomes'])}); {failed['answers']} failed writes, "
        f"{'some given up' if wrong.get('gaveUp') else 'each retried to success'}, "
        f"{failed['withReport']} with their run's report ({key_values(failed['outcomes'])}); creates answered with "
        f"an error yet stored: {done.get('foundAfterError', '—')}; mismatches: "
        f"{key_values(wrong) if wrong else 'none'}.",
    ]
    costs = data.get("costPerRequest") or []
    if not costs:
        return lines
    cost_rows = []
    for kind in costs[0]["perRequest"]:
        found = [row["perRequest"][kind] for row in costs if kind in row["perRequest"]]
        counts = [cost["requests"] for cost in found]
        flat = max(counts) <= SCIM_FLAT * min(counts) if counts and min(counts) else None
        cost_rows.append([kind, *(_scim_cost(row["perRequest"].get(kind)) for row in costs), verdict(flat)])
    largest = costs[-1]
    create_cost = largest["perRequest"].get("create") or {}
    return [
        *lines,
        "",
        "One request at a time against a state seeded with N users; every S3 request counted by a proxy in front of "
        f"moto (what S3 bills): requests (bytes down / up) per SCIM request. Target: flat, at most {SCIM_FLAT:g}× "
        "from the smallest directory to the largest.",
        "",
        *table(["per request", *(f"{number(row['users'], 0)} users" for row in costs), "flat"], cost_rows),
        "",
        f"A create at {number(largest['users'], 0)} users, by kind: {key_values(create_cost.get('byKind'))}; by "
        f"area: {key_values(create_cost.get('byArea'))}.",
    ]


def _scim_cost(cost: Mapping[str, Any] | None) -> str:
    if cost is None:
        return "—"
    return f"{number(cost['requests'])} ({number(cost['bytesIn'], 0)} B / {number(cost['bytesOut'], 0)} B)"


def security_line(data: Results | None, problem: str | None) -> str:
    if problem:
        return f"**Security checks:** {problem}."
    if data is None:
        return "**Security checks:** not run."
    runs = data["scenarios"]
    passed = sum(1 for s in runs if s.get("passed"))
    checks = "; ".join(
        f"{s['name']} {'✅' if s.get('passed') else '❌'}"
        + (f" ({key_values(s['figures'])})" if s.get("figures") else "")
        for s in runs
    )
    return f"**Security checks:** {passed} of {len(runs)} passed ({data.get('generatedAt', 'time unknown')}): {checks}."


# --- the report --------------------------------------------------------------------------------------------------

SECTIONS: list[tuple[str, str, Section]] = [
    ("Cold start per handler vs its floor and the official SDK", "bench_cold_start", cold_start),
    ("Per-call client overhead vs the official SDK", "bench_client", client),
    ("Sync throughput vs the naive official-SDK loop", "bench_sync", sync_throughput),
    ("Adaptive concurrency vs the official-SDK loops", "bench_concurrency", concurrency),
    ("Unchanged re-upload", "bench_sync", reupload),
    ("Planning at scale vs csv.reader", "bench_sync", planning),
    ("First sync of 1,000,000 users: apply and the bookkeeping around it", "bench_sync", first_sync_at_scale),
    ("Readers", "bench_readers", readers),
    ("Planning engine: columnar candidates vs ours", "bench_columnar", columnar),
    ("Unchanged re-upload: where the time goes", "bench_columnar", reupload_profile),
    ("Queue events per second", "bench_queue", queue),
    ("State cost per single-user change vs the directory's size", "bench_state", state),
    ("SCIM provisioning: an IdP's initial cycle under faults, and the cost per request", "scim", scim_provisioning),
    ("Chaos runs", "chaos", scenarios),
]
# Sections drawn from a key that older results files lack: left out, heading and all, when it is absent.
ONLY_WITH_KEY: dict[Section, str] = {first_sync_at_scale: "firstSyncAtScale"}


def load_results(results_dir: Path) -> tuple[dict[str, Results], dict[str, str]]:
    """Every ``<name>.json`` in ``results_dir``: (readable ones by name, problems by name)."""
    found: dict[str, Results] = {}
    problems: dict[str, str] = {}
    for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems[path.stem] = f"could not read `{path.name}`: {exc}"
            continue
        if not isinstance(data, dict):
            problems[path.stem] = f"`{path.name}` is not a JSON object"
            continue
        found[path.stem] = data
    return found, problems


def _section(render: Section, name: str, found: Mapping[str, Results], problems: Mapping[str, str]) -> list[str]:
    if name in problems:
        return [f"Unreadable: {problems[name]}."]
    if name not in found:
        return [f"Not run (no `bench/results/{name}.json`)."]
    data = found[name]
    try:
        body = render(data)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        return [f"Unreadable: `{name}.json` lacks what this table needs ({type(exc).__name__}: {exc})."]
    return [measured(data), "", *body]


def render_report(
    found: Mapping[str, Results], problems: Mapping[str, str], *, now: datetime, host: Mapping[str, str]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `bench/report.py` at {now.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC from "
        "`bench/results/*.json` (`make bench`); do not edit by hand. The machine may be shared and its figures "
        "noisy: compare rows measured in the same run.",
        "",
        *table(["machine", ""], list(host.items())),
    ]
    for title, name, render in SECTIONS:
        needed = ONLY_WITH_KEY.get(render)
        if needed is not None and needed not in found.get(name, {}):
            continue
        lines += ["", f"## {title}", "", *_section(render, name, found, problems)]
    security = found.get("security")
    try:
        line = security_line(security, problems.get("security"))
    except (KeyError, TypeError, ValueError) as exc:
        line = f"**Security checks:** unreadable ({type(exc).__name__}: {exc})."
    lines += ["", line, ""]
    return "\n".join(lines)


def write_report(
    results_dir: Path = RESULTS_DIR,
    output: Path = OUTPUT,
    *,
    now: datetime | None = None,
    host: Mapping[str, str] | None = None,
) -> str:
    """Render every result in ``results_dir`` into ``output``; return the text."""
    found, problems = load_results(results_dir)
    text = render_report(found, problems, now=now or datetime.now(timezone.utc), host=host or machine())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of <benchmark>.json files")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the Markdown file to write")
    args = parser.parse_args(argv)
    write_report(args.results, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
