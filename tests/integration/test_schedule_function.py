"""The scheduled function end to end: events from events/schedule/, state and dead letters in moto (S3, SQS), users
in the emulator. Dead letters come from real upload syncs that failed while the emulator injected faults."""

from __future__ import annotations

import csv
import io
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.engine.state import UNCERTAIN, StateStore
from cvcsync.inputs.events.timer import UnknownTask
from cvcsync.platform import services
from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers import queue, upload
from cvcsync.platform.triggers.schedule import handle
from cvcsync.schedule import alerts, runner
from cvcsync_dev.local import load_handler
from support.events import load_event, sample_paths

STATE = "cvc-sync-state"
UPLOADS = "cvc-user-uploads"
UPLOAD_KEY = "users/2024-05-01/users.csv"  # the key of events/fc/oss-putobject.json


@pytest.fixture
def env(emulator: Any, moto: Any) -> Iterator[dict[str, str]]:
    services.clear_cache()
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=STATE)
    s3.create_bucket(Bucket=UPLOADS)
    yield {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVC_BATCH_SIZE": "20",
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_SQS_ENDPOINT": moto.url,
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "WARNING",
        "CVCSYNC_REDRIVE_BACKOFF_SECONDS": "0.001",  # the tests' letters are due at once
    }
    services.clear_cache()


def fc(timeout: int = 60) -> Any:
    creds = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
    return local_fc_context("scheduled", timeout=timeout, credentials=creds)


def run(sample: str, env: dict[str, str], *, timeout: int = 60) -> dict[str, Any]:
    """The sample as its platform delivers it: FC hands bytes (and gets bytes back), Lambda a dict."""
    if sample.startswith("schedule/fc-"):
        return dict(orjson.loads(handle(load_event(sample, raw=True), fc(timeout), env=env)))
    return dict(handle(load_event(sample), LocalLambdaContext("scheduled", timeout=timeout), env=env))


def export(n: int, *, first: int = 0) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["userId", "userName", "groupId", "groupName"])
    for i in range(first, first + n):
        writer.writerow([f"e{i:04d}", f"员工{i}", "88", "示例科技"])
    return out.getvalue().encode()


def sync_upload(moto: Any, env: dict[str, str], body: bytes) -> dict[str, Any]:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=UPLOAD_KEY, Body=body)
    answer = upload.handle(load_event("fc/oss-putobject.json", raw=True), fc(), env=env)
    return dict(orjson.loads(answer)["runs"][0])


def failed_upload(moto: Any, emulator: Any, env: dict[str, str], n: int, **extra: str) -> None:
    """A real sync of ``n`` users while CVC answers every call with a 5xx: every user is dead-lettered. One batch
    (five failed calls in a row would open the circuit and pause the run instead, which has its own test)."""
    emulator.set_faults(error_rate=1.0, seed=3)
    run_ = sync_upload(moto, {**env, "CVC_BATCH_SIZE": str(max(n, 1)), **extra}, export(n))
    assert run_["outcomes"]["deadLettered"] == n
    emulator.set_faults()


def keys(moto: Any, prefix: str) -> list[str]:
    pages = moto.s3_client().get_paginator("list_objects_v2").paginate(Bucket=STATE, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def read_json(moto: Any, key: str) -> Any:
    return orjson.loads(moto.s3_client().get_object(Bucket=STATE, Key=key)["Body"].read())


def dead_letters(moto: Any) -> list[dict[str, Any]]:
    found = []
    for key in keys(moto, "cvc-sync/dead-letters/"):
        body = moto.s3_client().get_object(Bucket=STATE, Key=key)["Body"].read()
        found += [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return found


# -- every sample through the handler ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample", sample_paths("schedule"))
def test_every_sample_runs_its_task_or_is_refused(env: dict[str, str], moto: Any, sample: str) -> None:
    if "no-task" in sample or "unknown-task" in sample:
        with pytest.raises(UnknownTask):
            run(sample, env)
        return
    result = run(sample, env)
    task = result["task"]
    assert task in sample or sample.endswith("rule-name.json")
    if task == "redrive":
        assert result["status"] == "done" and result["read"] == 0
    elif task == "reconcile":
        assert result["status"] == "in-sync" and keys(moto, result["reportKey"]) == [result["reportKey"]]
    else:
        assert result["status"] == "alerted" and result["alerts"][0]["code"] == alerts.STALE_SYNC
    assert result["trigger"] in ("fc-timer", "eventbridge-schedule", "direct")


def test_the_deployed_handler_reads_its_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    answer = orjson.loads(load_handler("scheduled")(load_event("schedule/fc-timer-redrive.json", raw=True), fc()))
    assert answer["task"] == "redrive" and answer["status"] == "done"


# -- redrive ------------------------------------------------------------------------------------------------------


def test_redrive_converges_once_the_faults_stop(env: dict[str, str], moto: Any, emulator: Any) -> None:
    failed_upload(moto, emulator, env, 30)
    assert len(dead_letters(moto)) == 30 and emulator.users() == []
    result = run("schedule/fc-timer-redrive.json", env)
    assert result["status"] == "done" and result["outcomes"]["applied"] == 30
    assert dead_letters(moto) == [] and keys(moto, "cvc-sync/parked/") == []
    assert sorted(u["userId"] for u in emulator.users()) == [f"e{i:04d}" for i in range(30)]
    assert read_json(moto, "cvc-sync/state/manifest.json")["users"] == 30
    report = read_json(moto, f"cvc-sync/reports/redrive/{result['runId']}.json")
    assert report["outcomes"]["applied"] == 30
    # The state holds what the redrive applied: the same export again costs no write at all.
    assert sync_upload(moto, env, export(30))["outcomes"]["unchanged"] == 30


def test_letters_are_parked_after_the_last_attempt_with_every_failure(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    env = {**env, "CVCSYNC_REDRIVE_MAX_ATTEMPTS": "2"}
    failed_upload(moto, emulator, env, 3)
    emulator.set_faults(error_rate=1.0, seed=5)  # CVC stays broken
    first = run("schedule/aws-rule-input-redrive.json", env)
    assert first["outcomes"]["rescheduled"] == 3
    second = run("schedule/aws-rule-input-redrive.json", env)
    assert second["outcomes"]["parked"] == 3 and dead_letters(moto) == []
    parked = [read_json(moto, k) for k in keys(moto, "cvc-sync/parked/")]
    assert sorted(p["letter"]["record"]["userId"] for p in parked) == ["e0000", "e0001", "e0002"]
    for body in parked:
        assert body["reason"] == "MaxAttempts" and len(body["failures"]) == 3  # the sync's and two redrives'
        assert all(
            f["requestId"] and f["errorCode"] in ("InternalError", "ServiceUnavailable") for f in body["failures"]
        )
        assert len({f["runId"] for f in body["failures"]}) == 3


def test_an_interrupted_redrive_neither_loses_nor_duplicates(env: dict[str, str], moto: Any, emulator: Any) -> None:
    env = {**env, "CVC_BATCH_SIZE": "5", "CVCSYNC_CONCURRENCY": "1", "CVCSYNC_DEADLINE_MARGIN": "0.5"}
    failed_upload(moto, emulator, env, 80)
    emulator.set_faults(latency_ms=200, seed=2)
    options = {"task": "redrive", "pageSize": 5}
    first = dict(handle(options, LocalLambdaContext("scheduled", timeout=4), env=env))
    assert first["status"] == "deadline"
    done_first = first["outcomes"]["applied"]
    assert 0 < done_first < 80 and first["outcomes"]["rescheduled"] == first["outcomes"]["parked"] == 0
    assert len(dead_letters(moto)) == 80 - done_first  # exactly the letters not yet applied are left
    emulator.set_faults()
    second = dict(handle(options, LocalLambdaContext("scheduled", timeout=60), env=env))
    assert second["status"] == "done" and second["outcomes"]["applied"] == 80 - done_first
    assert dead_letters(moto) == [] and len(emulator.users()) == 80
    assert sum(emulator.stats()["createBatchSizes"]) == 80  # every user created exactly once


def test_redrive_from_an_sqs_dead_letter_queue(env: dict[str, str], moto: Any, emulator: Any) -> None:
    queue_url = moto.sqs_client().create_queue(QueueName="cvc-dead-letters")["QueueUrl"]
    env = {**env, "CVCSYNC_DEADLETTER_SINK": "queue", "CVCSYNC_DEADLETTER_QUEUE_URL": queue_url}
    failed_upload(moto, emulator, env, 12)
    assert (
        run("schedule/fc-timer-heartbeat.json", {**env, "CVCSYNC_DEADLETTER_BACKLOG_LIMIT": "10"})["checks"][
            "deadLetters"
        ]
        == 12
    )
    result = run("schedule/fc-timer-redrive-options.json", env)
    assert result["outcomes"]["applied"] == 12 and len(emulator.users()) == 12
    attributes = moto.sqs_client().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


# -- lease ----------------------------------------------------------------------------------------------------------


def test_a_second_run_of_a_task_during_the_first_does_nothing(
    env: dict[str, str], moto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside, finish = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_heartbeat(ctx: Any, options: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.sync.invocation.request_id)
        inside.set()
        assert finish.wait(20)
        return {"task": "heartbeat", "status": "ok"}

    monkeypatch.setitem(runner.RUNNERS, "heartbeat", slow_heartbeat)
    first_context = fc()
    results: list[dict[str, Any]] = []
    worker = threading.Thread(
        target=lambda: results.append(
            orjson.loads(handle(load_event("schedule/fc-timer-heartbeat.json", raw=True), first_context, env=env))
        )
    )
    worker.start()
    try:
        assert inside.wait(20)
        second = run("schedule/aws-scheduled-event-detail-heartbeat.json", env)
    finally:
        finish.set()
        worker.join(20)
    assert second["status"] == "lease-held" and second["holder"] == first_context.request_id
    assert calls == [first_context.request_id]  # the second run did nothing
    assert results[0]["status"] == "ok"
    assert run("schedule/aws-scheduled-event-detail-heartbeat.json", env)["status"] == "ok"  # released


def test_an_expired_lease_of_a_crashed_run_is_taken_over(env: dict[str, str], moto: Any) -> None:
    crashed = {
        "task": "redrive",
        "generation": 1,
        "state": "held",
        "holder": "req-crashed",
        "acquiredAt": "2024-05-01T02:00:00.000Z",
        "expiresAt": "2024-05-01T02:06:00.000Z",
    }
    moto.s3_client().put_object(Bucket=STATE, Key="cvc-sync/leases/redrive/0000000001.json", Body=orjson.dumps(crashed))
    result = run("schedule/fc-timer-redrive.json", env)
    assert result["status"] == "done"
    chain = [read_json(moto, k) for k in keys(moto, "cvc-sync/leases/redrive/")]
    assert [(g["generation"], g["state"]) for g in chain] == [(1, "held"), (2, "held"), (3, "released")]


# -- reconcile ------------------------------------------------------------------------------------------------------


def test_reconcile_reports_drift_and_heals_each_way(env: dict[str, str], moto: Any, emulator: Any) -> None:
    sync_upload(moto, env, export(10))
    client = CvcClient.from_env(env=env)
    client.create_batch([{"userId": "outsider", "userName": "外人", "groupId": "88", "groupName": "示例科技"}])
    client.delete_batch(["e0003"])
    report = run("schedule/fc-timer-reconcile.json", env)
    assert report["status"] == "drift" and report["drift"]["counts"] == {
        "onlyInCvc": 1,
        "onlyInState": 1,
        "different": 0,
        "uncertain": 0,
    }
    assert report["drift"]["snapshot"] == {"lastAcceptedUsers": 10, "cvcUsers": 10, "difference": 0}
    healed = run("schedule/fc-timer-reconcile.json", {**env, "CVCSYNC_RECONCILE_MODE": "heal-cvc"})
    assert healed["status"] == "healed" and (healed["heal"]["pushed"], healed["heal"]["deleted"]) == (1, 1)
    assert sorted(u["userId"] for u in emulator.users()) == [f"e{i:04d}" for i in range(10)]
    client.create_batch([{"userId": "outsider", "userName": "外人", "groupId": "88", "groupName": "示例科技"}])
    state_healed = run("schedule/fc-timer-reconcile-heal-state.json", env)
    assert state_healed["status"] == "healed" and read_json(moto, "cvc-sync/state/manifest.json")["users"] == 11
    assert run("schedule/aws-scheduled-event-rule-name.json", env)["status"] == "in-sync"


def test_healing_never_resurrects_an_uncertain_user_nor_erases_a_running_syncs_marks(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """A run (still going, or killed before its commit) marked e0003 in flight and deleted it from CVC. heal-cvc
    must not re-create it from the state's old record; heal-state must leave it uncertain and the run's list in
    place while the list exists; once a commit has folded the list in, heal-state settles it."""
    sync_upload(moto, env, export(10))
    state = StateStore(S3ObjectStore(moto.s3_client()), STATE, "cvc-sync/state/")
    state.mark_in_flight("a-running-sync", iter([("e0003", None)]))
    CvcClient.from_env(env=env).delete_batch(["e0003"])
    in_flight = "cvc-sync/state/in-flight/a-running-sync.ndjson.gz"

    healed = run("schedule/fc-timer-reconcile.json", {**env, "CVCSYNC_RECONCILE_MODE": "heal-cvc"})
    assert "e0003" not in {u["userId"] for u in emulator.users()}
    assert healed["drift"]["uncertain"] == ["e0003"] and healed["heal"]["uncertain"] == 1
    assert (healed["heal"]["pushed"], healed["heal"]["deleted"], healed["status"]) == (0, 0, "partly-healed")

    CvcClient.from_env(env=env).create_batch(
        [{"userId": "outsider", "userName": "外", "groupId": "88", "groupName": "示例科技"}]
    )
    state_healed = run("schedule/fc-timer-reconcile-heal-state.json", env)
    assert state_healed["status"] == "healed" and state_healed["heal"]["keptInFlight"] == 1
    assert keys(moto, in_flight) == [in_flight]
    assert (read_json(moto, "cvc-sync/state/manifest.json")["uncertain"], uncertain_users(state)) == (1, ["e0003"])

    newcomer = {"userId": "e0100", "userName": "新", "groupId": "88", "groupName": "示例科技"}
    change = {"type": "upsert", "eventId": "e-100", "occurredAt": "2024-05-01T10:00:00Z", "user": newcomer}
    record = {"messageId": "m-1", "body": orjson.dumps(change).decode(), "eventSource": "aws:sqs"}
    answer = queue.handle({"Records": [record]}, LocalLambdaContext("queue"), env=env)  # it commits: folds the list
    assert answer["outcomes"]["created"] == 1
    assert keys(moto, in_flight) == []
    assert run("schedule/fc-timer-reconcile-heal-state.json", env)["status"] == "healed"
    assert uncertain_users(state) == [] and read_json(moto, "cvc-sync/state/manifest.json")["users"] == 11


def uncertain_users(store: StateStore) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        state = store.checkout(Path(tmp))
        try:
            return [uid for uid, digest, _ in state.users() if digest == UNCERTAIN]
        finally:
            state.close()


# -- heartbeat ------------------------------------------------------------------------------------------------------


def test_heartbeat_alerts_reach_the_alert_queue_and_silence_when_healthy(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    sqs = moto.sqs_client()
    queue_url = sqs.create_queue(QueueName="cvc-sync-alerts")["QueueUrl"]
    env = {**env, "CVCSYNC_ALERT_QUEUE_URL": queue_url, "CVCSYNC_DEADLETTER_BACKLOG_LIMIT": "2"}
    stale = run("schedule/fc-timer-heartbeat.json", env)
    assert [a["code"] for a in stale["alerts"]] == [alerts.STALE_SYNC]
    failed_upload(moto, emulator, env, 3)  # a sync ran (and committed), but left 3 dead letters
    backlog = run("schedule/fc-timer-heartbeat.json", env)
    assert [a["code"] for a in backlog["alerts"]] == [alerts.DEADLETTER_BACKLOG]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(orjson.loads(m["Body"])["code"] for m in messages) == [alerts.DEADLETTER_BACKLOG, alerts.STALE_SYNC]
    run("schedule/fc-timer-redrive.json", env)
    healthy = run("schedule/fc-timer-heartbeat.json", env)
    assert healthy["status"] == "ok" and healthy["checks"]["deadLetters"] == 0
