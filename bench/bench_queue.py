"""Queue benchmark: change events per second through the queue handler, and its cold start next to the official
SDK's, against the emulator in its own process.

- events/s: SQS-shaped batches of 10 and 100 messages (one upsert each, new users), the warm handler, without a
  state bucket (the FC default path: no boto3) and, for comparison, with the shadow state in moto's S3;
- cold start: a fresh interpreter importing the handler and handling one MNS-topic event (one upsert), next to a
  fresh interpreter importing the official SDK and making one CreateUser call. Target: ours <= the SDK's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson

from cvcsync import services
from cvcsync.emulator.moto import DUMMY_CREDENTIALS, start_moto
from cvcsync.emulator.process import start_emulator
from cvcsync.runtime import LocalLambdaContext
from cvcsync.triggers.queue import handle

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"

OURS_COLD = """
import time
started = time.perf_counter()
from cvcsync.triggers.queue import handle
from cvcsync.runtime import local_fc_context
import orjson, sys
body = orjson.dumps({"type": "upsert", "eventId": sys.argv[1], "occurredAt": "2024-05-01T00:00:00Z",
                     "user": {"userId": sys.argv[1], "userName": "冷启动", "groupId": "88", "groupName": "G"}})
event = orjson.dumps({"TopicOwner": "1", "Message": body.decode(), "Subscriber": "1", "PublishTime": 1,
                      "SubscriptionName": "s", "MessageMD5": "x", "TopicName": "t", "MessageId": sys.argv[1]})
answer = orjson.loads(handle(event, local_fc_context("queue", credentials={})))
assert answer["outcomes"]["created"] == 1, answer
print(time.perf_counter() - started, "boto3" in sys.modules)
"""

SDK_COLD = """
import time
started = time.perf_counter()
from aliyunsdkcore.client import AcsClient
from aliyunsdkaliyuncvc.request.v20191030.CreateUserRequest import CreateUserRequest
import json, sys
client = AcsClient(sys.argv[2], sys.argv[3], "cn-hangzhou")
request = CreateUserRequest()
request.set_endpoint(sys.argv[4])
request.set_protocol_type("http")
request.set_UserInfo(json.dumps([{"userId": sys.argv[1], "userName": "冷启动", "groupId": "88", "groupName": "G"}]))
request.set_Count(1)
client.do_action_with_exception(request)
print(time.perf_counter() - started, False)
"""


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


def cold(script: str, runs: int, emulator_url: str, env: dict[str, str]) -> tuple[float, bool]:
    samples, boto = [], False
    command = [sys.executable, "-c", script, "", KEY_ID, KEY_SECRET, emulator_url.removeprefix("http://")]
    for n in range(runs):
        command[3] = f"cold-{n}-{time.time_ns()}"
        with tempfile.TemporaryDirectory() as fresh_tmp:  # a new container: its /tmp is empty
            run_env = {**env, "TMPDIR": fresh_tmp}
            out = subprocess.run(command, capture_output=True, text=True, env=run_env, check=True).stdout.split()
        samples.append(float(out[0]))
        boto = boto or out[1] == "True"
    return statistics.median(samples), boto


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
        rows = []
        for size, batches in ((10, 30), (100, 10)):
            rows.append(
                (f"events/s, batches of {size}, no state bucket (FC default)", events_per_second(base, size, batches))
            )
            rows.append(
                (f"events/s, batches of {size}, shadow state in S3 (moto)", events_per_second(stateful, size, batches))
            )
        services.clear_cache()
        cold_env = {k: v for k, v in base.items() if not k.startswith(("CVCSYNC_STATE", "AWS_"))}
        ours, boto = cold(OURS_COLD, 5, emulator.url, cold_env)
        sdk, _ = cold(SDK_COLD, 5, emulator.url, cold_env)
    finally:
        moto.stop()
        emulator.stop()
    for name, value in rows:
        print(f"{name:<60} {value:>10.0f}")
    print(
        f"{'cold start, import + first event (ms, median of 5)':<60} {ours * 1000:>10.0f}   official SDK, import + "
        f"one call: {sdk * 1000:.0f} ms   ratio {sdk / ours:.2f}x"
    )
    print(f"{'boto3 imported on the FC path':<60} {boto!s:>10}")
    print("targets: cold start <= the official SDK's; boto3 not imported on the FC path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
