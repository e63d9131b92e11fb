"""The object-upload function end to end: events from events/, objects in moto's S3, users in the emulator."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import orjson
import pytest

from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers.upload import handle
from support.events import load_event

BUCKET = "cvc-user-uploads"
FC_KEY = "users/2024-05-01/users.csv"
S3_KEY = "users/2024 05/张 三+x.csv"


def export(ids: range, *, extra: list[list[str]] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["userId", "userName", "groupId", "groupName", "departName", "userMobile"])
    for i in ids:
        writer.writerow([f"e{i:04d}", f"员工{i}", "88", "示例科技", "研发部", f"138{i:08d}"])
    for row in extra or []:
        writer.writerow(row)
    return out.getvalue().encode()


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    moto.s3_client().create_bucket(Bucket=BUCKET)
    return {**function_env, "CVC_BATCH_SIZE": "20"}


def fc_context(timeout: int = 60) -> Any:
    creds = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
    return local_fc_context("oss-sync", timeout=timeout, credentials=creds)


def put(moto: Any, key: str, body: bytes) -> None:
    moto.s3_client().put_object(Bucket=BUCKET, Key=key, Body=body)


def keys(moto: Any, prefix: str) -> list[str]:
    answer = moto.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in answer.get("Contents", [])]


def read_json(moto: Any, key: str) -> Any:
    return orjson.loads(moto.s3_client().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_fc_oss_event_syncs_the_object_and_writes_report_and_state(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    put(moto, FC_KEY, export(range(60), extra=[["bad", "", "88", "示例科技", "", ""]]))
    answer = orjson.loads(handle(load_event("fc/oss-putobject.json", raw=True), fc_context(), env=env))
    [run] = answer["runs"]
    assert run["status"] == "partial" and run["outcomes"]["created"] == 60 and run["outcomes"]["rejected"] == 1
    assert run["received"] == sum(run["outcomes"].values()) == 61
    assert len(emulator.users()) == 60
    report_key, problems_key = sorted(keys(moto, f"cvc-sync/reports/{FC_KEY}/"))
    assert problems_key == report_key.removesuffix(".json") + ".problems.csv"  # one row was rejected
    report = read_json(moto, report_key)
    assert report["runId"] == run["runId"] and report["calls"]["CreateUser"] == 3
    assert report["problems"][0]["line"] == 62
    assert read_json(moto, "cvc-sync/state/manifest.json")["users"] == 60


def test_unchanged_reupload_makes_zero_write_calls(env: dict[str, str], moto: Any, emulator: Any) -> None:
    put(moto, FC_KEY, export(range(30)))
    event = load_event("fc/oss-putobject.json", raw=True)
    handle(event, fc_context(), env=env)
    before = emulator.stats()["calls"]
    answer = orjson.loads(handle(event, fc_context(), env=env))
    after = emulator.stats()["calls"]
    assert answer["runs"][0]["outcomes"]["unchanged"] == 30
    assert after.get("CreateUser") == before.get("CreateUser") and "DeleteUser" not in after


def test_lambda_s3_event_with_an_encoded_key(env: dict[str, str], moto: Any, emulator: Any) -> None:
    put(moto, S3_KEY, export(range(5)))
    answer = handle(load_event("aws/s3-put-encoded-key.json"), LocalLambdaContext("upload"), env=env)
    assert answer["runs"][0]["source"]["key"] == S3_KEY and answer["runs"][0]["outcomes"]["created"] == 5


@pytest.mark.parametrize(
    "sample",
    [
        "fc/mns-topic-json-oss-putobject.json",
        "fc/async-destination-onfailure.json",
        "fc/eventbridge-mns-queue-oss-base64.json",
    ],
)
def test_wrapped_notifications_reach_the_same_sync(env: dict[str, str], moto: Any, emulator: Any, sample: str) -> None:
    event = load_event(sample)
    key = _first_key(event)
    put(moto, key, export(range(3)))
    answer = orjson.loads(handle(orjson.dumps(event), fc_context(), env=env))
    assert [r["outcomes"]["created"] for r in answer["runs"]] == [3]


def _first_key(event: Any) -> str:
    from cvcsync.inputs.events import parse_object_events

    return parse_object_events(event).uploads[0].key


def test_own_outputs_and_removals_never_trigger_a_sync(env: dict[str, str], moto: Any, emulator: Any) -> None:
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"]["key"] = "cvc-sync/reports/users.csv/run.json"
    answer = orjson.loads(handle(orjson.dumps(event), fc_context(), env=env))
    assert answer["runs"] == [] and answer["skipped"][0]["reason"] == "own-output"
    removed = orjson.loads(handle(load_event("fc/oss-deleteobject.json", raw=True), fc_context(), env=env))
    assert removed["runs"] == [] and removed["skipped"][0]["reason"] == "not-created"
    assert emulator.stats()["calls"] == {}


def test_an_unsupported_event_is_refused_clearly(env: dict[str, str]) -> None:
    answer = orjson.loads(handle(b'{"hello": "world"}', fc_context(), env=env))
    assert answer["error"]["code"] == "UnsupportedEvent" and "hello" in answer["error"]["message"]


def test_failures_are_dead_lettered_with_source_and_reason(env: dict[str, str], moto: Any, emulator: Any) -> None:
    emulator.set_faults(error_rate=1.0, seed=4)
    put(moto, FC_KEY, export(range(7)))
    answer = orjson.loads(
        handle(load_event("fc/oss-putobject.json", raw=True), fc_context(), env={**env, "CVC_MAX_ATTEMPTS": "2"})
    )
    run = answer["runs"][0]
    assert run["outcomes"]["deadLettered"] == 7 and run["deadLetters"] == 7
    [letters_key] = keys(moto, "cvc-sync/dead-letters/")
    body = moto.s3_client().get_object(Bucket=BUCKET, Key=letters_key)["Body"].read()
    letters = [orjson.loads(line) for line in body.splitlines()]
    assert len(letters) == 7
    first = letters[0]
    assert first["source"]["bucket"] == BUCKET and first["source"]["key"] == FC_KEY and first["source"]["line"] == 2
    assert first["record"]["userId"] == "e0000" and first["errorCode"] in ("InternalError", "ServiceUnavailable")
    assert first["attempts"] == 2 and first["requestId"]
    manifest = read_json(moto, "cvc-sync/state/manifest.json")
    assert manifest["users"] == 0  # the state never claims a failed write ...
    assert manifest["uncertain"] == 7  # ... nor forgets one: CVC may hold what a lost answer did
    assert keys(moto, "cvc-sync/state/in-flight/") == []  # the run's in-flight list was folded into its commit


def test_dead_letters_to_an_sqs_queue(env: dict[str, str], moto: Any, emulator: Any) -> None:
    queue_url = moto.sqs_client().create_queue(QueueName="cvc-dead-letters")["QueueUrl"]
    emulator.set_faults(error_rate=1.0, seed=4)
    put(moto, FC_KEY, export(range(3)))
    handle(
        load_event("fc/oss-putobject.json", raw=True),
        fc_context(),
        env={
            **env,
            "CVC_MAX_ATTEMPTS": "1",
            "CVCSYNC_DEADLETTER_SINK": "queue",
            "CVCSYNC_DEADLETTER_QUEUE_URL": queue_url,
        },
    )
    messages = moto.sqs_client().receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    letters = [orjson.loads(m["Body"]) for m in messages]
    assert sorted(letter["record"]["userId"] for letter in letters) == ["e0000", "e0001", "e0002"]


def test_deadline_checkpoints_and_a_continuation_finishes(env: dict[str, str], moto: Any, emulator: Any) -> None:
    emulator.set_faults(latency_ms=150, seed=2)
    put(moto, FC_KEY, export(range(60)))
    settings = {
        **env,
        "CVC_BATCH_SIZE": "5",
        "CVCSYNC_CONCURRENCY": "1",
        "CVCSYNC_DEADLINE_MARGIN": "1.5",
        "CVCSYNC_FANOUT": "inline",
    }
    answer = orjson.loads(handle(load_event("fc/oss-putobject.json", raw=True), fc_context(timeout=3), env=settings))
    first = answer["runs"][0]
    assert first["status"] == "checkpointed"
    assert 0 < first["outcomes"]["created"] < 60
    # The continuation (here: inline, as FC's async invocation would run it) finished the same run.
    report = read_json(moto, f"cvc-sync/reports/{FC_KEY}/{first['runId']}.json")
    assert report["status"] == "applied" and report["outcomes"]["created"] == 60
    assert any(m.startswith("continued at") for m in report["messages"])
    assert len(emulator.users()) == 60 and sum(emulator.stats()["createBatchSizes"]) == 60
    assert read_json(moto, "cvc-sync/state/manifest.json")["users"] == 60


def test_fan_out_over_a_queue_applies_every_chunk_once(env: dict[str, str], moto: Any, emulator: Any) -> None:
    sqs = moto.sqs_client()
    queue_url = sqs.create_queue(QueueName="cvc-sync-chunks")["QueueUrl"]
    put(moto, FC_KEY, export(range(130)))
    settings = {
        **env,
        "CVCSYNC_FANOUT": "sqs",
        "CVCSYNC_FANOUT_QUEUE_URL": queue_url,
        "CVCSYNC_FANOUT_THRESHOLD": "50",
        "CVCSYNC_FANOUT_CHUNK": "40",
    }
    answer = orjson.loads(handle(load_event("fc/oss-putobject.json", raw=True), fc_context(), env=settings))
    run_id = answer["runs"][0]["runId"]
    assert answer["runs"][0]["status"] == "fanned-out" and len(emulator.users()) == 0
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            bodies.append(orjson.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(b["cvcsync"]["chunk"] for b in bodies) == [0, 1, 2, 3]
    random.Random(3).shuffle(bodies)  # chunks finish in any order
    finished = [handle(body, LocalLambdaContext("worker"), env=settings) for body in bodies]
    assert sum(1 for f in finished if f["runs"]) == 1  # exactly one invocation completes the run
    report = read_json(moto, f"cvc-sync/reports/{FC_KEY}/{run_id}.json")
    assert report["status"] == "applied" and report["outcomes"]["created"] == 130
    assert report["received"] == 130 and len(emulator.users()) == 130
    assert sum(emulator.stats()["createBatchSizes"]) == 130
    assert read_json(moto, "cvc-sync/state/manifest.json")["users"] == 130


def test_an_empty_export_is_refused_loudly_and_deletes_nothing(env: dict[str, str], moto: Any, emulator: Any) -> None:
    put(moto, FC_KEY, export(range(20)))
    handle(load_event("fc/oss-putobject.json", raw=True), fc_context(), env=env)
    put(moto, FC_KEY, b"")
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"]["size"] = 0
    answer = orjson.loads(handle(orjson.dumps(event), fc_context(), env=env))
    run = answer["runs"][0]
    assert run["status"] == "refused" and run["refused"]
    assert run["outcomes"]["skippedByGuard"] == 20 and run["outcomes"]["deleted"] == 0
    assert len(emulator.users()) == 20


def test_a_file_that_cannot_be_read_at_all_still_leaves_a_report_and_a_problems_file(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """Issue 12: a whole-file refusal through the upload function is a run like any other (a report, the problems
    file), not an error with no trace in the bucket; the platform is not asked to retry a file that cannot pass."""
    put(moto, FC_KEY, b"\x1f\x8b\x08\x00" + b"not really gzip" * 20)
    answer = orjson.loads(handle(load_event("fc/oss-putobject.json", raw=True), fc_context(), env=env))
    [run] = answer["runs"]
    assert run["status"] == "rejected" and run["received"] == 0 == sum(run["outcomes"].values())
    report_key, problems_key = sorted(keys(moto, f"cvc-sync/reports/{FC_KEY}/"))
    assert problems_key == report_key.removesuffix(".json") + ".problems.csv"
    report = read_json(moto, report_key)
    assert report["status"] == "rejected" and report["problems"][0]["code"] == "BadGzip"
    assert "gzip" in report["messages"][0]
    problems = moto.s3_client().get_object(Bucket=BUCKET, Key=problems_key)["Body"].read().decode("utf-8-sig")
    assert "BadGzip" in problems
    assert read_json(moto, f"cvc-sync/runs/{run['runId']}/report.json")["status"] == "rejected"
    assert emulator.users() == []
