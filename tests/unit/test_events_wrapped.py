"""Object events inside queue and topic messages: unwrapped recursively, within a depth limit."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from cvcsync.inputs.events import MAX_DEPTH, UnsupportedEvent, parse_object_events
from support.events import load_event

PUT_KEY = "users/2024-05-01/users.csv"


def as_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def keys(event: Any) -> list[str]:
    return [u.key for u in parse_object_events(event).uploads]


def test_sqs_batch_reads_every_record_and_skips_the_test_event() -> None:
    got = parse_object_events(load_event("aws/sqs-s3-notification.json"))
    assert [u.key for u in got.uploads] == ["users/2024-05-02/users.csv"]
    assert [s.reason for s in got.skipped] == ["test-event"]


def test_sns_envelope_inside_sqs() -> None:
    assert keys(load_event("aws/sqs-sns-s3-notification.json")) == ["users/2024-05-03/new hires.csv"]


def test_mns_topic_json_message_may_be_base64() -> None:
    event = load_event("fc/mns-topic-json-oss-putobject.json")
    event["Message"] = base64.b64encode(event["Message"].encode()).decode()
    assert keys(event) == ["users/2024-05-02/users.csv"]


def test_mns_stream_without_attributes_is_the_oss_event_itself() -> None:
    assert keys(load_event("fc/oss-putobject.json", raw=True)) == [PUT_KEY]


def test_eventbridge_mns_queue_body_may_be_plain_json() -> None:
    event = load_event("fc/eventbridge-mns-queue-oss-base64.json")
    body = base64.b64decode(event["data"]["messageBody"]).decode()
    event["data"]["messageBody"] = body
    assert keys(event) == ["users/2024-05-01/full-export.csv"]


def test_eventbridge_batch_of_mns_messages() -> None:
    single = load_event("fc/eventbridge-mns-queue-oss-base64.json")
    other = copy.deepcopy(single)
    other["data"]["messageBody"] = load_event("fc/oss-putobject.json", raw=True).decode()
    assert keys([single, other]) == ["users/2024-05-01/full-export.csv", PUT_KEY]


def test_batch_items_may_be_json_strings() -> None:
    single = load_event("fc/eventbridge-mns-queue-oss-base64.json")
    assert keys([as_text(single)]) == ["users/2024-05-01/full-export.csv"]


def test_destination_payload_already_decoded() -> None:
    event = load_event("fc/async-destination-onfailure.json")
    event["requestPayload"] = orjson.loads(event["requestPayload"])
    assert keys(event) == [PUT_KEY]


def test_destination_of_a_queue_message_of_an_oss_event() -> None:
    destination = load_event("fc/async-destination-onfailure.json")
    destination["requestPayload"] = load_event("fc/mns-topic-json-oss-putobject.json", raw=True).decode()
    queue = load_event("fc/eventbridge-mns-queue-oss-base64.json")
    queue["data"]["messageBody"] = base64.b64encode(orjson.dumps(destination)).decode()
    assert keys(queue) == ["users/2024-05-02/users.csv"]


def test_nesting_beyond_the_limit_is_refused() -> None:
    event: Any = load_event("fc/oss-putobject.json")
    for _ in range(MAX_DEPTH):
        event = {"TopicOwner": "1", "MessageId": "m", "Message": as_text(event)}
    with pytest.raises(UnsupportedEvent, match="nested deeper"):
        parse_object_events(event)


def test_a_few_wrappers_are_fine() -> None:
    event: Any = load_event("fc/oss-putobject.json")
    for _ in range(4):
        event = {"TopicOwner": "1", "MessageId": "m", "Message": as_text(event)}
    assert keys(event) == [PUT_KEY]


def test_queue_message_that_is_not_an_object_event_is_unsupported_and_names_where() -> None:
    event = {"TopicOwner": "1", "MessageId": "m", "Message": '{"action":"upsert","userId":"u-1001"}'}
    with pytest.raises(UnsupportedEvent, match=r"inside MNS message: top-level keys \['action', 'userId'\]") as info:
        parse_object_events(event)
    assert "u-1001" not in str(info.value)


def test_eventbridge_rocketmq_message_is_unsupported() -> None:
    event = {"specversion": "1.0", "type": "mq:Topic:SendMessage", "data": {"topic": "t", "body": "x"}}
    with pytest.raises(
        UnsupportedEvent, match=r"EventBridge event carries no object event: data keys \['body', 'topic'\]"
    ):
        parse_object_events(event)


def test_sqs_body_that_is_not_json_is_unsupported_without_echoing_it() -> None:
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": "alice@example.com 13812341234"}]}
    with pytest.raises(UnsupportedEvent, match="inside SQS body") as info:
        parse_object_events(event)
    assert "alice" not in str(info.value)
    assert "1381234" not in str(info.value)
