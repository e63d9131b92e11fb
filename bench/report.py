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
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# The sections live beside this file, one module per group, imported by plain name as every bench script imports
# its neighbours (bench/ is on sys.path when a script in it runs).
from report_changes import queue, scenarios, scim_provisioning, security_line, state
from report_format import Results, Section, measured, table
from report_overhead import client, cold_start
from report_sync import (
    columnar,
    concurrency,
    first_sync_at_scale,
    planning,
    readers,
    reupload,
    reupload_profile,
    sync_throughput,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
OUTPUT = BENCH_DIR / "RESULTS.md"
PACKAGES = ("requests", "boto3", "orjson", "aliyun-python-sdk-core")


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
