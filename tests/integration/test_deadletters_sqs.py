"""Dead-letter sinks against moto in server mode: the queue sink on SQS, the object sink on S3."""

from __future__ import annotations

from typing import Any

import pytest

from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.outputs.deadletters import UNREADABLE, DeadLetter, DeadLetterError
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink, QueueDeadLetterSink
from support.moto import MotoServer

BUCKET = "cvc-sync-state"


def letter(n: int, **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "record": {"userId": f"u-{n:04d}", "userName": "张三", "email": f"user{n}@example.com"},
        "source": {"bucket": "cvc-user-uploads", "key": "users/2024-05-01/users.csv", "line": n + 1},
        "error_code": "UserExists" if n % 2 else "InvalidMobile",
        "error_message": "declined",
        "request_id": f"REQ-{n}",
        "failed_at": "2024-05-01T02:03:04.567Z",
        "run_id": "run-1",
    }
    return DeadLetter(**{**fields, **overrides})


def count_calls(client: Any, operation: str) -> list[int]:
    """How many entries each call of ``operation`` carried."""
    calls: list[int] = []
    client.meta.events.register(
        f"provide-client-params.sqs.{operation}", lambda params, **_: calls.append(len(params["Entries"]))
    )
    return calls


def queue(moto: MotoServer, name: str = "cvc-sync-dead-letters", **attributes: str) -> tuple[Any, str]:
    client = moto.sqs_client()
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return client, url


def test_25_letters_go_in_3_batches_and_come_back_whole(moto: MotoServer) -> None:
    client, url = queue(moto)
    sent = count_calls(client, "SendMessageBatch")
    sink = QueueDeadLetterSink(client, url)
    letters = [letter(n) for n in range(25)]
    assert sink.put(letters) == 25
    assert sent == [10, 10, 5]

    stored = sink.read(100)
    assert sorted((s.letter for s in stored), key=lambda x: x.request_id or "") == sorted(
        letters, key=lambda x: x.request_id or ""
    )
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "25"

    deleted = count_calls(client, "DeleteMessageBatch")
    assert sink.remove([s.handle for s in stored]) == 25
    assert deleted == [10, 10, 5]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_messages_carry_the_error_code_as_an_attribute(moto: MotoServer) -> None:
    client, url = queue(moto)
    QueueDeadLetterSink(client, url).put([letter(1)])
    (message,) = client.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert message["MessageAttributes"]["errorCode"]["StringValue"] == "UserExists"
    assert DeadLetter.from_json(message["Body"]) == letter(1)


def test_batches_also_stay_under_the_size_limit(moto: MotoServer) -> None:
    client, url = queue(moto)
    sent = count_calls(client, "SendMessageBatch")
    sink = QueueDeadLetterSink(client, url)
    sink.put([letter(n, record={"blob": "x" * 100_000}) for n in range(5)])
    assert sent == [2, 2, 1]
    assert len(sink.read(10)) == 5


def test_a_letter_too_large_for_a_message_goes_to_the_object_sink(moto: MotoServer) -> None:
    client, url = queue(moto)
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    overflow = ObjectDeadLetterSink(S3ObjectStore(s3), BUCKET, "cvc-sync/dead-letters/")
    big = letter(99, record={"blob": "张" * 100_000})  # 300 KB of UTF-8
    sink = QueueDeadLetterSink(client, url, overflow=overflow)
    assert sink.put([letter(1), big, letter(2)]) == 3
    assert sorted(s.letter.request_id or "" for s in sink.read(10)) == ["REQ-1", "REQ-2"]
    assert [s.letter for s in overflow.read()] == [big]


def test_without_an_object_sink_the_oversized_letter_is_refused_after_the_rest_are_sent(moto: MotoServer) -> None:
    client, url = queue(moto)
    sink = QueueDeadLetterSink(client, url)
    with pytest.raises(DeadLetterError) as info:
        sink.put([letter(1), letter(2, record={"blob": "x" * 300_000})])
    assert info.value.code == "DeadLetterTooLarge"
    assert [s.letter for s in sink.read(10)] == [letter(1)]


def test_fifo_queue(moto: MotoServer) -> None:
    client, url = queue(moto, "cvc-sync-dead-letters.fifo", FifoQueue="true")
    sink = QueueDeadLetterSink(client, url)
    assert sink.put([letter(n) for n in range(12)]) == 12
    # One message group per run: in order, and SQS holds the rest of a group back while a page is in flight.
    first = sink.read(20)
    assert [s.letter.request_id for s in first] == [f"REQ-{n}" for n in range(10)]
    assert sink.read(20) == []
    assert sink.remove([s.handle for s in first]) == 10
    assert [s.letter.request_id for s in sink.read(20)] == ["REQ-10", "REQ-11"]


def test_a_foreign_message_on_the_queue_is_returned_as_unreadable(moto: MotoServer) -> None:
    client, url = queue(moto)
    client.send_message(QueueUrl=url, MessageBody="hello, not a letter")
    (stored,) = QueueDeadLetterSink(client, url).read(10)
    assert stored.letter.error_code == UNREADABLE
    assert stored.letter.record == {"raw": "hello, not a letter"}
    assert stored.letter.source["queue"] == url


def test_missing_queue_is_a_dead_letter_error(moto: MotoServer) -> None:
    client, url = queue(moto)
    client.delete_queue(QueueUrl=url)
    with pytest.raises(DeadLetterError) as info:
        QueueDeadLetterSink(client, url).put([letter(1)])
    assert "NonExistentQueue" in info.value.code


def test_object_sink_on_s3(moto: MotoServer) -> None:
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    store = S3ObjectStore(s3)
    sink = ObjectDeadLetterSink(store, BUCKET, "cvc-sync/dead-letters/")
    sink.put([letter(n) for n in range(3)])
    sink.put([letter(n) for n in range(3, 5)])
    keys = list(store.list_keys(BUCKET, "cvc-sync/dead-letters/"))
    assert len(keys) == 2 and all(k.endswith(".ndjson") and "/run-1-" in k for k in keys)
    head = s3.head_object(Bucket=BUCKET, Key=keys[0])
    assert head["ContentType"] == "application/x-ndjson"
    stored = sink.read(10)
    assert sorted(s.letter.request_id or "" for s in stored) == [f"REQ-{n}" for n in range(5)]
    first_object = [s for s in stored if s.handle.startswith(f'["{keys[0]}"')]
    assert sink.remove([first_object[0].handle]) == 1
    assert len(sink.read(10)) == 4
    assert sink.remove([s.handle for s in sink.read(10)]) == 4
    assert list(store.list_keys(BUCKET, "cvc-sync/dead-letters/")) == []
