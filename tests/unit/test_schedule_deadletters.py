"""What the redrive added to dead letters: history and identity, a one-pass walk of each sink, counts, parking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from botocore.stub import Stubber

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.errors import InvalidInputError
from cvcsync.outputs.deadletters import DeadLetter, MemoryDeadLetterSink
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink, QueueDeadLetterSink
from cvcsync.outputs.parked import ParkedLetters
from support.schedule import START, upload_letter

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/111122223333/cvc-sync-dead-letters"


def test_retried_moves_the_failure_into_history_and_keeps_the_identity() -> None:
    original = upload_letter("u-1")
    again = original.retried(
        error_code="10001",
        error_message="refused",
        request_id="req-2",
        attempts=1,
        retryable=False,
        run_id="redrive-1",
        now=START + timedelta(minutes=5),
    )
    assert again.redrives == 1 and original.redrives == 0
    assert again.history[0] == {
        "failedAt": "2024-05-01T02:00:00.000Z",
        "errorCode": "ServiceUnavailable",
        "errorMessage": "the service is unavailable",
        "requestId": "req-u-1",
        "attempts": 2,
        "retryable": True,
        "runId": "run-1",
    }
    assert (again.error_code, again.request_id, again.failed_at) == ("10001", "req-2", "2024-05-01T02:05:00.000Z")
    assert again.first_failed_at == original.first_failed_at == "2024-05-01T02:00:00.000Z"
    assert again.identity == original.identity
    assert [f["errorCode"] for f in again.failures()] == ["ServiceUnavailable", "10001"]
    assert DeadLetter.from_json(again.to_json()) == again


def test_a_letter_without_history_serialises_as_before() -> None:
    data = orjson.loads(upload_letter("u-1").to_json())
    assert "history" not in data
    assert upload_letter("u-1").identity != upload_letter("u-2").identity


@pytest.mark.parametrize("history", ["not a list", [1, 2], {"a": 1}])
def test_a_bad_history_is_refused(history: Any) -> None:
    data = orjson.loads(upload_letter("u-1").to_json())
    data["history"] = history
    with pytest.raises(InvalidInputError, match="history"):
        DeadLetter.from_dict(data)


def test_object_sink_pages_walk_every_letter_once_while_letters_are_removed_and_added() -> None:
    store = MemoryObjectStore()
    sink = ObjectDeadLetterSink(store, "state", "cvc-sync/dead-letters/")
    sink.put([upload_letter(f"u-{n}") for n in range(5)])
    sink.put([upload_letter(f"u-{n}") for n in range(5, 8)])
    seen: list[str] = []
    for page in sink.pages(3):
        seen += [s.letter.record["userId"] for s in page]
        sink.remove([page[0].handle])  # removing rewrites the object mid-walk
    assert sorted(seen) == [f"u-{n}" for n in range(8)]  # objects in key order, each letter once
    assert sink.count() == 8 - 3
    assert sink.count(limit=1) == 2  # stops counting once past the limit


def test_memory_sink_pages_are_a_snapshot() -> None:
    sink = MemoryDeadLetterSink()
    sink.put([upload_letter(f"u-{n}") for n in range(3)])
    pages = sink.pages(2)
    first = next(pages)
    sink.put([upload_letter("late")])
    assert [len(first), len(next(pages))] == [2, 1] and next(pages, None) is None
    assert sink.count() == 4


def test_queue_sink_counts_with_the_approximate_attributes() -> None:
    import boto3

    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_response(
            "get_queue_attributes",
            {
                "Attributes": {
                    "ApproximateNumberOfMessages": "7",
                    "ApproximateNumberOfMessagesNotVisible": "2",
                    "ApproximateNumberOfMessagesDelayed": "1",
                }
            },
        )
        assert QueueDeadLetterSink(client, QUEUE_URL).count() == 10


def test_parking_is_create_only_and_keeps_every_failure() -> None:
    store = MemoryObjectStore()
    parked = ParkedLetters(store, "state", "cvc-sync/parked/", now=lambda: START)
    letter = upload_letter("u-1").retried(
        error_code="10001", error_message="refused", request_id="r", attempts=1, retryable=False, run_id="rd"
    )
    assert parked.put(letter, "MaxAttempts")
    assert not parked.put(
        letter.retried(error_code="X", error_message="", request_id=None, attempts=1, retryable=False, run_id="rd2"),
        "MaxAttempts",
    )  # same identity: kept once
    [key] = list(parked.keys())
    assert key == f"cvc-sync/parked/2024/05/01/{letter.identity}.json"
    found = parked.get(key)
    assert found is not None and found.letter == letter and found.reason == "MaxAttempts"
    body = orjson.loads(store.get_bytes("state", key) or b"")
    assert [f["errorCode"] for f in body["failures"]] == ["ServiceUnavailable", "10001"]
    assert body["failures"][0]["requestId"] == "req-u-1" and body["parkedAt"] == "2024-05-01T02:00:00.000Z"
    assert parked.count() == 1 and parked.get("cvc-sync/parked/none.json") is None


def test_identity_survives_a_record_orjson_cannot_encode() -> None:
    letter = upload_letter("u-1", record={"userId": "u-1", "userName": "\ud800"})
    assert len(letter.identity) == 32 and letter.identity == DeadLetter.from_json(letter.to_json()).identity
