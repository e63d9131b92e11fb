"""bench/report.py over small fake results: the rows, the ratios and the verdicts against the issues' targets."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

# As `python bench/report.py` runs: bench/ on sys.path, where the report imports its section modules by plain name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from report import main, write_report

NOW = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
HOST = {"CPU": "Test CPU", "cores": "2", "RAM": "4.0 GiB", "OS": "TestOS", "Python": "3.11.7", "requests": "2.34.2"}


def write(folder: Path, name: str, data: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_bytes(orjson.dumps(data))


def stamp(**figures: Any) -> dict[str, Any]:
    return {"generatedAt": "2026-01-02T03:00:00Z", "python": "3.11.7", **figures}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    write(
        folder,
        "bench_cold_start",
        stamp(
            runs=5,
            sdk={"what": "import + one CreateUser", "ms": 200.0, "cpuMs": 180.0, "importSplitMs": {"official SDK": 20}},
            handlers=[
                {
                    "name": "queue_changes",
                    "event": "MNS, one upsert",
                    "ms": 160.0,
                    "cpuMs": 150.0,
                    "processMs": 170.0,
                    "boto3Imported": False,
                    "importSplitMs": {"requests+urllib3": 100.0, "cvcsync": 40.0},
                    "uncompiled": {"ms": 400.0},
                    "floor": {
                        "kind": "requests",
                        "target": 1.1,
                        "processMs": 160.0,
                        "ms": 150.0,
                        "ratio": 1.0625,
                        "inProcessRatio": 1.0667,
                    },
                },
                {
                    "name": "scheduled",
                    "event": "timer",
                    "ms": 800.0,
                    "cpuMs": 600.0,
                    "processMs": 810.0,
                    "boto3Imported": True,
                    "floor": {
                        "kind": "boto3",
                        "target": 1.2,
                        "processMs": 500.0,
                        "ms": 480.0,
                        "ratio": 1.62,
                        "inProcessRatio": 1.6667,
                    },
                },
            ],
            floors={
                "requests": {
                    "what": "import requests + hmac, one signed CreateUser",
                    "ms": 150.0,
                    "processMs": 160.0,
                    "target": 1.1,
                    "importSplitMs": {"requests+urllib3": 80.0},
                },
                "boto3": {"what": "import boto3 + head_object", "ms": 480.0, "processMs": 500.0, "target": 1.2},
            },
            uncompiled={"runs": 5, "sdk": {"ms": 600.0}},
            requestsImport={
                "oursMs": 120.0,
                "oursSplitMs": {"urllib3": 30},
                "sdkVendoredMs": 90.0,
                "sdkVendoredSplitMs": {},
            },
        ),
    )
    write(
        folder,
        "bench_client",
        stamp(
            params={"users": 1000},
            importMs={"ours": 100.0, "sdk": 200.0},
            callWallMs={"ours": 1.0, "sdk": 4.0},
            callCpuMs={"ours": 0.5, "sdk": 1.0},
            usersPerSecond={"ours": 30000.0, "sdk": 300.0},
        ),
    )
    write(
        folder,
        "bench_sync",
        stamp(
            params={"users": 10000},
            fullSync=[
                {"latencyMs": 0, "usersPerSecond": 6000.0, "naivePerSecond": 100.0},
                {"latencyMs": 50, "usersPerSecond": 800.0, "naivePerSecond": 20.0},
            ],
            firstSync={"calls": {"CreateUser": 100, "GetAccountInfo": 1}, "durationsMs": {}},
            unchangedReupload={"calls": {"GetAccountInfo": 1}, "unchanged": 10000},
            planning={
                "rows": 1_000_000,
                "rowsPerSecond": 50000.0,
                "peakMb": 300.0,
                "csvRowsPerSecond": 100000.0,
                "csvPeakMb": 20.0,
            },
        ),
    )
    write(
        folder,
        "bench_readers",
        stamp(
            rows=1000,
            columns=7,
            sizeMb=0.1,
            repeats=3,
            runs=[
                {"label": "csv.reader, bare", "rowsPerSecond": 1000000.0, "ofBareCsv": 1.0},
                {"label": "read_records", "rowsPerSecond": 450000.0, "ofBareCsv": 0.45},
            ],
            sheets={
                "rows": 1000,
                "csvMb": 0.1,
                "xlsxMb": 0.05,
                "repeats": 3,
                "readRecords": {
                    "csv": {"rowsPerSecond": 400000.0, "peakMb": 20.0},
                    "xlsx": {"rowsPerSecond": 8000.0, "peakMb": 30.0},
                    "xlsxOfCsv": {"rowsPerSecond": 0.02, "peakMb": 1.5},
                },
                "buildPlan": {
                    "csv": {"rowsPerSecond": 40000.0, "peakMb": 40.0},
                    "xlsx": {"rowsPerSecond": 6000.0, "peakMb": 50.0},
                    "xlsxOfCsv": {"rowsPerSecond": 0.15, "peakMb": 1.25},
                },
            },
        ),
    )
    write(
        folder,
        "bench_queue",
        stamp(
            eventsPerSecond=[
                {"batch": 10, "stateBucket": False, "eventsPerSecond": 500.0},
                {"batch": 10, "stateBucket": True, "eventsPerSecond": 250.0},
                {"batch": 100, "stateBucket": False, "eventsPerSecond": 2000.0},
            ]
        ),
    )
    write(
        folder,
        "chaos",
        {
            "generatedAt": "2026-01-02T03:30:00Z",
            "scenarios": [
                {
                    "name": "throttle storm",
                    "users": 5000,
                    "passed": True,
                    "seconds": 12.5,
                    "figures": {"retries": 42, "mode": "fc"},
                },
                {
                    "name": "key revoked",
                    "users": 100,
                    "passed": False,
                    "seconds": 1.25,
                    "figures": {"deadLetters": 100},
                },
            ],
        },
    )
    write(
        folder,
        "security",
        {
            "generatedAt": "2026-01-02T03:40:00Z",
            "scenarios": [{"name": "no secrets in logs", "users": 3000, "passed": True, "seconds": 2.0, "figures": {}}],
        },
    )
    return folder


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def report(results: Path, tmp_path: Path) -> str:
    output = tmp_path / "out" / "RESULTS.md"
    text = write_report(results, output, now=NOW, host=HOST)
    assert output.read_text(encoding="utf-8") == text
    return text


def test_header_names_the_time_machine_and_packages(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    assert "2026-01-02 03:04 UTC" in text
    assert row(text, "CPU") == ["CPU", "Test CPU"] and row(text, "requests") == ["requests", "2.34.2"]


def test_cold_start_rows_ratio_and_target(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    queue = row(text, "`queue_changes`")
    assert queue[2:8] == ["160", "200", "1.25×", "150 / 180", "no", "≤ official SDK (ratio ≥ 1)"]
    assert queue[8] == "met ✅"
    scheduled = row(text, "`scheduled`")
    assert scheduled[4] == "0.25×" and scheduled[6] == "yes" and scheduled[8] == "not met ❌"
    assert "| `queue_changes` | 400 | 600 | 1.50× |" in text  # without .pyc
    assert row(text, "`import requests` (cvc-sync's)")[1] == "120"


def test_cold_start_against_the_floors(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    floor_rows = [line for line in text.splitlines() if line.startswith("| `") and "its floor" in line]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in floor_rows]
    assert cells == [
        ["`queue_changes`", "170", "requests", "160", "1.06×", "1.07×", "≤ 1.1× its floor", "met ✅"],
        ["`scheduled`", "810", "boto3", "500", "1.62×", "1.67×", "≤ 1.2× its floor", "not met ❌"],
    ]
    assert "requests: import requests + hmac, one signed CreateUser; boto3: import boto3 + head_object" in text
    assert row(text, "requests floor")[1:] == ["80.0", "—", "—", "80.0"]  # its import split, beside ours


def test_cold_start_results_without_floors_still_render(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    handler = {"name": "queue_changes", "event": "MNS", "ms": 150.0, "cpuMs": 140.0, "boto3Imported": False}
    write(folder, "bench_cold_start", stamp(runs=5, sdk={"ms": 300.0, "cpuMs": 280.0}, handlers=[handler]))
    text = report(folder, tmp_path)
    assert row(text, "`queue_changes`")[4] == "2.00×" and "ours / floor" not in text


def test_client_overhead_ratios(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    assert row(text, "import time (ms, fresh processes)")[1:5] == ["100", "200", "2.00×", "—"]
    assert row(text, "GetAccountInfo wall time per call (ms, median)")[3] == "4.00×"
    assert row(text, "users/s creating 1000 users (ours batched, SDK one per call)")[3] == "100×"


def test_sync_throughput_against_fifty_times_the_naive_loop(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    fast = row(text, "users/s, full sync of 10000 users, 0 ms emulator latency")
    assert fast[1:] == ["6,000", "100", "60.00×", "≥ 50× the naive loop", "met ✅"]
    slow = row(text, "users/s, full sync of 10000 users, 50 ms emulator latency")
    assert slow[3] == "40.00×" and slow[5] == "not met ❌"


def test_reupload_and_planning_targets(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    assert row(text, "unchanged re-upload")[1:] == ["GetAccountInfo=1", "10,000"]
    assert row(text, "first sync")[1] == "CreateUser=100, GetAccountInfo=1"
    speed = row(text, "rows/s planning 1,000,000 users")
    assert speed[1:] == ["50,000", "100,000", "50%", "≥ 40% of csv.reader", "met ✅"]
    memory = row(text, "peak RSS MB planning 1,000,000 users")
    assert memory[1:3] == ["300", "20.0"] and memory[4:] == ["≤ 256 MB at 1M users", "not met ❌"]


def test_readers_and_queue(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    assert row(text, "read_records")[1:] == ["450,000", "45%"]
    assert row(text, "`build_plan` rows/s")[1:] == ["40,000", "6,000", "15.0%"]  # the same rows as .xlsx and CSV
    assert row(text, "`read_records` peak RSS MB")[1:] == ["20.0", "30.0", "1.50×"]
    assert row(text, "batches of 10")[1:] == ["500", "250", "0.50×"]
    assert row(text, "batches of 100")[1:] == ["2,000", "not run", "—"]


def test_chaos_and_security_render_generically(results: Path, tmp_path: Path) -> None:
    text = report(results, tmp_path)
    assert "1 of 2 scenarios passed." in text
    assert row(text, "throttle storm")[1:] == ["5,000", "passed ✅", "12.5", "retries=42, mode=fc"]
    assert row(text, "key revoked")[2] == "FAILED ❌"
    assert "**Security checks:** 1 of 1 passed" in text and "no secrets in logs ✅" in text


def test_missing_inputs_say_not_run(tmp_path: Path) -> None:
    text = report(tmp_path / "nothing-here", tmp_path)
    assert text.count("Not run (no `bench/results/") == 13
    assert "Not run (no `bench/results/chaos.json`)." in text
    assert "**Security checks:** not run." in text


def test_unreadable_inputs_are_named_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "chaos.json").write_text("{not json", encoding="utf-8")
    write(folder, "bench_queue", stamp(somethingElse=1))
    text = report(folder, tmp_path)
    assert "Unreadable: could not read `chaos.json`" in text
    assert "Unreadable: `bench_queue.json` lacks what this table needs (KeyError" in text


def test_command_line_takes_results_and_output(results: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli" / "RESULTS.md"
    assert main(["--results", str(results), "--output", str(output)]) == 0
    assert "| `queue_changes` |" in output.read_text(encoding="utf-8")


def test_columnar_section_shares_verdicts_and_the_profile(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    run = {"wallS": 2.0, "cpuS": 2.0, "peakMb": 300.0, "plain": 10}
    data = {
        "generatedAt": "2026-01-02T03:00:00Z",
        "python": "3.11.7",
        "rows": 10,
        "xlsxRows": 5,
        "repeats": 1,
        "versions": {"duckdb": "1.5.5"},
        "skipped": {"polars": "not installed in /x/python"},
        "tasks": {
            "ours": {"csv": {"wallS": 1.0, "cpuS": 1.0, "peakMb": 20.0}, "diff": {**run, "wallS": 4.0}},
            "duckdb": {"diff": {**run, "wallS": 2.0, "peakMb": 200.0}, "gbk": {"error": "CSV Error on Line: 7"}},
        },
        "identical": {"duckdb diff": True},
        "imports": {"duckdb": {"wallMs": 90.0, "importtimeMs": 80.0}},
        "wheels": [
            {"target": "cp312-x86_64", "package": "duckdb", "version": "1.5.5", "zipMb": 21.5, "unpackedMb": 60.9}
        ],
        "profile": [
            {
                "users": 1000,
                "wallS": 1.5,
                "peakMb": 50.0,
                "calls": {"GetAccountInfo": 1},
                "stages": {"state commit (gzip, write)": 1.0, "decide (SQL diff against the state)": 0.5},
            }
        ],
    }
    (folder / "bench_columnar.json").write_bytes(orjson.dumps(data))
    text = write_report(folder, tmp_path / "R.md", now=NOW, host=HOST)
    assert "## Planning engine: columnar candidates vs ours" in text
    assert "| ours | duckdb 1.5.5 |" in text
    assert "4.00 s, 300 MB, 25% of csv.reader" in text  # ours: 1 s of csv.reader / 4 s
    assert "met ✅ (50%, 200 MB)" in text and "not met ❌ (25%, 300 MB)" in text
    assert "n/a: CSV Error on Line: 7" in text
    assert "polars: not installed in /x/python" in text
    assert "| duckdb 1.5.5 | 21.5 / 60.9 |" in text
    assert "state commit (gzip, write) 1.00 s, decide (SQL diff against the state) 0.50 s" in text


def scim_cost(requests: float, bytes_in: int = 3000) -> dict[str, Any]:
    return {
        "requests": requests,
        "byKind": {"GET": 5.0, "PUT": 9.0},
        "byArea": {"state": 12.0},
        "bytesIn": bytes_in,
        "bytesOut": 4000,
        "p50Ms": 200.0,
    }


def test_scim_section_rates_latency_check_and_cost_against_the_directory(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    check = {
        "passed": False,
        "mismatches": {"gaveUp": 0, "missingInCvc": 2, "serverErrors": 0},
        "cvcUsers": 8998,
        "expectedInCvc": 9000,
        "scimUsers": 10000,
        "stateUsers": 8998,
        "reports": 13100,
        "reportOutcomes": {"created": 9990, "updated": 2010, "deleted": 1000, "retried": 100},
        "failedWrites": {"answers": 104, "namingRun": 100, "withReport": 100, "outcomes": {"retried": 100}},
    }
    provisioning = {
        "passes": {
            "create": {"seconds": 1000.0, "requests": 20100, "requestsPerSecond": 20.1, "usersPerSecond": 10.0},
            "patch": {"seconds": 300.0, "requests": 3030, "requestsPerSecond": 10.1},
        },
        "requests": {
            "create": {"count": 10100, "p50Ms": 350.0, "p99Ms": 900.0, "statuses": {"201": 10000, "503": 100}},
            "probe": {"count": 10100, "p50Ms": 12.0, "p99Ms": 80.0, "statuses": {"200": 10100}},
        },
        "createsPerSecondByTenth": [9.5, 8.0, 3.25],
        "foundAfterError": 0,
    }
    costs = [
        {"users": 1000, "perRequest": {"create": scim_cost(22.0), "update": scim_cost(20.0)}},
        {"users": 100000, "perRequest": {"create": scim_cost(22.0, 3100), "update": scim_cost(30.0)}},
    ]
    params = {
        "users": 10000,
        "clients": 4,
        "faults": {"throttle_rate": 0.05},
        "cvcMaxAttempts": 2,
        "deactivated": "1 in 10",
        "updated": "2 in 10",
    }
    write(folder, "scim", stamp(params=params, provisioning=provisioning, check=check, costPerRequest=costs))
    text = write_report(folder, tmp_path / "R.md", now=NOW, host=HOST)
    assert "## SCIM provisioning: an IdP's initial cycle under faults, and the cost per request" in text
    assert "10,000 users provisioned by 4 clients at once" in text and "throttle_rate=0.05, 2 attempts" in text
    assert "Create pass: 10.0 users/s, 20.1 requests/s; PATCH pass: 10.1 requests/s." in text
    assert row(text, "create")[1:] == ["10,100", "350", "900", "201=10000, 503=100"]
    assert row(text, "probe")[2:4] == ["12.0", "80.0"]
    assert "tenth of the create pass (moto lists a prefix by scanning the whole bucket" in text
    assert "S3 does not): 9.50, 8.00, 3.25." in text
    assert "**Check: FAILED ❌.** CVC holds 8,998 users (9,000 sent active)" in text
    assert "104 failed writes, each retried to success, 100 with their run's report (retried=100)" in text
    assert "creates answered with an error yet stored: 0;" in text
    assert "mismatches: missingInCvc=2." in text
    assert row(text, "per request") == ["per request", "1,000 users", "100,000 users", "flat"]
    assert row(text, "update")[1:] == ["20.0 (3,000 B / 4,000 B)", "30.0 (3,000 B / 4,000 B)", "not met ❌"]
    assert "| create | 22.0 (3,000 B / 4,000 B) | 22.0 (3,100 B / 4,000 B) | met ✅ |" in text
    assert "A create at 100,000 users, by kind: GET=5, PUT=9; by area: state=12." in text


def test_state_cost_per_change_before_and_after_and_flat(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    change = {"eventsPerSecond": 13.0, "bytesInPerChange": 2400, "concurrent": {"eventsPerSecond": 16.0, "failed": 0}}
    old = {"eventsPerSecond": 6.0, "bytesInPerChange": 78000, "concurrent": {"eventsPerSecond": 6.0, "failed": 1}}
    data = {
        "perChange": [
            {"users": 1000, "requestsPerChange": 12.0, **change},
            {"users": 100000, "requestsPerChange": 14.0, **change},
        ],
        "checkoutWithPending": [{"pending": 200, "seconds": 0.6, "requests": 209, "bytesIn": 112262}],
        "before": {"perChange": [{"users": 1000, "requestsPerChange": 29.0, **old}]},
    }
    write(folder, "bench_state", stamp(**data))
    text = report(folder, tmp_path)
    assert row(text, "1,000")[1:4] == ["6.00 → 13.0", "29.0 → 12.0", "78,000 → 2,400"]
    assert row(text, "100,000")[2] == "14.0"  # no figure before at that size
    assert "(≤ 1.1×): not met ❌" in text  # 12 -> 14 requests: not flat
    assert row(text, "200")[1:3] == ["0.60", "209"]


def first_sync_at_scale(users: int, bookkeeping: float, apply: float, peak: float) -> dict[str, Any]:
    return {
        "users": users,
        "wallS": 60.0,
        "planS": 8.0,
        "applyS": apply,
        "totalS": 8.0 + apply + bookkeeping,
        "bookkeepingS": bookkeeping,
        "bookkeepingOfApply": round(bookkeeping / apply, 4),
        "peakMb": peak,
        "usersPerSecond": users / 60.0,
        "calls": {"CreateUser": users // 100, "GetAccountInfo": 1},
    }


def test_first_sync_at_scale_judges_the_bookkeeping_against_apply_and_the_peak_at_1m(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    sync = stamp(firstSyncAtScale=first_sync_at_scale(1_000_000, bookkeeping=21.0, apply=28.0, peak=135.0))
    write(folder, "bench_sync", sync)
    text = write_report(folder, tmp_path / "RESULTS.md", now=NOW, host=HOST)
    assert "## First sync of 1,000,000 users" in text
    assert row(text, "bookkeeping s (of apply)")[1:] == ["21.0 (75%)", "≤ 25% of apply", "not met ❌"]
    assert row(text, "peak RSS MB")[1:] == ["135", "≤ 256 MB at 1M users", "met ✅"]
    assert "CreateUser=10000, GetAccountInfo=1" in text

    sync = stamp(firstSyncAtScale=first_sync_at_scale(100_000, bookkeeping=0.5, apply=4.0, peak=300.0))
    write(folder, "bench_sync", sync)
    text = write_report(folder, tmp_path / "RESULTS.md", now=NOW, host=HOST)
    assert row(text, "bookkeeping s (of apply)")[3] == "met ✅"
    assert row(text, "peak RSS MB")[3] == "n/a (100,000 users)"  # the target is at 1M users


def test_results_without_the_first_sync_at_scale_leave_its_section_out(results: Path, tmp_path: Path) -> None:
    assert "## First sync of" not in report(results, tmp_path)
