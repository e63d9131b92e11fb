"""Queue benchmark: change events per second through the queue handler, against the emulator in its own process.

SQS-shaped batches of 10 and 100 messages (one upsert each, new users), the warm handler, without a state bucket
(the FC default path: no boto3) and, for comparison, with the shadow state in moto's S3. The handler's cold start
(and every other handler's) is measured by ``bench_cold_start.py``. Then ``bench_state.py``: what one single-user
change costs the state at directories of 1k, 10k and 100k users, before and after the journal.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson

import bench_state
from cvcsync.platform import services
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.queue import handle
from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, start_moto
from cvcsync_dev.emulator.process import start_emulator
from figures import write_figures

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"


def sqs_event(n: int, offset: int) -> dict[str, Any]:
    records = []
    for i in range(n):
        uid = f"q{offset + i:07d}"
        body = {
            "type": "upsert",
            "eventId": f"ev-{uid}",
            "occurredAt": "2024-05-01T00:00:00Z",
            "user": {"userId": uid, "userName": f"用户{i}", "groupId": "88", "groupName": "示例科技"},
        }
        records.append(
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
        )
    return {"Records": records}


def events_per_second(env: dict[str, str], size: int, batches: int) -> float:
    offset = size * 1_000_000 + (1 if env.get("CVCSYNC_STATE_BUCKET") else 0) * 500_000
    handle(sqs_event(size, offset), LocalLambdaContext("bench"), env=env)  # warm up
    started = time.perf_counter()
    for b in range(1, batches + 1):
        answer = handle(sqs_event(size, offset + b * size), LocalLambdaContext("bench"), env=env)
        assert not answer["batchItemFailures"], answer
    return size * batches / (time.perf_counter() - started)


def main() -> int:
    os.environ.update(DUMMY_CREDENTIALS)  # boto3 reads these (moto accepts anything; nothing leaves loopback)
    emulator = start_emulator("--capacity", "10000000", keys=[f"{KEY_ID}:{KEY_SECRET}"])
    moto = start_moto()
    try:
        base = {
            **os.environ,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            "CVC_ENDPOINT": emulator.url,
            "CVCSYNC_LOG_LEVEL": "WARNING",
        }
        moto.s3_client().create_bucket(Bucket="bench-state")
        stateful = {
            **base,
            "CVCSYNC_STATE_BUCKET": "bench-state",
            "CVCSYNC_S3_ENDPOINT": moto.url,
            "CVCSYNC_S3_REGION": "us-east-1",
            "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        }
        rows: list[tuple[str, float, tuple[int, bool]]] = []
        for size, batches in ((10, 30), (100, 10)):
            rate = events_per_second(base, size, batches)
            rows.append((f"events/s, batches of {size}, no state bucket (FC default)", rate, (size, False)))
            rate = events_per_second(stateful, size, batches)
            rows.append((f"events/s, batches of {size}, shadow state in S3 (moto)", rate, (size, True)))
        services.clear_cache()
    finally:
        moto.stop()
        emulator.stop()
    for name, value, _ in rows:
        print(f"{name:<60} {value:>10.0f}")
    print("cold start (this handler's and the others'): bench/bench_cold_start.py")
    write_figures(
        "bench_queue",
        {
            "eventsPerSecond": [
                {"batch": size, "stateBucket": state, "eventsPerSecond": round(v, 1)} for _, v, (size, state) in rows
            ]
        },
    )
    return bench_state.main([])  # single-user changes against the directory's size (``make bench`` runs us)


if __name__ == "__main__":
    sys.exit(main())
