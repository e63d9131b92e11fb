"""``cvcsync invoke``: a handler run locally as its platform would run it, against moto and the emulator."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"


def export(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["userId", "userName", "groupId", "groupName"])
    for i in range(n):
        writer.writerow([f"i{i}", f"员工{i}", "88", "示例科技"])
    return out.getvalue().encode()


def invoke(
    emulator: Any, moto: Any, *args: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``cvcsync invoke`` with the emulator and moto in its environment; ``env`` over it, names in ``drop`` removed."""
    environment = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_LOG_LEVEL": "ERROR",
        **(env or {}),
    }
    for name in list(environment):
        if name.startswith(drop):
            del environment[name]
    return subprocess.run(
        [sys.executable, "-m", "cvcsync", "invoke", *args],
        capture_output=True,
        text=True,
        env=environment,
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


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("platform", ["fc", "lambda"])
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "the event file is empty"),
        (b"  \n", "the event file is empty"),
        (
            (EVENTS / "fc" / "oss-putobject.json").read_bytes()[:100],
            "the event file ends before the JSON does (a truncated file?)",
        ),
        (b"bucket=cvc-user-uploads key=users.csv\n", "the event file is not JSON"),
    ],
)
def test_an_unusable_event_file_is_one_line_and_exit_2(
    emulator: Any, moto: Any, tmp_path: Path, platform: str, content: bytes, says: str
) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(content)
    result = invoke(emulator, moto, "object_upload", str(event), "--platform", platform)
    assert result.returncode == 2
    assert one_line(result).startswith(f"cvcsync: error: {event}: {says}")


def test_a_missing_event_file_is_a_usage_error(emulator: Any, moto: Any, tmp_path: Path) -> None:
    result = invoke(emulator, moto, "object_upload", str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "nope.json: no such event file" in one_line(result)


def test_the_upload_function_without_an_object_store_says_what_it_needs(emulator: Any, moto: Any) -> None:
    """No CVCSYNC_S3_ENDPOINT and nothing else that names a store: no network call, one line, the way out."""
    result = invoke(
        emulator,
        moto,
        "object_upload",
        str(EVENTS / "aws" / "s3-put-encoded-key.json"),
        "--platform",
        "lambda",
        env={"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull},
        drop=("CVCSYNC_S3_", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("cvcsync: configuration error: object_upload needs an object store and none is configured")
    assert "moto or MinIO" in line and "CVCSYNC_S3_ENDPOINT=http://127.0.0.1:PORT" in line


def test_an_object_store_that_does_not_answer_is_named(emulator: Any, moto: Any) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = invoke(
        emulator, moto, "object_upload", str(EVENTS / "fc" / "oss-putobject.json"), env={"CVCSYNC_S3_ENDPOINT": closed}
    )
    assert result.returncode == 2
    assert f"object_upload needs an object store: the one at CVCSYNC_S3_ENDPOINT ({closed}) failed" in one_line(result)


def test_an_export_missing_from_the_store_is_named(emulator: Any, moto: Any) -> None:
    result = invoke(emulator, moto, "object_upload", str(EVENTS / "fc" / "oss-putobject.json"))  # no bucket made
    assert result.returncode == 2
    line = one_line(result)
    assert "s3://cvc-user-uploads/" in line and "put the export in the object store" in line
