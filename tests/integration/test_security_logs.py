"""Nothing secret or personal in the logs or run reports, even at DEBUG, over a demo-sized run of every path."""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.http_api.app import HttpApi
from cvcsync.logs import JsonFormatter
from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers.queue import handle as handle_queue
from cvcsync.platform.triggers.upload import handle as handle_upload
from support.events import load_event
from support.http_api import AUTH_ENV, SECRET, TOKEN, call, signed_headers

EXPORT = Path(__file__).resolve().parents[2] / "events" / "demo" / "hr-export-day1.csv"
BUCKET = "cvc-user-uploads"
KEY = "uploads/full/hr-export.csv"
STS_SECRET, STS_TOKEN = "fc-sts-secret-must-not-leak", "fc-sts-token-must-not-leak"


@pytest.fixture
def captured() -> Any:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def personal_data() -> tuple[list[str], list[str]]:
    with EXPORT.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    mobiles = [r["手机"].removeprefix("+86-") for r in rows]
    emails = [r["邮箱"] for r in rows]
    return mobiles, emails


def test_a_debug_run_leaks_no_secret_token_signature_mobile_or_email(
    function_env: dict[str, str], moto: Any, emulator: Any, captured: io.StringIO
) -> None:
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    body = EXPORT.read_bytes()
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    env = {
        **function_env,
        "CVCSYNC_LOG_LEVEL": "DEBUG",
        "CVCSYNC_STATE_BUCKET": BUCKET,
        "CVCSYNC_GROUP_ID": "88",
        "CVCSYNC_GROUP_NAME": "示例科技",
    }
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"].update(key=KEY, size=len(body))
    context = local_fc_context(
        "upload", credentials={"access_key_id": "STS.key", "access_key_secret": STS_SECRET, "security_token": STS_TOKEN}
    )
    answer = orjson.loads(handle_upload(orjson.dumps(event), context, env=env))
    assert answer["runs"][0]["outcomes"]["created"] == 3000
    emulator.set_faults(error_rate=0.3, seed=4)  # failures and retries log more: they must stay clean too
    changes = [
        {
            "type": "upsert",
            "eventId": f"s{i}",
            "occurredAt": "2030-01-01T00:00:00Z",
            "user": {
                "userId": f"E{100000 + i}",
                "userName": "改",
                "groupId": "88",
                "groupName": "G",
                "userMobile": "13912345678",
                "userEmail": "secret.person@example.com",
            },
        }
        for i in range(30)
    ]
    records = [
        {
            "messageId": f"m{i}",
            "receiptHandle": "r",
            "body": orjson.dumps(c).decode(),
            "attributes": {},
            "messageAttributes": {},
            "md5OfBody": "x",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:0:q",
            "awsRegion": "us-east-1",
        }
        for i, c in enumerate(changes)
    ]
    handle_queue({"Records": records}, LocalLambdaContext("queue"), env=env)
    wrong = {**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "a-wrong-secret-that-must-not-leak"}
    handle_queue({"Records": records[:1]}, LocalLambdaContext("queue"), env=wrong)

    # The HTTP API with both kinds of auth: signed, bearer, a forged signature and a wrong token, all at DEBUG.
    api = HttpApi({**env, **AUTH_ENV})
    person = {"userName": "丙", "groupId": "88", "groupName": "G", "userMobile": "13987654321"}
    assert call(api, "PUT", "/users/h1", body={**person, "userEmail": "http.person@example.com"}).status in (200, 201)
    assert call(api, "GET", "/users/h1").status == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(api, "GET", "/users/h1", headers=bearer, signed=False).status == 200
    wrong_token = {"Authorization": "Bearer a-wrong-token-that-must-not-leak"}
    assert call(api, "GET", "/users/h1", headers=wrong_token, signed=False).status == 401
    forged = {**signed_headers("GET", "/users/h1"), "X-Cvcsync-Signature": "forged-signature-must-not-leak"}
    assert call(api, "GET", "/users/h1", headers=forged, signed=False).status == 401

    reports = [
        s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode()
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="cvc-sync/reports/")["Contents"]
    ]
    text = captured.getvalue() + "\n".join(reports)
    assert '"level":"DEBUG"' in text or '"level":"INFO"' in text  # the logs were really captured
    forbidden = [
        emulator.access_key_secret,
        STS_SECRET,
        STS_TOKEN,
        "a-wrong-secret-that-must-not-leak",
        "13912345678",
        "secret.person@example.com",
        "13987654321",
        "http.person@example.com",
        SECRET,  # the HTTP API's HMAC key
        TOKEN,  # its bearer token
        "a-wrong-token-that-must-not-leak",
    ]
    mobiles, emails = personal_data()
    leaks = [f for f in forbidden if f in text]
    leaks += [m for m in mobiles if m in text][:3] + [e for e in emails if e in text][:3]
    assert leaks == []
    unredacted = re.search(r".{0,80}Signature=(?!\[redacted\]).{0,40}", text)
    assert unredacted is None, unredacted.group() if unredacted else ""
