"""The queue function end to end: events from events/, state and dead letters in moto, users in the emulator."""

from __future__ import annotations

import io
import random
from typing import Any

import orjson
import pytest

from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers.queue import RetryLater, handle
from support.events import load_event

STATE_BUCKET = "cvc-sync-state"


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    moto.s3_client().create_bucket(Bucket=STATE_BUCKET)
    return {
        **function_env,
        "CVC_MAX_ATTEMPTS": "2",
        "CVCSYNC_STATE_BUCKET": STATE_BUCKET,
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }


def fc() -> Any:
    return local_fc_context(
        "queue", credentials={"access_key_id": "t", "access_key_secret": "t", "security_token": "t"}
    )


def sqs_event(*bodies: Any, fifo_groups: list[str] | None = None) -> dict[str, Any]:
    records = []
    for n, body in enumerate(bodies):
        attributes: dict[str, Any] = {"ApproximateReceiveCount": "1", "SentTimestamp": "1714528805000"}
        arn = "arn:aws:sqs:us-east-1:000000000000:cvc-changes"
        if fifo_groups:
            attributes.update(MessageGroupId=fifo_groups[n], SequenceNumber=str(1000 + n))
            arn += ".fifo"
        records.append(
            {
                "messageId": f"m-{n}",
                "receiptHandle": f"r-{n}",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": "x",
                "body": body if isinstance(body, str) else orjson.dumps(body).decode(),
            }
        )
    return {"Records": records}


def upsert(uid: str, name: str, at: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "upsert",
        "eventId": event_id or f"e-{uid}-{at}",
        "occurredAt": at,
        "user": {"userId": uid, "userName": name, "groupId": "88", "groupName": "示例科技"},
    }


def delete(uid: str, at: str) -> dict[str, Any]:
    return {"type": "delete", "eventId": f"d-{uid}-{at}", "occurredAt": at, "userId": uid}


def users(emulator: Any) -> dict[str, str]:
    return {u["userId"]: u["userName"] for u in emulator.users()}


def test_sqs_standard_sample(env: dict[str, str], emulator: Any) -> None:
    answer = handle(load_event("aws/queue-sqs-standard.json"), LocalLambdaContext("queue"), env=env)
    assert answer["batchItemFailures"] == []
    assert set(users(emulator)) == {"u-2002", "u-2003"}
    assert answer["outcomes"]["created"] == 2 and answer["outcomes"]["deleted"] == 1


@pytest.mark.parametrize(
    ("sample", "created"),
    [
        ("fc/queue-mns-topic-json-v1-batch.json", 1),
        ("fc/queue-eventbridge-mns-base64.json", 1),
        ("fc/queue-destination-mns-topic.json", 1),
        ("aws/queue-sns.json", None),
        ("aws/queue-eventbridge-custom.json", None),
    ],
)
def test_every_valid_sample_shape_syncs(env: dict[str, str], emulator: Any, sample: str, created: int | None) -> None:
    context = fc() if sample.startswith("fc/") else LocalLambdaContext("queue")
    answer = handle(load_event(sample, raw=sample.startswith("fc/")), context, env=env)
    summary = orjson.loads(answer) if isinstance(answer, bytes) else answer
    outcomes = summary["outcomes"]
    assert sum(outcomes.values()) > 0 and outcomes["deadLettered"] == 0 and outcomes["retried"] == 0
    if created is not None:
        assert outcomes["created"] == created
    assert len(emulator.users()) == outcomes["created"]


@pytest.mark.parametrize(
    "sample",
    [
        "fc/queue-mns-topic-json.json",
        "fc/queue-mns-topic-stream-no-attributes.json",
        "fc/queue-eventbridge-kafka-batch.json",
        "fc/queue-eventbridge-rocketmq-single.json",
    ],
)
def test_the_reference_samples_bodies_are_dead_lettered_as_malformed(
    env: dict[str, str], moto: Any, sample: str
) -> None:
    summary = orjson.loads(handle(load_event(sample, raw=True), fc(), env=env))
    assert summary["outcomes"]["deadLettered"] == summary["deadLetters"] >= 1
    listing = moto.s3_client().list_objects_v2(Bucket=STATE_BUCKET, Prefix="cvc-sync/dead-letters/")
    body = moto.s3_client().get_object(Bucket=STATE_BUCKET, Key=listing["Contents"][0]["Key"])["Body"].read()
    letter = orjson.loads(body.splitlines()[0])
    assert letter["kind"] == "message" and letter["errorCode"] == "MalformedMessage"
    assert "userName: is required" in letter["errorMessage"] and not letter["retryable"]


def test_changes_are_coalesced_into_the_fewest_calls(env: dict[str, str], emulator: Any) -> None:
    event = sqs_event(
        upsert("a", "甲1", "2024-05-01T00:00:01Z"),
        upsert("b", "乙", "2024-05-01T00:00:01Z"),
        upsert("a", "甲3", "2024-05-01T00:00:03Z"),
        upsert("a", "甲2", "2024-05-01T00:00:02Z"),
    )
    answer = handle(event, LocalLambdaContext("queue"), env=env)
    assert users(emulator) == {"a": "甲3", "b": "乙"}
    assert answer["outcomes"]["superseded"] == 2 and answer["outcomes"]["created"] == 2
    assert emulator.stats()["createBatchSizes"] == [2]


def test_duplicate_deliveries_do_no_harm(env: dict[str, str], emulator: Any) -> None:
    event = sqs_event(upsert("a", "甲", "2024-05-01T00:00:01Z", event_id="same"))
    handle(event, LocalLambdaContext("queue"), env=env)
    again = handle(event, LocalLambdaContext("queue"), env=env)
    assert again["outcomes"]["duplicate"] == 1 and emulator.stats()["createBatchSizes"] == [1]


def test_a_copy_in_the_batch_of_a_change_that_failed_does_not_mark_it_applied(
    env: dict[str, str], emulator: Any
) -> None:
    change = upsert("a", "甲", "2024-05-01T00:00:01Z", event_id="same")
    emulator.set_faults(error_rate=1.0, seed=1)
    first = handle(sqs_event(change, change), LocalLambdaContext("queue"), env=env)
    assert first["outcomes"]["retried"] == 1 and first["outcomes"]["duplicate"] == 1
    assert [f["itemIdentifier"] for f in first["batchItemFailures"]] == ["m-0"]  # the copy is acknowledged
    emulator.set_faults()
    redelivered = handle(sqs_event(change), LocalLambdaContext("queue"), env=env)
    # Sent again, not a "duplicate". The first run marked "a" in flight (CVC may hold it), so the state knows it as
    # uncertain and the write is an update.
    assert redelivered["outcomes"]["updated"] == 1 and users(emulator) == {"a": "甲"}


def test_an_out_of_order_create_never_resurrects_a_deleted_user(env: dict[str, str], emulator: Any) -> None:
    handle(sqs_event(upsert("a", "甲", "2024-05-01T00:00:01Z")), LocalLambdaContext("queue"), env=env)
    handle(sqs_event(delete("a", "2024-05-01T00:00:05Z")), LocalLambdaContext("queue"), env=env)
    late = handle(
        sqs_event(upsert("a", "甲", "2024-05-01T00:00:03Z", event_id="late")), LocalLambdaContext("q"), env=env
    )
    assert late["outcomes"]["stale"] == 1 and "a" not in users(emulator)


def test_a_poison_message_is_dead_lettered_and_the_rest_applied(env: dict[str, str], emulator: Any) -> None:
    event = sqs_event(upsert("a", "甲", "2024-05-01T00:00:01Z"), "not json at all", {"type": "upsert", "user": {}})
    answer = handle(event, LocalLambdaContext("queue"), env=env)
    assert answer["batchItemFailures"] == [] and answer["deadLetters"] == 2
    assert users(emulator) == {"a": "甲"}


def test_partial_batch_response_names_exactly_the_failed_messages(env: dict[str, str], emulator: Any) -> None:
    # Throttling that outlasts the client's attempts for some calls: those messages, and only those, are retried.
    emulator.set_faults(throttle_rate=0.5, seed=9)
    bodies = [upsert(f"u{i}", "名", "2024-05-01T00:00:01Z") for i in range(12)]
    env = {**env, "CVC_BATCH_SIZE": "1", "CVCSYNC_CONCURRENCY": "1", "CVC_MAX_ATTEMPTS": "1"}
    answer = handle(sqs_event(*bodies), LocalLambdaContext("queue"), env=env)
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    created = set(users(emulator))
    assert failed and created  # the seed gives both
    assert failed == {f"m-{i}" for i in range(12) if f"u{i}" not in created}
    assert answer["outcomes"]["retried"] == len(failed)


def test_fifo_keeps_group_order_after_a_failure(env: dict[str, str], emulator: Any) -> None:
    emulator.set_faults(error_rate=1.0, seed=1)
    event = sqs_event(
        upsert("a", "甲", "2024-05-01T00:00:01Z"), upsert("b", "乙", "2024-05-01T00:00:01Z"), fifo_groups=["g1", "g1"]
    )
    env = {**env, "CVC_BATCH_SIZE": "1"}
    answer = handle(event, LocalLambdaContext("queue"), env=env)
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == ["m-0", "m-1"]


def test_fifo_later_messages_of_a_failed_group_fail_even_if_applied(env: dict[str, str], emulator: Any) -> None:
    from cvcsync.engine.outcomes import RunReport
    from cvcsync.platform.triggers.queue import _sqs_failures
    from cvcsync.runs.changes import DONE, RETRY, ChangeSyncResult, MessageResult

    result = ChangeSyncResult(
        RunReport("r", "changes"),
        [MessageResult("m1", RETRY, "g"), MessageResult("m2", DONE, "g"), MessageResult("m3", DONE, "h")],
    )
    assert _sqs_failures(result, fifo=True) == [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    assert _sqs_failures(result, fifo=False) == [{"itemIdentifier": "m1"}]


def test_the_circuit_breaker_stops_calling_a_failing_cvc(
    env: dict[str, str], emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong", "CVC_BATCH_SIZE": "1"}
    bodies = [upsert(f"u{i}", "名", "2024-05-01T00:00:01Z") for i in range(20)]
    answer = handle(sqs_event(*bodies), LocalLambdaContext("queue"), env=env)
    assert answer["circuitOpen"] and len(answer["batchItemFailures"]) == 20
    calls = emulator.stats()["calls"].get("CreateUser", 0) + emulator.stats()["calls"].get("GetAccountInfo", 0)
    assert calls <= 4  # the concurrent first batches at most, not 20
    assert sum(1 for r in caplog.records if getattr(r, "code", None) == "CircuitOpen") == 1


def test_fc_triggers_raise_to_be_retried_and_replays_are_harmless(env: dict[str, str], emulator: Any) -> None:
    event = load_event("fc/queue-mns-topic-json-v1-batch.json", raw=True)
    emulator.set_faults(error_rate=1.0, seed=3)
    with pytest.raises(RetryLater):
        handle(event, fc(), env=env)
    emulator.set_faults()
    first = orjson.loads(handle(event, fc(), env=env))
    replay = orjson.loads(handle(event, fc(), env=env))
    assert first["outcomes"]["retried"] == 0
    assert replay["outcomes"]["duplicate"] == sum(replay["outcomes"].values())


def test_shuffled_and_replayed_deliveries_converge(env: dict[str, str], emulator: Any) -> None:
    changes = [
        upsert("a", "v1", "2024-05-01T00:00:01Z"),
        upsert("a", "v2", "2024-05-01T00:00:02Z"),
        delete("b", "2024-05-01T00:00:03Z"),
        upsert("b", "b1", "2024-05-01T00:00:01Z"),
        upsert("c", "c1", "2024-05-01T00:00:04Z"),
    ]
    deliveries = [changes[i] for i in (4, 1, 3, 0, 2, 1, 4)]
    random.Random(5).shuffle(deliveries)
    for change in deliveries:
        handle(sqs_event(change), LocalLambdaContext("queue"), env=env)
    assert users(emulator) == {"a": "v2", "c": "c1"}


def test_without_a_state_bucket_no_boto3_is_imported_and_dead_letters_are_logged(emulator: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    script = (
        "import sys, orjson\n"
        "from cvcsync.platform.triggers.queue import handle\n"
        "from cvcsync.platform.runtime import local_fc_context\n"
        "event = orjson.dumps({'TopicOwner': '1', 'Message': orjson.dumps({'changes': [\n"
        "  {'type': 'upsert', 'eventId': 'x1', 'occurredAt': '2024-05-01T00:00:00Z',\n"
        "   'user': {'userId': 's1', 'userName': '无状态', 'groupId': '88', 'groupName': 'G'}}]}).decode(),\n"
        "  'Subscriber': '1', 'PublishTime': 1714528800123, 'SubscriptionName': 's', 'MessageMD5': 'x',\n"
        "  'TopicName': 't', 'MessageId': 'm1'})\n"
        "ctx = local_fc_context('queue', credentials={'access_key_id': 'a', 'access_key_secret': 'b'})\n"
        "print(orjson.loads(handle(event, ctx))['outcomes']['created'])\n"
        "bad = orjson.dumps({'TopicOwner': '1', 'Message': 'not json', 'Subscriber': '1', 'PublishTime': 1,\n"
        "  'SubscriptionName': 's', 'MessageMD5': 'x', 'TopicName': 't', 'MessageId': 'm2'})\n"
        "print(orjson.loads(handle(bad, ctx))['deadLetters'])\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["1", "1", "False False"]
    assert '"code":"DeadLetter"' in result.stderr and '"errorCode":"MalformedMessage"' in result.stderr


def _lambda_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_a_real_sqs_redrive_moves_a_message_that_keeps_failing(env: dict[str, str], emulator: Any, moto: Any) -> None:
    sqs = moto.sqs_client()
    dlq_url = sqs.create_queue(QueueName="cvc-changes-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="cvc-changes",
        Attributes={"RedrivePolicy": orjson.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).decode()},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def poll() -> int:
        """One poll of the event source mapping: deliver, then delete what the function did not report failed."""
        received = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        if received:
            answer = handle(_lambda_event(queue_arn, received), LocalLambdaContext("queue"), env=env)
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            assert failed == {m["MessageId"] for m in received}  # CVC is down: every message goes back
            for message in received:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(received)

    emulator.set_faults(error_rate=1.0, seed=2)
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=orjson.dumps(upsert("down", "坏", "2024-05-01T00:00:01Z")).decode()
    )
    deliveries = sum(poll() for _ in range(4))
    assert deliveries == 2  # maxReceiveCount: after the second failed delivery SQS moves it
    moved = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [orjson.loads(m["Body"])["user"]["userId"] for m in moved] == ["down"]
    assert "down" not in users(emulator)


def test_an_open_circuit_leaves_a_marker_for_the_heartbeat(env: dict[str, str], moto: Any) -> None:
    env = {**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"}
    handle(sqs_event(upsert("a", "甲", "2024-05-01T00:00:01Z")), LocalLambdaContext("queue"), env=env)
    marker = orjson.loads(
        moto.s3_client().get_object(Bucket=STATE_BUCKET, Key="cvc-sync/alerts/circuit-open")["Body"].read()
    )
    assert marker["source"] == "queue" and "SignatureDoesNotMatch" in marker["reason"]


def test_a_snapshots_deletion_is_a_tombstone_for_older_queue_events(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    from cvcsync.platform.runtime import from_context
    from cvcsync.platform.services import build_context
    from cvcsync.runs.export import sync_source

    ctx = build_context(from_context(None), STATE_BUCKET, inline=None, env=env)
    header = b"userId,userName,groupId,groupName\n"
    sync_source(
        io.BytesIO(header + b"a,A,88,G\nb,B,88,G\n"), name="s.csv", source={"key": "s.csv"}, mode="full", ctx=ctx
    )
    sync_source(
        io.BytesIO(header + b"a,A,88,G\n"), name="s.csv", source={"key": "s.csv"}, mode="full", ctx=ctx, approved=True
    )
    assert "b" not in users(emulator)
    late = handle(sqs_event(upsert("b", "B", "2024-05-01T00:00:01Z", event_id="old")), LocalLambdaContext("q"), env=env)
    assert late["outcomes"]["stale"] == 1 and "b" not in users(emulator)
