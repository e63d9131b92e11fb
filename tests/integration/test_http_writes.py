"""The HTTP function's writes go through the one run lifecycle (issue 11 items 6, 7, 9, 10), against the emulator
(CVC) and moto (S3, SQS): user writes keep the shadow state in step, POST /sync runs are continued to their end,
a PUT writes only the user its path names, and a run that cannot finish now is a 503 to retry, never a 500."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cvcsync.errors import CvcSyncError
from cvcsync.http_api.adapters import run_wsgi, wsgi_environ
from cvcsync.http_api.app import HttpApi
from cvcsync.http_api.errors import from_run_error
from cvcsync.platform import services
from cvcsync.platform.runtime import LocalLambdaContext
from support.http_api import AUTH_ENV, Answer, call, signed_headers

UPLOADS = "hr-uploads"
STATE = "cvc-sync-state"
EXPORT_KEY = "uploads/full/hr.csv"


def export(rows: dict[str, str]) -> bytes:
    out = io.StringIO()
    out.write("userId,userName,groupId,groupName\n")
    for user_id, name in rows.items():
        out.write(f"{user_id},{name},88,示例科技\n")
    return out.getvalue().encode()


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> Iterator[dict[str, str]]:
    for bucket in (UPLOADS, STATE):
        moto.s3_client().create_bucket(Bucket=bucket)
    yield {
        **function_env,
        **AUTH_ENV,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_HTTP_SYNC_BUCKET": UPLOADS,
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }
    services.clear_cache()


@pytest.fixture
def api(env: dict[str, str]) -> HttpApi:
    return HttpApi(env)


def users(emulator: Any) -> dict[str, str]:
    return {u["userId"]: u["userName"] for u in emulator.users()}


def sync(api: HttpApi) -> dict[str, Any]:
    answer = call(api, "POST", "/sync", body={"key": EXPORT_KEY})
    assert answer.status == 200, answer.body
    report: dict[str, Any] = answer.json()["report"]
    return report


def manifest(moto: Any) -> dict[str, Any]:
    body = moto.s3_client().get_object(Bucket=STATE, Key="cvc-sync/state/manifest.json")["Body"].read()
    return dict(orjson.loads(body))


# -- item 6: every HTTP write is a change the shadow state knows ---------------------------------------------------


def test_a_user_deleted_over_http_is_created_again_by_the_next_sync(api: HttpApi, moto: Any, emulator: Any) -> None:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=EXPORT_KEY, Body=export({"u-1": "一", "u-2": "二", "u-3": "三"}))
    assert sync(api)["outcomes"]["created"] == 3
    assert call(api, "DELETE", "/users/u-1").status == 200
    assert "u-1" not in users(emulator)
    again = sync(api)  # the same export: u-1 is in it, and no longer in CVC
    assert again["outcomes"]["created"] == 1 and again["outcomes"]["unchanged"] == 2
    assert users(emulator) == {"u-1": "一", "u-2": "二", "u-3": "三"}


def test_batch_deletes_and_puts_over_http_are_known_to_the_next_sync(api: HttpApi, moto: Any, emulator: Any) -> None:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=EXPORT_KEY, Body=export({"u-1": "一", "u-2": "二", "u-3": "三"}))
    sync(api)
    assert call(api, "POST", "/users:delete", body={"userIds": ["u-2"]}).status == 200
    renamed = {"userName": "改名", "groupId": "88", "groupName": "示例科技"}
    assert call(api, "PUT", "/users/u-3", body=renamed).json()["outcome"] == "updated"
    again = sync(api)  # the export still says 二 and 三: both are written back
    assert again["outcomes"]["created"] == 1 and again["outcomes"]["updated"] == 1
    assert users(emulator) == {"u-1": "一", "u-2": "二", "u-3": "三"}


def test_a_write_cvc_refuses_is_the_entrys_error_and_a_dead_letter(api: HttpApi, moto: Any, emulator: Any) -> None:
    emulator.set_capacity(1)
    person = {"userName": "甲", "groupId": "88", "groupName": "示例科技"}
    assert call(api, "PUT", "/users/u-1", body=person).status == 200
    refused = call(api, "PUT", "/users/u-2", body=person)
    assert refused.status == 502 and refused.error["code"] == "CvcRefused" and refused.error["deadLettered"]
    assert refused.error["cvc"]["requestId"] and not refused.error["cvc"]["retryable"]
    batch = call(api, "POST", "/users", body=[{"userId": "u-3", **person}, {"userId": "u-1", **person}])
    assert batch.status == 207
    assert [(r["status"], r["outcome"]) for r in batch.json()["results"]] == [
        ("failed", "deadLettered"),
        ("upserted", "unchanged"),
    ]
    listing = moto.s3_client().list_objects_v2(Bucket=STATE, Prefix="cvc-sync/dead-letters/")["Contents"]
    letters = [
        orjson.loads(line)
        for item in listing
        for line in moto.s3_client().get_object(Bucket=STATE, Key=item["Key"])["Body"].read().splitlines()
    ]
    assert sorted(letter["record"]["userId"] for letter in letters) == ["u-2", "u-3"]
    assert {letter["source"]["route"] for letter in letters} == {"PUT /users/{id}", "POST /users"}
    report = call(api, "GET", f"/runs/{refused.error['runId']}").json()["report"]
    assert report["deadLetters"] == 1 and report["outcomes"]["deadLettered"] == 1
    assert users(emulator) == {"u-1": "甲"}


def test_http_and_queue_changes_are_ordered_by_the_one_rule(env: dict[str, str], api: HttpApi, emulator: Any) -> None:
    from cvcsync.platform.triggers.queue import handle as queue_handle

    later = {
        "type": "upsert",
        "eventId": "e-later",
        "occurredAt": "2100-01-01T00:00:00Z",  # a producer's time later than any request's arrival here
        "user": {"userId": "u-1", "userName": "队列", "groupId": "88", "groupName": "示例科技"},
    }
    record = {"messageId": "m-0", "receiptHandle": "r", "eventSource": "aws:sqs", "body": orjson.dumps(later).decode()}
    record["eventSourceARN"] = "arn:aws:sqs:us-east-1:000000000000:cvc-changes"
    queue_handle({"Records": [record]}, LocalLambdaContext("queue"), env=env)
    stale = call(api, "DELETE", "/users/u-1")
    assert stale.status == 409 and stale.error["code"] == "StaleChange" and stale.error["field"] == "id"
    assert users(emulator) == {"u-1": "队列"}


# -- item 7: POST /sync runs are continued to their end ------------------------------------------------------------


def call_with_deadline(api: HttpApi, path: str, body: Any, seconds: int) -> Answer:
    """One signed request whose invocation ends after ``seconds`` (a Lambda context), as a platform would run it."""
    raw = orjson.dumps(body)
    headers = {"Content-Type": "application/json", **signed_headers("POST", path, "", raw)}
    context = LocalLambdaContext("http-api", timeout=seconds)
    environ = wsgi_environ(
        method="POST", path=path, query_string="", headers=list(headers.items()), body=raw, context=context
    )
    answer = run_wsgi(api, environ)
    return Answer(answer.status, dict(answer.headers), answer.body)


def test_a_sync_that_reaches_its_deadline_is_answered_202_and_finished(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    emulator.set_faults(latency_ms=150, seed=2)
    rows = {f"e{i:03d}": f"员工{i}" for i in range(60)}
    moto.s3_client().put_object(Bucket=UPLOADS, Key=EXPORT_KEY, Body=export(rows))
    api = HttpApi(
        {
            **env,
            "CVC_MAX_ATTEMPTS": "3",  # a call the budget cuts short is then left pending, not dead-lettered
            "CVC_BATCH_SIZE": "5",
            "CVCSYNC_CONCURRENCY": "1",
            "CVCSYNC_DEADLINE_MARGIN": "1.5",
            "CVCSYNC_FANOUT": "inline",  # the continuation runs here, as the platform's async invocation would
        }
    )
    answer = call_with_deadline(api, "/sync", {"key": EXPORT_KEY}, seconds=3)
    assert answer.status == 202, answer.body
    body = answer.json()
    run_id = body["runId"]
    assert body["report"]["status"] == "checkpointed" and body["poll"] == f"/runs/{run_id}"
    report = call(api, "GET", f"/runs/{run_id}").json()["report"]
    assert report["status"] == "applied" and report["outcomes"]["created"] == 60
    assert any(message.startswith("continued at") for message in report["messages"])
    assert len(emulator.users()) == 60
    assert manifest(moto)["users"] == 60  # the state is committed: the next sync of this export changes nothing


# -- item 9: a PUT writes the user its path names, and no other --------------------------------------------------


@pytest.mark.parametrize("other_key", [" UserId", "UserId", "userId ", " userId"])
def test_a_put_cannot_name_another_user_in_a_key_the_parser_reads_as_the_id(
    api: HttpApi, emulator: Any, other_key: str
) -> None:
    body = {"userId": "me", other_key: "victim", "userName": "x", "groupId": "88", "groupName": "G"}
    answer = call(api, "PUT", "/users/me", body=body)
    assert answer.status == 400 and answer.error["field"] == "userId"
    assert users(emulator) == {}
    same = call(api, "PUT", "/users/me", body={**body, other_key: " me "})  # the same id, as the parser reads it
    assert same.status == 200 and users(emulator) == {"me": "x"}


# -- item 10: a run that cannot finish now is a 503 to retry -------------------------------------------------------


def test_a_sync_whose_dead_letters_cannot_be_stored_is_503_with_retry_after(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=EXPORT_KEY, Body=export({"u-1": "一", "u-2": "二"}))
    emulator.set_faults(error_rate=1.0, seed=4)  # every record fails: they are all dead letters
    missing_queue = moto.url.rstrip("/") + "/000000000000/no-such-queue"
    api = HttpApi({**env, "CVCSYNC_DEADLETTER_SINK": "queue", "CVCSYNC_DEADLETTER_QUEUE_URL": missing_queue})
    answer = call(api, "POST", "/sync", body={"key": EXPORT_KEY})
    assert answer.status == 503 and answer.error["code"] == "RunNotFinished"
    assert int(answer.headers["Retry-After"]) > 0 and answer.error["cause"]["code"]


def test_state_contention_and_a_missing_sink_are_runs_to_retry_not_bugs() -> None:
    for code in ("StateContention", "NoDeadLetterSink"):
        answer = from_run_error(CvcSyncError("not now", code=code))
        assert answer is not None and answer.status == 503 and dict(answer.headers)["Retry-After"]
    assert from_run_error(CvcSyncError("a bug", code="AccountingMismatch")) is None  # still the app's 500
