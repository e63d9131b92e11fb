"""Adaptive concurrency benchmark: a full sync against an emulator that throttles beyond L calls at once.

Prints, side by side in one run, at 0 ms and at 50 ms of added latency:
- users/s of a full sync of N users through the upload function (CSV in moto's S3 -> plan -> apply -> state ->
  report), and of the apply step alone (``Applier`` over the same plan, concurrency adapting from 4 up to 32);
- where the concurrency settled (over the second half of the run's calls), its range, the throttled share, and
  what the emulator saw (refusals, the most calls it served at once);
- next to the plain batched official-SDK loop (100 users per CreateUser, one call after another: the script an
  integrator writes after reading the API reference; against an emulator with the same latency and limit, which a
  loop never meets: it has one call in flight) and the one-per-call loop (``bench_sync.naive``, same latency).

Targets (issue 15): the run settles at >= 90% of L with <= 2% throttled calls; the full sync never slower than
the batched loop at 0 ms and >= 2x it at 50 ms; at 50 ms >= 500x the one-per-call loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench_sync import BUCKET, KEY, KEY_ID, KEY_SECRET, bench_context, export, naive, upload_event
from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import ENV_CONCURRENCY, ENV_MAX_CONCURRENCY, CvcSettings
from cvcsync.engine.apply import Applier, ApplySettings
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import PlanInput
from cvcsync.inputs.readers import read_records
from cvcsync.platform import services
from cvcsync.platform.triggers.upload import handle
from cvcsync_dev.emulator.moto import start_moto
from cvcsync_dev.emulator.process import EmulatorProcess, start_emulator
from figures import write_figures

START, MAXIMUM = 4, 32  # the defaults: CVCSYNC_CONCURRENCY and CVCSYNC_MAX_CONCURRENCY
EMULATOR_THREADS = 64  # more than the client may send at once: a refusal is the limit's, never a queue's
SETTLE_SHARE, THROTTLED_SHARE = 0.90, 0.02


class Captured(logging.Handler):
    """Keeps the ``concurrency`` field of the run's ``concurrency over the run`` line (logged at INFO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reports: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        report = getattr(record, "concurrency", None)
        if isinstance(report, dict):
            self.reports.append(report)


def limited_emulator(users: int, latency_ms: int, limit: int) -> EmulatorProcess:
    return start_emulator(
        "--capacity",
        str(users * 2),
        "--latency-ms",
        str(latency_ms),
        "--max-concurrency",
        str(limit),
        "--threads",
        str(EMULATOR_THREADS),
        keys=[f"{KEY_ID}:{KEY_SECRET}"],
    )


def emulator_figures(emulator: EmulatorProcess) -> dict[str, Any]:
    limits = emulator.limits()
    return {k: limits[k] for k in ("maxConcurrency", "admitted", "refused", "peakInFlight")}


def full_sync(users: int, latency_ms: int, limit: int) -> dict[str, Any]:
    """The upload function's first full sync of ``users``: users/s (whole), how the concurrency moved, the
    emulator's side."""
    emulator = limited_emulator(users, latency_ms, limit)
    moto = start_moto()
    captured = Captured()
    logger = logging.getLogger("cvcsync.engine.concurrency")
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the line is for this benchmark, not for its output
    try:
        s3 = moto.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        body = export(users)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
        env = {
            **{k: v for k, v in os.environ.items() if k != ENV_CONCURRENCY},
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            "CVC_ENDPOINT": emulator.url,
            "CVCSYNC_S3_ENDPOINT": moto.url,
            "CVCSYNC_S3_REGION": "us-east-1",
            "CVCSYNC_S3_ADDRESSING_STYLE": "path",
            "CVCSYNC_LOG_LEVEL": "WARNING",
            ENV_MAX_CONCURRENCY: str(MAXIMUM),
        }
        started = time.perf_counter()
        answer = orjson.loads(handle(upload_event(len(body)), bench_context(), env=env))
        elapsed = time.perf_counter() - started
        run = answer["runs"][0]
        report = orjson.loads(
            s3.get_object(Bucket=BUCKET, Key=f"cvc-sync/reports/{KEY}/{run['runId']}.json")["Body"].read()
        )
        assert report["outcomes"]["created"] == users, report["outcomes"]
        services.clear_cache()
        return {
            "usersPerSecond": round(users / elapsed, 1),
            "concurrency": captured.reports[-1] if captured.reports else None,
            "emulator": emulator_figures(emulator),
            "calls": report["calls"],
            "durationsMs": report["durationsMs"],
        }
    finally:
        logger.removeHandler(captured)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        moto.stop()
        emulator.stop()


def apply_alone(users: int, latency_ms: int, limit: int) -> dict[str, Any]:
    """The apply step alone over a plan of ``users`` creates, adapting from START up to MAXIMUM."""
    emulator = limited_emulator(users, latency_ms, limit)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "users.csv").write_bytes(export(users, "a"))
            state = ShadowState(folder / "state.sqlite")
            with (folder / "users.csv").open("rb") as stream:
                plan = build_plan(PlanInput(read_records(stream, name="users.csv"), "full"), state, folder)
            client = CvcClient(Credentials(KEY_ID, KEY_SECRET), settings=CvcSettings(endpoint=emulator.url))
            started = time.perf_counter()
            result = Applier(client, ApplySettings(concurrency=START, max_concurrency=MAXIMUM)).run(plan)
            elapsed = time.perf_counter() - started
            assert result.applied == users and result.concurrency is not None, result
            plan.close()
            state.close()
            client.close()
        return {
            "usersPerSecond": round(users / elapsed, 1),
            "concurrency": result.concurrency.to_dict(),
            "emulator": emulator_figures(emulator),
        }
    finally:
        emulator.stop()


def batched_sdk(users: int, latency_ms: int, limit: int) -> float:
    """users/s of the official SDK, 100 users per CreateUser, in a plain loop."""
    from aliyunsdkaliyuncvc.request.v20191030.CreateUserRequest import CreateUserRequest
    from aliyunsdkcore.client import AcsClient

    emulator = limited_emulator(users, latency_ms, limit)
    try:
        import csv
        import io

        client = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou")
        rows = list(csv.DictReader(io.StringIO(export(users, "b").decode())))
        started = time.perf_counter()
        for first in range(0, len(rows), 100):
            batch = rows[first : first + 100]
            request = CreateUserRequest()
            request.set_endpoint(emulator.url.removeprefix("http://"))
            request.set_protocol_type("http")
            request.set_UserInfo(orjson.dumps(batch).decode())
            request.set_Count(len(batch))
            client.do_action_with_exception(request)
        rate = users / (time.perf_counter() - started)
        assert emulator.limits()["refused"] == 0
        return rate
    finally:
        emulator.stop()


def settle_verdict(figures: dict[str, Any], limit: int) -> dict[str, Any]:
    """Whether the run settled at >= 90% of the limit with <= 2% throttled, or why that cannot be told."""
    moved, seen = figures["concurrency"], figures["emulator"]
    if moved is None:
        return {"met": None, "why": "no concurrency line was logged"}
    share = moved["throttled"] / moved["attempts"] if moved["attempts"] else 0.0
    if moved["max"] < limit:
        return {
            "met": None,
            "throttledShare": round(share, 4),
            "why": f"this run may not pass {moved['max']} calls in flight, below the limit",
        }
    if seen["peakInFlight"] < limit:
        return {
            "met": None,
            "throttledShare": round(share, 4),
            "why": f"the emulator never served more than {seen['peakInFlight']} call(s) at once: the limit was not met",
        }
    met = moved["settled"] >= SETTLE_SHARE * limit and share <= THROTTLED_SHARE
    return {"met": met, "settledShare": round(moved["settled"] / limit, 3), "throttledShare": round(share, 4)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="users in the full sync and the apply")
    parser.add_argument("--limit", type=int, default=16, help="calls the emulator serves at once (L)")
    parser.add_argument("--latencies", default="0,50", help="added latency in ms, comma-separated")
    parser.add_argument("--batched-users", type=int, default=100_000, help="sample of the batched loop at 0 ms")
    parser.add_argument("--batched-users-slow", type=int, default=20_000, help="the same at 50 ms and more")
    parser.add_argument("--naive-users", type=int, default=2000, help="sample of the one-per-call loop at 0 ms")
    parser.add_argument("--naive-users-slow", type=int, default=200, help="the same at 50 ms and more")
    args = parser.parse_args(argv)

    runs = []
    for latency in (int(text) for text in args.latencies.split(",")):
        slow = latency > 0
        whole = full_sync(args.users, latency, args.limit)
        alone = apply_alone(args.users, latency, args.limit)
        batched = batched_sdk(args.batched_users_slow if slow else args.batched_users, latency, args.limit)
        one_by_one = naive(args.naive_users_slow if slow else args.naive_users, latency)
        runs.append(
            {
                "latencyMs": latency,
                "limit": args.limit,
                "fullSync": {**whole, "settle": settle_verdict(whole, args.limit)},
                "apply": {**alone, "settle": settle_verdict(alone, args.limit)},
                "batchedSdkPerSecond": round(batched, 1),
                "naivePerSecond": round(one_by_one, 1),
            }
        )

    print(f"emulator limit L = {args.limit} calls at once; concurrency from {START} up to {MAXIMUM}")
    header = f"{'latency':>7} {'what':<10} {'users/s':>9} {'batched':>9} {'ratio':>7} {'1/call':>7} {'ratio':>7}"
    print(f"{header}  concurrency")
    for run in runs:
        for what in ("fullSync", "apply"):
            figures = run[what]
            rate = figures["usersPerSecond"]
            moved = figures["concurrency"] or {}
            print(
                f"{run['latencyMs']:>5}ms {what:<10} {rate:>9,.0f} {run['batchedSdkPerSecond']:>9,.0f} "
                f"{rate / run['batchedSdkPerSecond']:>6.2f}x {run['naivePerSecond']:>7,.1f} "
                f"{rate / run['naivePerSecond']:>6.0f}x  settled {moved.get('settled')} "
                f"(low {moved.get('low')}, high {moved.get('high')}, final {moved.get('final')}), "
                f"throttled {moved.get('throttled')}/{moved.get('attempts')}, emulator {figures['emulator']}"
            )
    print("targets: settle >= 90% of L with <= 2% throttled; >= 1x batched at 0 ms, >= 2x at 50 ms; >= 500x 1/call")
    write_figures(
        "bench_concurrency",
        {
            "params": {
                "users": args.users,
                "limit": args.limit,
                "start": START,
                "maxConcurrency": MAXIMUM,
                "batchedUsers": args.batched_users,
                "batchedUsersSlow": args.batched_users_slow,
                "naiveUsers": args.naive_users,
                "naiveUsersSlow": args.naive_users_slow,
            },
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
