"""Sync benchmark: the object-upload function against the naive official-SDK loop, and planning at scale.

Prints, side by side in one run:
- users/s for a full sync of N users (CSV in moto's S3 -> the upload handler -> the emulator) vs the naive loop
  an integrator would write with the official SDK (one CreateUser per user), at 0 ms and at 50 ms emulator latency
  (the naive loop is timed on a sample: its rate does not depend on N);
- the calls an unchanged re-upload makes;
- peak RSS and rows/s planning a 1M-user snapshot, next to bare ``csv.reader`` over the same file;
- a first sync of 1M users as a whole (``--first-sync-users``, 0 skips it): the upload handler in a fresh process,
  the export streamed to moto from a temp file, the emulator at 0 ms; its wall, plan and apply seconds, the
  bookkeeping around apply (report total - plan - apply: in-flight list, dead letters, state commit, report) and
  the process's own peak RSS.
Targets (issue 3): >= 50x the naive loop; <= 256 MB for 1M users; >= 40% of csv.reader's speed.
Targets (issue 15), the first sync of 1M users: peak RSS <= 256 MB; bookkeeping <= 25% of apply.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from cvcsync.platform import services
from cvcsync.platform.runtime import local_fc_context
from cvcsync.platform.triggers.upload import handle
from cvcsync_dev.emulator.moto import start_moto
from cvcsync_dev.emulator.process import start_emulator
from figures import write_figures

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"
BUCKET, KEY = "bench-uploads", "uploads/full/users.csv"
HEADER = ["userId", "userName", "groupId", "groupName", "departId", "departName", "userEmail", "userMobile"]

PLAN_CHILD = """
import csv, sys, tempfile, time
from pathlib import Path
from cvcsync.engine.plan import build_plan
from cvcsync.engine.workspace import PlanInput
from cvcsync.engine.state import ShadowState
from cvcsync.inputs.readers import read_records
path, what = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if what == "csv":
    with open(path, newline="", encoding="utf-8") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
else:
    with tempfile.TemporaryDirectory() as tmp, open(path, "rb") as f:
        state = ShadowState(Path(tmp) / "state.sqlite")
        plan = build_plan(PlanInput(read_records(f, name=path), "full"), state, Path(tmp))
        rows = plan.rows_read()
elapsed = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(rows, elapsed, peak / 1024)  # VmHWM: this process's own peak (ru_maxrss would inherit the parent's)
"""

# The upload handler for one event, alone in its process, as ``ours()`` runs it; prints one JSON line.
FIRST_SYNC_CHILD = """
import os, sys, time
import orjson
sys.path.insert(0, sys.argv[1])  # bench/: the same event and FC context as ours()
from bench_sync import BUCKET, KEY, bench_context, upload_event
from cvcsync.platform.triggers.upload import handle
def status_mb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":")) / 1024
env = dict(os.environ)
event, context = upload_event(int(sys.argv[2])), bench_context()
before = status_mb("VmRSS")
started = time.perf_counter()
answer = orjson.loads(handle(event, context, env=env))
wall = time.perf_counter() - started
peak = status_mb("VmHWM")  # this process's own peak (ru_maxrss would inherit the parent's)
import boto3  # after the peak is read: the report's download is the bench's, not the handler's
s3 = boto3.session.Session().client(
    "s3", endpoint_url=env["CVCSYNC_S3_ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing",
    aws_secret_access_key="testing", aws_session_token="testing",
)
run = answer["runs"][0]
key = f"cvc-sync/reports/{KEY}/{run['runId']}.json"
report = orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
figures = {"wallS": wall, "peakMb": peak, "beforeMb": before, "runId": run["runId"], "status": report["status"]}
figures.update({k: report[k] for k in ("durationsMs", "outcomes", "calls")})
print(orjson.dumps(figures).decode())
"""
BOOKKEEPING_SHARE = 0.25  # issue 15: the bookkeeping around apply, at most this share of apply
PEAK_MB = 256.0  # issue 15: every path at 1M users, in a 512 MB function with room to spare


def export(n: int, prefix: str = "u", first: int = 0) -> bytes:
    """n users numbered from ``first``, with the header."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for i in range(first, first + n):
        writer.writerow(
            [
                f"{prefix}{i:07d}",
                f"用户{i}",
                "88",
                "示例科技",
                f"D{i % 50}",
                f"部门{i % 50}",
                f"{prefix}{i}@example.com",
                f"138{i:08d}",
            ]
        )
    return out.getvalue().encode()


def upload_event(size: int) -> bytes:
    """The OSS PutObject event of the export at ``BUCKET``/``KEY``, as FC hands it to the upload function."""
    return orjson.dumps(
        {
            "events": [
                {
                    "eventName": "ObjectCreated:PutObject",
                    "eventSource": "acs:oss",
                    "region": "cn-hangzhou",
                    "oss": {"bucket": {"name": BUCKET}, "object": {"key": KEY, "size": size, "eTag": "x"}},
                }
            ]
        }
    )


def bench_context() -> Any:
    """An FC context with an hour to spend and moto's dummy credentials."""
    creds = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
    return local_fc_context("bench", timeout=3600, credentials=creds)


def handler_env(emulator_url: str, moto_url: str) -> dict[str, str]:
    """The upload function's environment: the emulator as CVC, moto as S3 (path addressing), warnings only."""
    return {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
        "CVC_ENDPOINT": emulator_url,
        "CVCSYNC_S3_ENDPOINT": moto_url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }


def ours(users: int, latency_ms: int) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """(users/s of the first sync, its report, the unchanged re-upload's report)."""
    emulator = start_emulator(
        "--capacity", str(users * 2), "--latency-ms", str(latency_ms), keys=[f"{KEY_ID}:{KEY_SECRET}"]
    )
    moto = start_moto()
    try:
        s3 = moto.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        body = export(users)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
        env = handler_env(emulator.url, moto.url)
        event = upload_event(len(body))
        reports = []
        elapsed = 0.0
        for attempt in range(2):
            started = time.perf_counter()
            answer = orjson.loads(handle(event, bench_context(), env=env))
            if attempt == 0:
                elapsed = time.perf_counter() - started
            run = answer["runs"][0]
            key = f"cvc-sync/reports/{KEY}/{run['runId']}.json"
            reports.append(orjson.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        services.clear_cache()
        assert reports[0]["outcomes"]["created"] == users, reports[0]["outcomes"]
        return users / elapsed, reports[0], reports[1]
    finally:
        moto.stop()
        emulator.stop()


def naive(users: int, latency_ms: int) -> float:
    """users/s of the official SDK, one CreateUser per user (the loop the docs' example suggests)."""
    from aliyunsdkaliyuncvc.request.v20191030.CreateUserRequest import CreateUserRequest
    from aliyunsdkcore.client import AcsClient

    emulator = start_emulator(
        "--capacity", str(users * 2), "--latency-ms", str(latency_ms), keys=[f"{KEY_ID}:{KEY_SECRET}"]
    )
    try:
        client = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou")
        rows = list(csv.DictReader(io.StringIO(export(users, "n").decode())))
        started = time.perf_counter()
        for row in rows:
            request = CreateUserRequest()
            request.set_endpoint(emulator.url.removeprefix("http://"))
            request.set_protocol_type("http")
            request.set_UserInfo(orjson.dumps([row]).decode())
            request.set_Count(1)
            client.do_action_with_exception(request)
        return users / (time.perf_counter() - started)
    finally:
        emulator.stop()


def planning(rows: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """((rows/s, peak MB) planning, (rows/s, peak MB) csv.reader), each in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.csv"
        write_export(path, rows)
        figures = []
        for what in ("plan", "csv"):
            out = subprocess.run(
                [sys.executable, "-c", PLAN_CHILD, str(path), what], capture_output=True, text=True, check=True
            ).stdout.split()
            counted, elapsed, peak = int(out[0]), float(out[1]), float(out[2])
            figures.append((counted / elapsed, peak))
        return figures[0], figures[1]


def write_export(path: Path, users: int) -> int:
    """``users`` distinct users to ``path``, 100k rows at a time (never the whole export in memory); its size."""
    with path.open("wb") as f:
        for start in range(0, users, 100_000):  # numbered on across chunks: a snapshot of distinct users
            chunk = export(min(100_000, users - start), first=start)
            f.write(chunk.split(b"\n", 1)[1] if start else chunk)
    return path.stat().st_size


def first_sync_at_scale(users: int) -> dict[str, Any]:
    """A first sync of ``users`` users through the upload handler, alone in a fresh process (its own peak RSS):
    the export streamed to moto from a temp file, the emulator at 0 ms. The figures the child printed, checked."""
    emulator = start_emulator("--capacity", str(users * 2), "--latency-ms", "0", keys=[f"{KEY_ID}:{KEY_SECRET}"])
    moto = start_moto()
    try:
        s3 = moto.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "users.csv"
            size = write_export(path, users)
            s3.upload_file(str(path), BUCKET, KEY)
        env = handler_env(emulator.url, moto.url)
        child = subprocess.run(
            [sys.executable, "-c", FIRST_SYNC_CHILD, str(Path(__file__).resolve().parent), str(size)],
            capture_output=True,
            text=True,
            env=env,
        )
        if child.returncode != 0:
            raise RuntimeError(
                f"first sync of {users} users: the child exited with {child.returncode}; its stderr ends:\n"
                + child.stderr[-4000:]
            )
        figures: dict[str, Any] = orjson.loads(child.stdout.splitlines()[-1])
    finally:
        moto.stop()
        emulator.stop()
    created = figures["outcomes"].get("created")
    if created != users:
        raise RuntimeError(
            f"first sync of {users} users created {created} (run {figures['runId']}, status {figures['status']}, "
            f"outcomes {figures['outcomes']}): the figures would not measure a first sync of {users} users"
        )
    return figures


def first_sync_figures(users: int, measured: dict[str, Any]) -> dict[str, Any]:
    """The ``firstSyncAtScale`` figures: seconds, the bookkeeping around apply, its share of apply, and the targets."""
    durations = measured["durationsMs"]
    plan_s, apply_s, total_s = durations["plan"] / 1000, durations["apply"] / 1000, durations["total"] / 1000
    bookkeeping_s = total_s - plan_s - apply_s
    share = bookkeeping_s / apply_s  # > 0: the run created every user (first_sync_at_scale checked)
    return {
        "users": users,
        "wallS": round(measured["wallS"], 2),
        "planS": round(plan_s, 2),
        "applyS": round(apply_s, 2),
        "totalS": round(total_s, 2),
        "bookkeepingS": round(bookkeeping_s, 2),
        "bookkeepingOfApply": round(share, 4),
        "peakMb": round(measured["peakMb"], 1),
        "beforeHandleMb": round(measured["beforeMb"], 1),
        "usersPerSecond": round(users / measured["wallS"], 1),
        "durationsMs": durations,
        "outcomes": measured["outcomes"],
        "calls": measured["calls"],
        "targets": {"peakMb": PEAK_MB, "bookkeepingOfApply": BOOKKEEPING_SHARE},
    }


def print_first_sync(figures: dict[str, Any]) -> None:
    """The figures and the two targets (issue 15), each with met / not met."""
    users, share = figures["users"], figures["bookkeepingOfApply"]
    peak_met = "met" if figures["peakMb"] <= PEAK_MB else "not met"
    share_met = "met" if share <= BOOKKEEPING_SHARE else "not met"
    print(f"first sync of {users} users, the upload handler in a fresh process (emulator at 0 ms):")
    print(
        f"  wall {figures['wallS']:.1f} s ({figures['usersPerSecond']:.0f} users/s); plan {figures['planS']:.1f} s, "
        f"apply {figures['applyS']:.1f} s, bookkeeping {figures['bookkeepingS']:.1f} s "
        f"(report total {figures['totalS']:.1f} s)"
    )
    print(f"  calls {figures['calls']}; outcomes {figures['outcomes']}")
    print(
        f"  peak RSS {figures['peakMb']:.0f} MB (before the handler {figures['beforeHandleMb']:.0f} MB); "
        f"target <= {PEAK_MB:g} MB at 1M users: {peak_met}"
    )
    print(f"  bookkeeping / apply {share:.0%}; target <= {BOOKKEEPING_SHARE:.0%}: {share_met}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--naive-users", type=int, default=2000, help="sample size of the naive loop at 0 ms")
    parser.add_argument("--naive-users-slow", type=int, default=200, help="sample size of the naive loop at 50 ms")
    parser.add_argument("--plan-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--first-sync-users", type=int, default=1_000_000, help="users of the first sync at scale (0: skip it)"
    )
    args = parser.parse_args()

    fast_rate, first, unchanged = ours(args.users, 0)
    slow_rate, _, _ = ours(args.users, 50)
    naive_fast = naive(args.naive_users, 0)
    naive_slow = naive(args.naive_users_slow, 50)
    (plan_rate, plan_peak), (csv_rate, csv_peak) = planning(args.plan_rows)
    at_scale = (
        first_sync_figures(args.first_sync_users, first_sync_at_scale(args.first_sync_users))
        if args.first_sync_users
        else None
    )

    print(f"{'measure':<66} {'cvc-sync':>12} {'baseline':>12} {'ratio':>8}")
    rows = [
        (f"users/s, full sync of {args.users} users, 0 ms (baseline: naive SDK loop)", fast_rate, naive_fast),
        (f"users/s, full sync of {args.users} users, 50 ms latency (naive SDK loop)", slow_rate, naive_slow),
        (f"rows/s planning {args.plan_rows} users (baseline: bare csv.reader)", plan_rate, csv_rate),
    ]
    for name, mine, theirs in rows:
        print(f"{name:<66} {mine:>12.0f} {theirs:>12.0f} {mine / theirs:>7.2f}x")
    print(
        f"{'peak RSS MB planning ' + str(args.plan_rows) + ' users (baseline: csv.reader)':<66} "
        f"{plan_peak:>12.0f} {csv_peak:>12.0f}"
    )
    print(f"{'CVC calls, first sync':<66} {first['calls']}  durations ms {first['durationsMs']}")
    print(
        f"{'CVC calls, unchanged re-upload':<66} {unchanged['calls']} (unchanged: {unchanged['outcomes']['unchanged']})"
    )
    print("targets: >= 50x the naive loop; <= 256 MB for 1M users; >= 40% of csv.reader's rows/s")
    if at_scale is not None:
        print_first_sync(at_scale)
    write_figures(
        "bench_sync",
        {
            "params": {
                "users": args.users,
                "naiveUsers": args.naive_users,
                "naiveUsersSlow": args.naive_users_slow,
                "planRows": args.plan_rows,
                "firstSyncUsers": args.first_sync_users,
            },
            "fullSync": [
                {"latencyMs": 0, "usersPerSecond": round(fast_rate, 1), "naivePerSecond": round(naive_fast, 1)},
                {"latencyMs": 50, "usersPerSecond": round(slow_rate, 1), "naivePerSecond": round(naive_slow, 1)},
            ],
            "firstSync": {"calls": first["calls"], "durationsMs": first["durationsMs"]},
            "unchangedReupload": {"calls": unchanged["calls"], "unchanged": unchanged["outcomes"]["unchanged"]},
            "planning": {
                "rows": args.plan_rows,
                "rowsPerSecond": round(plan_rate, 1),
                "peakMb": round(plan_peak, 1),
                "csvRowsPerSecond": round(csv_rate, 1),
                "csvPeakMb": round(csv_peak, 1),
            },
            **({"firstSyncAtScale": at_scale} if at_scale is not None else {}),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
