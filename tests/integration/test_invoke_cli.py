"""``cvcsync invoke``: a handler run locally as its platform would run it, against moto and the emulator."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

EVENTS = Path(__file__).resolve().parents[2] / "events"


def export(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["userId", "userName", "groupId", "groupName"])
    for i in range(n):
        writer.writerow([f"i{i}", f"员工{i}", "88", "示例科技"])
    return out.getvalue().encode()


def invoke(emulator: Any, moto: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_LOG_LEVEL": "ERROR",
    }
    return subprocess.run(
        [sys.executable, "-m", "cvcsync", "invoke", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_invoke_an_fc_handler_with_an_oss_event(emulator: Any, moto: Any) -> None:
    s3 = moto.s3_client()
    s3.create_bucket(Bucket="cvc-user-uploads")
    s3.put_object(Bucket="cvc-user-uploads", Key="users/2024-05-01/users.csv", Body=export(4))
    result = invoke(emulator, moto, "object_upload", str(EVENTS / "fc" / "oss-putobject.json"))
    assert result.returncode == 0, result.stderr
    [run] = orjson.loads(result.stdout)["runs"]
    assert run["status"] == "applied" and run["outcomes"]["created"] == 4
    assert len(emulator.users()) == 4


def test_invoke_a_lambda_handler_with_an_s3_event(emulator: Any, moto: Any) -> None:
    s3 = moto.s3_client()
    s3.create_bucket(Bucket="cvc-user-uploads")
    s3.put_object(Bucket="cvc-user-uploads", Key="users/2024 05/张 三+x.csv", Body=export(2))
    result = invoke(
        emulator, moto, "object_upload", str(EVENTS / "aws" / "s3-put-encoded-key.json"), "--platform", "lambda"
    )
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["runs"][0]["outcomes"]["created"] == 2


def test_an_unknown_function_is_named(emulator: Any, moto: Any) -> None:
    result = invoke(emulator, moto, "no_such_function", str(EVENTS / "fc" / "oss-putobject.json"))
    assert result.returncode == 2 and "no function 'no_such_function'; known: " in result.stderr
    assert "object_upload, queue_changes" in result.stderr
