"""``make demo``: the main job end to end on this machine, narrated.

It starts the CVC emulator and a moto server (local S3 and SQS) on free loopback ports, uploads a realistic HR
export (3,000 people, Chinese headers and names, department paths, +86 mobiles) into a bucket, and invokes the
object-upload function with the Function Compute OSS event for it, exactly as FC would. Then a changed export
(hires, leavers, moves, a few broken rows) shows the incremental sync, and a truncated one shows the deletion
guard refusing it. It stops everything it started. Nothing leaves this machine.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import orjson

DEMO_KEY_ID = "demo-key"
DEMO_KEY_SECRET = "demo-secret-not-for-production"  # noqa: S105 - a documented key valid only in the emulator  # nosec B105
ROOT = Path(__file__).resolve().parents[2]
EXPORTS = ROOT / "events" / "demo"
OSS_EVENT = ROOT / "events" / "fc" / "oss-putobject.json"
BUCKET = "cvc-user-uploads"
KEY = "uploads/full/hr-export.csv"


def say(text: str = "") -> None:
    print(text, flush=True)


def oss_event(key: str, size: int) -> bytes:
    """The FC OSS trigger's event for ``key``: the reference sample with this object's name and size."""
    event: dict[str, Any] = copy.deepcopy(orjson.loads(OSS_EVENT.read_bytes()))
    event["events"][0]["oss"]["bucket"]["name"] = BUCKET
    event["events"][0]["oss"]["object"].update(key=key, size=size)
    return orjson.dumps(event)


def show(report: dict[str, Any]) -> None:
    from cvcsync.cli import _summary_table

    _summary_table(report, sys.stdout)


def main() -> int:
    from cvcsync.platform import services
    from cvcsync.platform.runtime import local_fc_context
    from cvcsync.platform.triggers.upload import handle
    from cvcsync_dev.emulator.moto import start_moto
    from cvcsync_dev.emulator.process import start_emulator

    say("Starting a local CVC emulator and a moto server (S3 + SQS) on free loopback ports…")
    emulator = start_emulator("--capacity", "5000", keys=[f"{DEMO_KEY_ID}:{DEMO_KEY_SECRET}"])
    moto = start_moto()
    try:
        s3 = moto.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        dead_letters = moto.sqs_client().create_queue(QueueName="cvc-sync-dead-letters")["QueueUrl"]
        env = {
            **os.environ,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_KEY_SECRET,
            "CVC_ENDPOINT": emulator.url,
            "CVCSYNC_S3_ENDPOINT": moto.url,
            "CVCSYNC_S3_REGION": "us-east-1",
            "CVCSYNC_S3_ADDRESSING_STYLE": "path",
            "CVCSYNC_SQS_ENDPOINT": moto.url,
            "CVCSYNC_DEADLETTER_SINK": "queue",
            "CVCSYNC_DEADLETTER_QUEUE_URL": dead_letters,
            "CVCSYNC_GROUP_ID": "88",
            "CVCSYNC_GROUP_NAME": "示例科技有限公司",
            "CVCSYNC_LOG_LEVEL": "ERROR",
        }
        say(f"  CVC emulator: {emulator.url}    moto: {moto.url}    bucket: {BUCKET}")
        say("  The exports carry no enterprise columns; CVCSYNC_GROUP_ID/NAME supply them. Headers are Chinese")
        say("  (工号, 姓名, 部门, 手机, 邮箱, 座机): the built-in column presets map them to CVC's fields.")
        steps = [
            ("Day 1: the first full export lands (3,000 people)", "hr-export-day1.csv"),
            (
                "Day 2: 25 hires, 30 leavers, a few dozen moves, 4 broken rows: only the difference is sent",
                "hr-export-day2.csv",
            ),
            (
                "Day 3: someone uploads a truncated export (1,200 rows): the guard refuses to delete 1,800 people",
                "hr-export-truncated.csv",
            ),
        ]
        for title, name in steps:
            body = (EXPORTS / name).read_bytes()
            say(f"\n== {title}")
            say(f"$ upload {name} to oss://{BUCKET}/{KEY}; Function Compute invokes object_upload with its OSS event")
            s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
            context = local_fc_context(
                "object-upload",
                timeout=300,
                credentials={"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"},  # nosec B105
            )
            answer = orjson.loads(handle(oss_event(KEY, len(body)), context, env=env))
            run = answer["runs"][0]
            report_key = f"cvc-sync/reports/{KEY}/{run['runId']}.json"
            report = orjson.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
            show(report)
            say(f"  report: s3://{BUCKET}/{report_key}    CVC now holds {len(emulator.users())} users")
        say("\n== What else is in the bucket (all under cvc-sync/, which the trigger ignores)")
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="cvc-sync/").get("Contents", [])
        for item in listing:
            say(f"  {item['Key']}  ({item['Size']} bytes)")
        services.clear_cache()
    finally:
        moto.stop()
        emulator.stop()
    say("\nStopped the emulator and moto. Next: `make test`; docs/architecture.md explains how it fits together.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
