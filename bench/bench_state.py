"""State benchmark: what one user change costs the shadow state, against the size of the directory.

Single-event changes (one message, one upsert of a new user) through the queue's writer (``runs.changes``) against
the emulator, with the shadow state in moto's S3, at directories of 1k, 10k and 100k users. For each size: events/s
one after another, events/s with four writers at once (different users), and per change the state's store
requests and bytes (the run's report is not counted: it is no state). Then the batch path's checkout with N journal
entries pending (the change path's entries it folds in). ``make bench`` runs it from ``bench_queue.py``; alone:
``.venv/bin/python bench/bench_state.py [--sizes 1000,10000] [--changes 60]``.

The figures before the journal (the whole snapshot downloaded and re-uploaded per change) were measured with this
script on the code of that time and are kept in ``BEFORE`` for the side-by-side table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from cvcsync import clock
from cvcsync.adapters.objects import DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectStore
from cvcsync.engine.state import ShadowState, StateStore
from cvcsync.inputs.events.queue import parse_queue_event
from cvcsync.inputs.records import content_hash, parse_user
from cvcsync.platform import services
from cvcsync.platform.context import SyncContext
from cvcsync.platform.runtime import from_context
from cvcsync.runs.changes import sync_changes
from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, start_moto
from cvcsync_dev.emulator.process import start_emulator
from figures import write_figures

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"
BUCKET = "bench-state"
SIZES = (1_000, 10_000, 100_000)
WRITERS = 4
PENDING = (0, 200, 1800)  # journal entries pending at the batch path's checkout (a checkout folds 2,000 first)
SEED_AT = "2024-05-01T00:00:00.000000Z"
PAGE = 1000  # keys per LIST page, as S3 answers

# Measured with this script before the journal (the old change path: the whole snapshot down and up per run), on the
# 2-core machine of bench/RESULTS.md, 40 changes per size.
BEFORE: dict[str, Any] = {
    "measuredAt": "2026-12-06T06:14:57Z",
    "perChange": [
        {
            "users": 1000,
            "eventsPerSecond": 6.3,
            "requestsPerChange": 28.95,
            "bytesInPerChange": 78440,
            "bytesOutPerChange": 39482,
            "requestsByKind": {"DELETE": 11.95, "GET": 6.0, "HEAD": 5.0, "LIST": 2.0, "PUT": 4.0},
            "concurrent": {"writers": 4, "changes": 40, "eventsPerSecond": 6.2, "failed": 1, "contentionRetries": 36},
        },
        {
            "users": 10000,
            "eventsPerSecond": 5.4,
            "requestsPerChange": 28.95,
            "bytesInPerChange": 684947,
            "bytesOutPerChange": 342737,
            "requestsByKind": {"DELETE": 11.95, "GET": 6.0, "HEAD": 5.0, "LIST": 2.0, "PUT": 4.0},
            "concurrent": {"writers": 4, "changes": 40, "eventsPerSecond": 4.0, "failed": 1, "contentionRetries": 54},
        },
        {
            "users": 100000,
            "eventsPerSecond": 1.9,
            "requestsPerChange": 28.95,
            "bytesInPerChange": 6748145,
            "bytesOutPerChange": 3374382,
            "requestsByKind": {"DELETE": 11.95, "GET": 6.0, "HEAD": 5.0, "LIST": 2.0, "PUT": 4.0},
            "concurrent": {"writers": 4, "changes": 9, "eventsPerSecond": 0.4, "failed": 0, "contentionRetries": 21},
        },
    ],
}


# -- counting what the state costs ----------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: str, *, n: int = 1, down: int = 0, up: int = 0) -> None:
        with self.lock:
            self.requests[operation] += n
            self.bytes_in += down
            self.bytes_out += up

    def snapshot(self) -> tuple[int, int, int, dict[str, int]]:
        with self.lock:
            return sum(self.requests.values()), self.bytes_in, self.bytes_out, dict(self.requests)


class CountingStore:
    """An ``ObjectStore`` that counts the requests and bytes of keys under ``prefix`` (the state) and passes
    everything through to ``inner``."""

    def __init__(self, inner: ObjectStore, prefix: str, tally: Tally) -> None:
        self.inner = inner
        self.prefix = prefix
        self.tally = tally

    def _counted(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def open(self, bucket: str, key: str) -> BinaryIO:
        if self._counted(key):
            self.tally.add("GET")
        return self.inner.open(bucket, key)

    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        data = self.inner.get_bytes(bucket, key)
        if self._counted(key):
            self.tally.add("GET", down=len(data or b""))
        return data

    def read_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes | None:
        data: bytes | None = self.inner.read_range(bucket, key, start, end)  # type: ignore[attr-defined]
        if self._counted(key):
            self.tally.add("GET", down=len(data or b""))
        return data

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        if self._counted(key):
            self.tally.add("PUT", up=len(data))
        return self.inner.put_bytes(bucket, key, data, content_type=content_type, if_absent=if_absent)

    def put_file(
        self, bucket: str, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False
    ) -> bool:
        if self._counted(key):
            self.tally.add("PUT", up=Path(path).stat().st_size)
        return self.inner.put_file(bucket, key, path, content_type=content_type, if_absent=if_absent)

    def download_file(self, bucket: str, key: str, path: Path) -> bool:
        found = self.inner.download_file(bucket, key, path)
        if self._counted(key):
            self.tally.add("GET", down=Path(path).stat().st_size if found else 0)
        return found

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if self._counted(key):
            self.tally.add("HEAD")
        return self.inner.head(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        keys = list(self.inner.list_keys(bucket, prefix))
        if self._counted(prefix):
            self.tally.add("LIST", n=max(1, -(-len(keys) // PAGE)))
        yield from keys

    def delete(self, bucket: str, key: str) -> None:
        if self._counted(key):
            self.tally.add("DELETE")
        self.inner.delete(bucket, key)

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        counted = [key for key in keys if self._counted(key)]
        if counted:
            self.tally.add("DELETE", n=-(-len(counted) // PAGE))
        self.inner.delete_many(bucket, keys)  # type: ignore[attr-defined]


# -- the scenario ---------------------------------------------------------------------------------------------------


def record_of(uid: str, name: str) -> tuple[str, str]:
    user = parse_user({"userId": uid, "userName": name, "groupId": "88", "groupName": "示例科技"})
    payload = user.to_json()
    return content_hash(payload), payload.decode()


def seed(store: ObjectStore, prefix: str, n: int, *, bucket: str = BUCKET) -> None:
    """A state of ``n`` users, as a full export leaves it: each user's record and the export's time."""
    rows = [(f"s{i:07d}", *record_of(f"s{i:07d}", f"员工{i}")) for i in range(n)]

    def changes(state: ShadowState) -> None:
        for start in range(0, n, 20_000):
            part = rows[start : start + 20_000]
            state.upsert(part)
            state.record_changes([(uid, SEED_AT, "upsert") for uid, _, _ in part])
        state.set_meta("snapshot_at", SEED_AT)

    StateStore(store, bucket, prefix).commit(changes, run_id="bench-seed", snapshot_rows=n)


def sqs_message(uid: str) -> dict[str, Any]:
    body = {
        "type": "upsert",
        "eventId": f"ev-{uid}-{uuid.uuid4().hex[:8]}",
        "occurredAt": clock.report_time(),
        "user": {"userId": uid, "userName": f"新员工{uid}", "groupId": "88", "groupName": "示例科技"},
    }
    return {
        "Records": [
            {
                "messageId": f"m-{uid}",
                "receiptHandle": "r",
                "body": orjson.dumps(body).decode(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:0:q",
                "awsRegion": "us-east-1",
            }
        ]
    }


class Contention(logging.Handler):
    """Counts the state's "taken by a concurrent writer/run, retrying" lines: writers that met each other."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "taken by" in record.getMessage():
            self.count += 1


def one_change(make_ctx: Callable[[], SyncContext], uid: str) -> bool:
    result = sync_changes(parse_queue_event(sqs_message(uid)), make_ctx(), store_report=False)
    return not result.to_retry and result.report.outcomes.get("created", 0) == 1


def sequential(
    make_ctx: Callable[[], SyncContext], tally: Tally, size: int, changes: int, seconds: float
) -> dict[str, Any]:
    one_change(make_ctx, f"w{size}-warm")
    before = tally.snapshot()
    started, done, failed = time.perf_counter(), 0, 0
    while done < changes and (done < 3 or time.perf_counter() - started < seconds):
        failed += not one_change(make_ctx, f"q{size}-{done:06d}")
        done += 1
    elapsed = time.perf_counter() - started
    after = tally.snapshot()
    requests = Counter(after[3]) - Counter(before[3])
    return {
        "changes": done,
        "failed": failed,
        "eventsPerSecond": round(done / elapsed, 1),
        "requestsPerChange": round((after[0] - before[0]) / done, 2),
        "bytesInPerChange": round((after[1] - before[1]) / done),
        "bytesOutPerChange": round((after[2] - before[2]) / done),
        "requestsByKind": {k: round(v / done, 2) for k, v in sorted(requests.items())},
    }


def concurrent(make_ctx: Callable[[], SyncContext], size: int, per_writer: int, seconds: float) -> dict[str, Any]:
    contention = Contention()
    package = logging.getLogger("cvcsync")
    level, propagate = package.level, package.propagate
    package.setLevel(logging.INFO)  # the journal's "taken by a concurrent writer" is an INFO line: counted, not shown
    package.propagate = False
    package.addHandler(contention)
    counts = [0] * WRITERS
    failures: list[str] = []
    stop = time.perf_counter() + seconds

    def writer(n: int) -> None:
        while counts[n] < per_writer and (counts[n] < 2 or time.perf_counter() < stop):
            uid = f"c{size}-{n}-{counts[n]:05d}"
            try:
                if not one_change(make_ctx, uid):
                    failures.append(uid)
            except Exception as exc:  # a lost commit (StateContention) is what is counted here
                failures.append(f"{uid}: {type(exc).__name__}")
            counts[n] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    package.removeHandler(contention)
    package.setLevel(level)
    package.propagate = propagate
    return {
        "writers": WRITERS,
        "changes": sum(counts),
        "eventsPerSecond": round(sum(counts) / elapsed, 1),
        "failed": len(failures),
        "contentionRetries": contention.count,
    }


def pending_checkout(
    store: ObjectStore, tally: Tally, prefix: str, make_ctx: Callable[[], SyncContext], sizes: tuple[int, ...]
) -> list[dict[str, Any]]:
    """The batch path's checkout with N change-path entries pending (the journal; absent before it): folded into a
    generation first, then N/2 single-user changes (an intent and a write entry each), then one checkout."""
    state_store = StateStore(store, BUCKET, prefix)
    if not hasattr(state_store, "journal"):
        return []
    from cvcsync.engine import views

    rows = []
    for pending in sizes:
        state_store.compact()
        views._appended.clear()  # this process's count towards its own compaction: not during the measure
        for n in range(pending // 2):
            one_change(make_ctx, f"p{pending}-{n:06d}")
        before = tally.snapshot()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            state = state_store.checkout(Path(tmp), compact=False)
            users, folded = state.count(), len(state.journal_pending)
            state.close()
        elapsed = time.perf_counter() - started
        after = tally.snapshot()
        rows.append(
            {
                "pending": folded,
                "users": users,
                "seconds": round(elapsed, 3),
                "requests": after[0] - before[0],
                "bytesIn": after[1] - before[1],
            }
        )
    return rows


def run(
    sizes: tuple[int, ...] = SIZES, changes: int = 60, seconds: float = 20.0, pending: tuple[int, ...] = PENDING
) -> dict[str, Any]:
    os.environ.update(DUMMY_CREDENTIALS)  # boto3 reads these (moto accepts anything; nothing leaves loopback)
    emulator = start_emulator("--capacity", "10000000", keys=[f"{KEY_ID}:{KEY_SECRET}"])
    moto = start_moto()
    results: list[dict[str, Any]] = []
    checkouts: list[dict[str, Any]] = []
    try:
        moto.s3_client().create_bucket(Bucket=BUCKET)
        for size in sizes:
            env = {
                **os.environ,
                "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
                "CVC_ENDPOINT": emulator.url,
                "CVCSYNC_LOG_LEVEL": "ERROR",
                "CVCSYNC_STATE_BUCKET": BUCKET,
                "CVCSYNC_OUTPUT_PREFIX": f"bench-{size}/",
                "CVCSYNC_S3_ENDPOINT": moto.url,
                "CVCSYNC_S3_REGION": "us-east-1",
                "CVCSYNC_S3_ADDRESSING_STYLE": "path",
            }
            tally = Tally()
            invocation = from_context(None)
            base = services.build_context(invocation, BUCKET, inline=None, env=env, reads_files=False)
            prefix = base.settings.key("state") + "/"
            counting = CountingStore(base.store, prefix, tally)
            seed(base.store, prefix, size)

            def make_ctx(base: SyncContext = base, counting: CountingStore = counting) -> SyncContext:
                return replace(base, store=counting, state_store=None)

            figures = {"users": size, **sequential(make_ctx, tally, size, changes, seconds)}
            figures["concurrent"] = concurrent(make_ctx, size, max(2, changes // WRITERS), seconds)
            results.append(figures)
            print(
                f"{size:>7} users: {figures['eventsPerSecond']:>7.1f} events/s, "
                f"{figures['requestsPerChange']:>6.1f} requests, {figures['bytesInPerChange']:>10,} B in, "
                f"{figures['bytesOutPerChange']:>10,} B out per change; {WRITERS} writers: "
                f"{figures['concurrent']['eventsPerSecond']:.1f} events/s, "
                f"{figures['concurrent']['failed']} failed, {figures['concurrent']['contentionRetries']} retries"
            )
            if size == sizes[0] and pending:
                checkouts = pending_checkout(counting, tally, prefix, make_ctx, pending)
                for row in checkouts:
                    print(
                        f"checkout with {row['pending']:>5} entries pending: {row['seconds']:.3f} s, "
                        f"{row['requests']} requests, {row['bytesIn']:,} B in"
                    )
        services.clear_cache()
    finally:
        moto.stop()
        emulator.stop()
    return {"perChange": results, "checkoutWithPending": checkouts, "before": BEFORE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="directory sizes, comma-separated")
    parser.add_argument("--changes", type=int, default=60, help="single-event changes per size (at most)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per size and mode (at least 3 changes)")
    parser.add_argument("--pending", default=",".join(str(p) for p in PENDING), help="journal entries, comma-separated")
    parser.add_argument("--output", default="bench_state", help="the results file's name (bench/results/NAME.json)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    pending = tuple(int(s) for s in args.pending.split(",") if s.strip())
    figures = run(sizes, args.changes, args.seconds, pending)
    side_by_side(figures)
    write_figures(args.output, figures)
    return 0


def side_by_side(figures: dict[str, Any]) -> None:
    """Before (the whole snapshot per run) and after (the journal), per directory size."""
    before = {row["users"]: row for row in BEFORE["perChange"]}
    print(f"{'users':>8} | {'events/s':>17} | {'requests/change':>17} | {'bytes in/change':>21} | 4 writers events/s")
    for row in figures["perChange"]:
        old = before.get(row["users"])
        if old is None:
            continue
        print(
            f"{row['users']:>8} | {old['eventsPerSecond']:>7} -> {row['eventsPerSecond']:>7} | "
            f"{old['requestsPerChange']:>7} -> {row['requestsPerChange']:>7} | "
            f"{old['bytesInPerChange']:>9,} -> {row['bytesInPerChange']:>8,} | "
            f"{old['concurrent']['eventsPerSecond']} -> {row['concurrent']['eventsPerSecond']}"
        )


if __name__ == "__main__":
    sys.exit(main())
