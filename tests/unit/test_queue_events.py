"""Queue and topic events read into messages: every sample in events/ named queue-*, each envelope's rules, the
shapes refused, and a property: any JSON-ish event reads or raises InvalidInputError, never anything else."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.changes import MalformedMessage, parse_changes
from cvcsync.inputs.events import MAX_DEPTH, UnsupportedEvent
from cvcsync.inputs.events.queue import QueueBatch, QueueMessage, parse_queue_event
from support.events import load_event, sample_paths


def ms(epoch_millis: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=epoch_millis)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def as_text(value: Any) -> str:
    return orjson.dumps(value).decode()


TOPIC = "cvc-user-events"
MNS_QUEUE = "acs:mns:cn-hangzhou:1234567890123456:queues/cvc-user-queue"
ROCKETMQ = "acs:mq:cn-hangzhou:1234567890123456:MQ_INST_1234567890123456_BXhFHryi%cvc-user-topic"
KAFKA = "acs:alikafka_pre-cn-i7m2t7t1abcd:topic:cvc-user-topic"
SQS_ARN = "arn:aws:sqs:us-east-1:111122223333:cvc-user-changes"
SNS_ARN = "arn:aws:sns:us-east-1:111122223333:cvc-user-changes"
NO_USER_NAME = "change 1: user: userName: is required"

# What each message must carry (the body aside), and what its body reads as: the changes as (op, userId), or the
# start of the MalformedMessage reason. The FC reference samples' upserts have no user: malformed, by design.
Outcome = list[tuple[str, str]] | str


def expect(message_id: str, outcome: Outcome, **fields: Any) -> tuple[dict[str, Any], Outcome]:
    base = {"message_id": message_id, "attributes": {}, "receive_count": None, "group_id": None,
            "published_at": None, "sequence_number": None, "origin": None, "derived_id": False}  # fmt: skip
    return {**base, **fields}, outcome


def mns_topic(message_id: str, outcome: Outcome, published: int, **fields: Any) -> tuple[dict[str, Any], Outcome]:
    return expect(message_id, outcome, published_at=ms(published), source_kind="mns-topic", origin=TOPIC, **fields)


def mns_queue(n: int, outcome: Outcome) -> tuple[dict[str, Any], Outcome]:
    return expect(f"C6DB60D1574661357FA227277445000{n}", outcome, published_at=at("2024-05-01T02:10:17.093Z"),
                  source_kind="mns-queue", origin=MNS_QUEUE)  # fmt: skip


def rocketmq(n: int, keys: str, outcome: Outcome) -> tuple[dict[str, Any], Outcome]:
    return expect(f"94ebc15f-f0db-4bbe-acce-56fb72fb000{n}", outcome, attributes={"TAGS": "user-sync", "KEYS": keys},
                  published_at=at("2024-05-01T02:11:20.766Z"), source_kind="rocketmq", origin=ROCKETMQ)  # fmt: skip


def kafka(offset: int, key: str, outcome: Outcome) -> tuple[dict[str, Any], Outcome]:
    return expect(f"cvc-user-topic/7/{offset}", outcome, group_id=key, published_at=ms(1714529571589),
                  source_kind="kafka", sequence_number=str(offset), origin=KAFKA)  # fmt: skip


def sqs(n: int, outcome: Outcome, receive: int, sent: int, **fields: Any) -> tuple[dict[str, Any], Outcome]:
    fields = {"published_at": ms(sent), "source_kind": "sqs", **fields}
    return expect(f"0e5c1a4b-1111-4c2d-9e8f-00000000000{n}", outcome, receive_count=receive, origin=SQS_ARN, **fields)


def fifo(n: int, group: str, outcome: Outcome, receive: int = 1) -> tuple[dict[str, Any], Outcome]:
    return expect(f"7a2d9c3e-2222-4b1a-8c7d-00000000000{n}", outcome, receive_count=receive, group_id=group,
                  published_at=ms(1714528810000 + n), source_kind="sqs", sequence_number=f"1888650000000000000{n}",
                  origin=SQS_ARN + ".fifo")  # fmt: skip


STREAM_DERIVED = {"derived_id": True, "source_kind": "mns-topic"}

# sample -> (platform kind, replay, messages)
EXPECTED: dict[str, tuple[str, bool, list[tuple[dict[str, Any], Outcome]]]] = {
    "fc/queue-mns-topic-json.json": (
        "mns-topic", False, [mns_topic("2F5B3C082B923D4EAC694B76D928C3D4", "change 1: email:", 1714528800123)]
    ),
    "fc/queue-mns-topic-json-with-attributes.json": (
        "mns-topic", False,
        [mns_topic("2F5B3C281B283D4EAC694B742528D5E6", [("delete", "u-1002")], 1714528900456,
                   attributes={"source": "hr-system"})],
    ),
    "fc/queue-mns-topic-stream-no-attributes.json": (
        "mns-topic", False, [expect("derived", "change 1: email:", **STREAM_DERIVED)]
    ),
    "fc/queue-mns-topic-stream-with-attributes.json": (
        "mns-topic", False,
        [expect("derived", "change 1: email:", **STREAM_DERIVED, attributes={"Extend": '{"source":"hr-system"}'})],
    ),
    "fc/queue-mns-topic-json-v1-batch.json": (
        "mns-topic", False,
        [mns_topic("2F5B3C4A1B283D4EAC694B7425280001", [("upsert", "u-2001"), ("delete", "u-1999")], 1714528802345,
                   attributes={"source": "hr-system"})],
    ),
    "fc/queue-eventbridge-mns-single.json": ("eventbridge-mns", False, [mns_queue(1, NO_USER_NAME)]),
    "fc/queue-eventbridge-mns-batch.json": (
        "eventbridge-mns", False, [mns_queue(1, NO_USER_NAME), mns_queue(2, [("delete", "u-1002")])]
    ),
    "fc/queue-eventbridge-mns-base64.json": ("eventbridge-mns", False, [mns_queue(3, [("upsert", "u-2002")])]),
    "fc/queue-eventbridge-rocketmq-single.json": ("eventbridge-rocketmq", False, [rocketmq(1, "u-1001", NO_USER_NAME)]),
    "fc/queue-eventbridge-rocketmq-batch.json": (
        "eventbridge-rocketmq", False,
        [rocketmq(1, "u-1001", NO_USER_NAME), rocketmq(2, "u-1002", [("delete", "u-1002")])],
    ),
    "fc/queue-eventbridge-kafka-batch.json": (
        "eventbridge-kafka", False, [kafka(25, "u-1001", NO_USER_NAME), kafka(26, "u-1002", [("delete", "u-1002")])]
    ),
    "fc/queue-eventbridge-kafka-string-array.json": ("eventbridge-kafka", False, [kafka(25, "u-1001", NO_USER_NAME)]),
    "fc/queue-destination-mns-topic.json": (
        "mns-topic", True, [mns_topic("2F5B3C4A1B283D4EAC694B7425280004", [("upsert", "u-2003")], 1714528804567,
                                      receive_count=4)],
    ),
    "aws/queue-sqs-standard.json": (
        "sqs", False,
        [
            sqs(1, [("upsert", "u-2002")], 1, 1714528805200, attributes={"tenant": "acme"}),
            sqs(2, [("delete", "u-1999")], 1, 1714528806300, attributes={"tenant": "acme"}, source_kind="sns",
                published_at=at("2024-05-01T02:00:06.250Z")),
            sqs(3, [("upsert", "u-2003")], 2, 1714528807400),
        ],
    ),
    "aws/queue-sqs-fifo.json": (
        "sqs-fifo", False,
        [fifo(1, "u-2001", [("upsert", "u-2001")]), fifo(2, "u-2002", [("upsert", "u-2002")]),
         fifo(3, "u-2001", [("delete", "u-2001")], receive=3)],
    ),
    "aws/queue-sns.json": (
        "sns", False,
        [expect("95df01b4-ee98-5cb9-9903-4c221d41eb5e", [("upsert", "u-2003"), ("delete", "u-1998")],
                attributes={"tenant": "acme"}, published_at=at("2024-05-01T02:00:22Z"), source_kind="sns",
                origin=SNS_ARN)],
    ),
    "aws/queue-eventbridge-custom.json": (
        "eventbridge", False,
        [expect("3e2b4f6a-9c1d-4e8f-a7b6-5d4c3b2a1f00", [("upsert", "u-2002")], published_at=at("2024-05-01T02:00:30Z"),
                source_kind="eventbridge", origin="com.example.hr")],
    ),
}  # fmt: skip
QUEUE_SAMPLES = sorted(EXPECTED)


def outcome_of(message: QueueMessage) -> Outcome:
    try:
        changes = parse_changes(message.body, message_id=message.message_id, received_at=message.published_at)
    except MalformedMessage as exc:
        return str(exc)
    return [(change.op, change.user_id) for change in changes]


def test_every_queue_sample_has_an_expectation() -> None:
    named = [path for path in sample_paths("fc", "aws") if path.rsplit("/", 1)[-1].startswith("queue-")]
    assert named == QUEUE_SAMPLES


@pytest.mark.parametrize("raw", [True, False], ids=["bytes", "dict"])
@pytest.mark.parametrize("sample", QUEUE_SAMPLES)
def test_sample_reads_as_expected(sample: str, raw: bool) -> None:
    platform, replay, messages = EXPECTED[sample]
    batch = parse_queue_event(load_event(sample, raw=raw))
    assert (batch.platform_kind, batch.replay, len(batch.messages)) == (platform, replay, len(messages))
    for message, (fields, outcome) in zip(batch.messages, messages, strict=True):
        got = {name: getattr(message, name) for name in fields}
        if fields["message_id"] == "derived":
            assert message.message_id.startswith("body-") and len(message.message_id) == 37
            got["message_id"] = "derived"
        assert got == fields
        result = outcome_of(message)
        if isinstance(outcome, str):
            assert isinstance(result, str) and result.startswith(outcome)
        else:
            assert result == outcome


# --- FC: MNS topic -------------------------------------------------------------------------------------------------


def test_mns_topic_json_message_is_the_body() -> None:
    (message,) = parse_queue_event(load_event("fc/queue-mns-topic-json.json", raw=True)).messages
    assert message.body == '{"action":"upsert","userId":"u-1001","email":"alice@example.com"}'


def test_fc_sample_upsert_without_user_name_is_a_clear_malformed_body() -> None:
    (message,) = parse_queue_event(load_event("fc/queue-mns-topic-stream-with-attributes.json", raw=True)).messages
    with pytest.raises(MalformedMessage) as caught:
        parse_changes(message.body, message_id=message.message_id)
    assert [p.field for p in caught.value.problems] == ["email", "user.userName", "user.groupId", "user.groupName"]
    assert "bob" not in str(caught.value)


def test_mns_stream_without_attributes_is_the_event_itself() -> None:
    raw = load_event("fc/queue-mns-topic-stream-no-attributes.json", raw=True)
    from_bytes = parse_queue_event(raw).messages[0]
    from_dict = parse_queue_event(orjson.loads(raw)).messages[0]
    assert from_bytes.body == raw.decode()
    assert from_dict.body == '{"action":"upsert","userId":"u-1004","email":"carol@example.com"}'
    assert from_bytes.message_id == from_dict.message_id  # hashed from canonical JSON: spacing does not matter


def test_derived_ids_follow_content_not_spacing_or_key_order() -> None:
    one = parse_queue_event('{"type":"delete","userId":"u-1"}').messages[0]
    same = parse_queue_event(' { "userId" : "u-1", "type" : "delete" } ').messages[0]
    other = parse_queue_event('{"type":"delete","userId":"u-2"}').messages[0]
    assert one.message_id == same.message_id != other.message_id
    assert one.derived_id and same.derived_id


def test_bare_change_list_is_one_stream_message() -> None:
    batch = parse_queue_event(b'[{"type":"delete","userId":"u-1"},{"userId":"u-2","userName":"Bob"}]')
    assert (batch.platform_kind, len(batch.messages)) == ("mns-topic", 1)


def test_mns_topic_json_message_may_be_base64() -> None:
    event = load_event("fc/queue-mns-topic-json-v1-batch.json")
    plain = event["Message"]
    event["Message"] = base64.b64encode(plain.encode()).decode()
    assert parse_queue_event(event).messages[0].body == plain


def test_mns_stream_body_may_be_base64_with_line_breaks() -> None:
    event = load_event("fc/queue-mns-topic-stream-with-attributes.json")
    plain = event["body"]
    event["body"] = base64.encodebytes(plain.encode()).decode()  # 76-character lines
    assert parse_queue_event(as_text(event)).messages[0].body == plain


def test_mns_stream_without_attributes_may_be_base64() -> None:
    body = b'{"type":"delete","userId":"u-1"}'
    (message,) = parse_queue_event(base64.b64encode(body)).messages
    assert message.body == body.decode()


@pytest.mark.parametrize(
    "body",
    [
        base64.b64encode(b"hello").decode(),  # base64, but not of JSON
        base64.b64encode(b'"a string"').decode(),  # base64 of JSON that is no object or array
        base64.b64encode(b"\xff\xfe{}").decode(),  # base64, but not UTF-8
        "abc",  # not base64 (length)
        "plain text, not JSON",
    ],
)
def test_mns_bodies_are_decoded_only_when_base64_of_json(body: str) -> None:
    event = load_event("fc/queue-mns-topic-json.json")
    event["Message"] = body
    (message,) = parse_queue_event(event).messages
    assert message.body == body
    with pytest.raises(MalformedMessage):
        parse_changes(message.body)


def test_mns_topic_json_with_an_empty_message_id_gets_a_derived_one() -> None:
    event = load_event("fc/queue-mns-topic-json.json")
    event["MessageId"] = ""
    (message,) = parse_queue_event(event).messages
    assert message.derived_id and message.message_id.startswith("body-")


# --- FC: EventBridge ------------------------------------------------------------------------------------------------


def test_eventbridge_mns_base64_body_is_decoded() -> None:
    (message,) = parse_queue_event(load_event("fc/queue-eventbridge-mns-base64.json", raw=True)).messages
    assert orjson.loads(message.body)["user"]["userName"] == "李雷"


def test_eventbridge_batch_items_may_be_json_strings() -> None:
    items = load_event("fc/queue-eventbridge-rocketmq-batch.json")
    batch = parse_queue_event([as_text(items[0]), items[1]])
    assert [m.message_id for m in batch.messages] == [
        "94ebc15f-f0db-4bbe-acce-56fb72fb0001",
        "94ebc15f-f0db-4bbe-acce-56fb72fb0002",
    ]


def test_a_single_string_item_batch() -> None:
    batch = parse_queue_event(load_event("fc/queue-eventbridge-kafka-string-array.json"))
    assert [m.body for m in batch.messages] == ['{"action":"upsert","userId":"u-1001"}']


def test_kafka_json_value_is_reencoded() -> None:
    event = load_event("fc/queue-eventbridge-kafka-batch.json")[0]
    event["data"]["value"] = {"type": "delete", "userId": "u-7"}
    (message,) = parse_queue_event([event]).messages
    assert message.body == '{"type":"delete","userId":"u-7"}'


def test_kafka_tombstone_is_an_empty_body_refused_for_that_message_only() -> None:
    events = load_event("fc/queue-eventbridge-kafka-batch.json")
    events[0]["data"]["value"] = None
    batch = parse_queue_event(events)
    assert [m.body for m in batch.messages] == ["", '{"action":"delete","userId":"u-1002"}']
    assert outcome_of(batch.messages[0]) == "body: is empty"


def test_kafka_headers_become_attributes() -> None:
    event = load_event("fc/queue-eventbridge-kafka-batch.json")[0]
    event["data"]["headers"] = {"headers": [{"key": "tenant", "value": "acme"}, {"key": "n", "value": [1, 2]}]}
    assert parse_queue_event(event).messages[0].attributes == {"tenant": "acme", "n": "[1,2]"}


def test_kafka_without_partition_and_offset_uses_the_event_id() -> None:
    event = load_event("fc/queue-eventbridge-kafka-batch.json")[0]
    del event["data"]["partition"]
    event["data"]["offset"] = "x"
    (message,) = parse_queue_event(event).messages
    assert (message.message_id, message.sequence_number) == ("8e215af8-ca18-4249-8645-f96c10260001", None)


def test_kafka_without_key_has_no_group() -> None:
    event = load_event("fc/queue-eventbridge-kafka-batch.json")[0]
    event["data"]["key"] = None
    assert parse_queue_event(event).messages[0].group_id is None


def test_rocketmq_unique_key_sharding_key_and_offset() -> None:
    event = load_event("fc/queue-eventbridge-rocketmq-single.json")
    event["data"]["systemProperties"].update(
        {"UNIQ_KEY": "AC14C305069E1B28CDFA3181CDA20001", "__SHARDINGKEY": "dept-7", "QUEUE_OFFSET": "42"}
    )
    event["data"]["userProperties"] = {"tenant": "acme"}
    (message,) = parse_queue_event(event).messages
    assert (message.message_id, message.group_id, message.sequence_number) == (
        "AC14C305069E1B28CDFA3181CDA20001",
        "dept-7",
        "42",
    )
    assert message.attributes == {"tenant": "acme", "TAGS": "user-sync", "KEYS": "u-1001"}


def test_rocketmq_keys_are_not_an_ordering_group() -> None:
    assert parse_queue_event(load_event("fc/queue-eventbridge-rocketmq-single.json")).messages[0].group_id is None


def test_eventbridge_batch_mixing_sources_is_unsupported() -> None:
    mixed = [load_event("fc/queue-eventbridge-mns-single.json"), load_event("fc/queue-eventbridge-kafka-batch.json")[0]]
    with pytest.raises(UnsupportedEvent, match=r"mixing sources: \['eventbridge-kafka', 'eventbridge-mns'\]"):
        parse_queue_event(mixed)


def test_eventbridge_event_without_a_queue_message_is_unsupported() -> None:
    oss_event = load_event("fc/oss-putobject.json")["events"][0]
    cloud_event = {"specversion": "1.0", "type": "oss:ObjectCreated:PutObject", "data": oss_event}
    with pytest.raises(UnsupportedEvent) as caught:
        parse_queue_event([load_event("fc/queue-eventbridge-mns-single.json"), cloud_event])
    assert str(caught.value).startswith(
        "batch item 2: EventBridge event of type 'oss:ObjectCreated:PutObject' carries no queue message: data keys ["
    )


def test_an_mns_queue_message_carrying_an_oss_event_reads_and_its_body_is_refused() -> None:
    (message,) = parse_queue_event(load_event("fc/eventbridge-mns-queue-oss-base64.json")).messages
    assert orjson.loads(message.body)["events"][0]["eventName"] == "ObjectCreated:CompleteMultipartUpload"
    assert str(outcome_of(message)).startswith("body: is not a user change")


# --- FC: destinations ----------------------------------------------------------------------------------------------


def test_destination_payload_may_be_already_decoded() -> None:
    event = load_event("fc/queue-destination-mns-topic.json")
    event["requestPayload"] = orjson.loads(event["requestPayload"])
    batch = parse_queue_event(event)
    assert (batch.replay, batch.messages[0].receive_count) == (True, 4)


def test_destination_keeps_a_receive_count_the_original_has() -> None:
    event = load_event("fc/queue-destination-mns-topic.json")
    event["requestPayload"] = load_event("aws/queue-sqs-standard.json", raw=True).decode()
    batch = parse_queue_event(event)
    assert (batch.platform_kind, batch.replay) == ("sqs", True)
    assert [m.receive_count for m in batch.messages] == [1, 1, 2]


def test_destination_inside_an_mns_queue_message_is_replayed() -> None:
    destination = load_event("fc/queue-destination-mns-topic.json", raw=True)
    event = load_event("fc/queue-eventbridge-mns-batch.json")
    event[1]["data"]["messageBody"] = base64.b64encode(destination).decode()
    batch = parse_queue_event(event)
    assert (batch.platform_kind, batch.replay) == ("eventbridge-mns", True)
    assert [(m.message_id, m.receive_count, m.source_kind) for m in batch.messages] == [
        ("C6DB60D1574661357FA2272774450001", None, "mns-queue"),
        ("2F5B3C4A1B283D4EAC694B7425280004", 4, "mns-topic"),
    ]


def test_destination_inside_an_sqs_body_stays_one_message() -> None:
    event = load_event("aws/queue-sqs-standard.json")
    destination = load_event("fc/queue-destination-mns-topic.json", raw=True).decode()
    event["Records"][0]["body"] = destination
    batch = parse_queue_event(event)
    assert (batch.replay, batch.messages[0].message_id, batch.messages[0].body) == (
        False,
        "0e5c1a4b-1111-4c2d-9e8f-000000000001",
        destination,
    )


def test_destination_of_an_upload_event_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvent) as caught:
        parse_queue_event(load_event("fc/async-destination-onfailure.json", raw=True))
    assert str(caught.value) == (
        "destination record's requestPayload: unsupported event: an OSS object event, which the upload function reads"
    )


def test_destination_without_payload_is_unsupported() -> None:
    event = load_event("fc/queue-destination-mns-topic.json")
    event["requestPayload"] = None
    with pytest.raises(UnsupportedEvent, match="without a requestPayload"):
        parse_queue_event(event)


def test_destinations_nested_beyond_the_limit_are_refused() -> None:
    event: Any = load_event("fc/queue-destination-mns-topic.json")
    template = load_event("fc/queue-destination-mns-topic.json")
    for _ in range(MAX_DEPTH):
        outer = copy.deepcopy(template)
        outer["requestPayload"] = as_text(event)
        event = outer
    with pytest.raises(UnsupportedEvent, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_queue_event(event)


# --- Lambda --------------------------------------------------------------------------------------------------------


def test_sqs_sns_enveloped_body_is_opened() -> None:
    batch = parse_queue_event(load_event("aws/queue-sqs-standard.json"))
    assert batch.messages[1].body == (
        '{"type":"delete","eventId":"hr-8c21-0002","occurredAt":"2024-05-01T02:00:06Z","userId":"u-1999"}'
    )


def test_sqs_raw_delivery_body_is_the_message() -> None:
    batch = parse_queue_event(load_event("aws/queue-sqs-standard.json"))
    assert orjson.loads(batch.messages[2].body) == {"userId": "u-2003", "userName": "赵敏", "groupId": "88",
                                                    "groupName": "Acme"}  # fmt: skip


def test_sqs_message_group_on_a_standard_queue_is_not_an_ordering_group() -> None:
    event = load_event("aws/queue-sqs-standard.json")
    event["Records"][0]["attributes"]["MessageGroupId"] = "tenant-acme"  # fair queues
    batch = parse_queue_event(event)
    assert (batch.platform_kind, batch.messages[0].group_id) == ("sqs", None)


def test_sqs_fifo_is_known_by_its_sequence_number_without_an_arn() -> None:
    event = load_event("aws/queue-sqs-fifo.json")
    for record in event["Records"]:
        del record["eventSourceARN"]
    batch = parse_queue_event(event)
    assert (batch.platform_kind, [m.group_id for m in batch.messages]) == ("sqs-fifo", ["u-2001", "u-2002", "u-2001"])


def test_sqs_record_without_a_message_id_gets_a_derived_one() -> None:
    event = load_event("aws/queue-sqs-standard.json")
    del event["Records"][0]["messageId"]
    message = parse_queue_event(event).messages[0]
    assert message.derived_id and message.message_id.startswith("body-")


def test_sqs_binary_attributes_are_left_out() -> None:
    event = load_event("aws/queue-sqs-standard.json")
    event["Records"][0]["messageAttributes"]["blob"] = {"binaryValue": "AAEC", "dataType": "Binary"}
    assert parse_queue_event(event).messages[0].attributes == {"tenant": "acme"}


def test_sqs_carrying_s3_notifications_reads_and_each_body_is_refused() -> None:
    batch = parse_queue_event(load_event("aws/sqs-s3-notification.json"))
    assert batch.platform_kind == "sqs"
    assert all(str(outcome_of(m)).startswith("body: is not a user change") for m in batch.messages)


def test_eventbridge_detail_is_the_body() -> None:
    (message,) = parse_queue_event(load_event("aws/queue-eventbridge-custom.json")).messages
    assert orjson.loads(message.body)["eventId"] == "hr-b002-0001"


def test_eventbridge_s3_event_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvent, match="upload, not a user change"):
        parse_queue_event(load_event("aws/eventbridge-s3-object-created.json"))


def test_s3_notification_is_unsupported() -> None:
    with pytest.raises(UnsupportedEvent, match="record 1 is not an SQS or SNS message: eventSource 'aws:s3'"):
        parse_queue_event(load_event("aws/s3-put-encoded-key.json"))


def test_records_mixing_sqs_and_sns_are_unsupported() -> None:
    records = load_event("aws/queue-sqs-standard.json")["Records"] + load_event("aws/queue-sns.json")["Records"]
    with pytest.raises(UnsupportedEvent, match=r"mixing sources: \['sns', 'sqs'\]"):
        parse_queue_event({"Records": records})


def test_a_bare_sns_envelope_is_read_as_sns() -> None:
    envelope = load_event("aws/queue-sns.json")["Records"][0]["Sns"]
    batch = parse_queue_event(envelope)
    assert (batch.platform_kind, batch.messages[0].message_id) == ("sns", "95df01b4-ee98-5cb9-9903-4c221d41eb5e")


# --- unsupported shapes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "unsupported event: top-level keys none"),
        ([], "unsupported event: an empty list"),
        ("", "unsupported event: 0 characters that are neither JSON nor base64 of JSON"),
        (b"not json", "unsupported event: 8 characters that are neither JSON nor base64 of JSON"),
        (b"\xff\xfe", "unsupported event: 2 bytes that are not UTF-8 text"),
        ("42", "unsupported event: a JSON number"),
        ("null", "unsupported event: a JSON null"),
        (3.5, "unsupported event: a JSON number"),
        ({"type": "user.created", "id": 1}, "unsupported event: top-level keys ['id', 'type']"),
        ([1, 2], "unsupported event: a list of 2 items, the first a JSON number"),
        ([{"a": 1}], "unsupported event: a list of 1 items, the first a JSON object keys ['a']"),
        ({"Records": []}, "unsupported event: Records is not a non-empty list"),
        ({"Records": "x"}, "unsupported event: Records is not a non-empty list"),
        ({"Records": [1]}, "record 1 is not an SQS or SNS message: a JSON number"),
        ({"Records": [{"body": "x"}]}, "record 1 is not an SQS or SNS message: keys ['body']"),
    ],
)
def test_unsupported_shapes(event: Any, message: str) -> None:
    with pytest.raises(UnsupportedEvent) as caught:
        parse_queue_event(event)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "sample", ["fc/oss-putobject.json", "aws/s3-test-event.json", "aws/sqs-sns-s3-notification.json"]
)
def test_upload_samples_are_not_queue_batches_of_changes(sample: str) -> None:
    with contextlib.suppress(UnsupportedEvent):
        batch = parse_queue_event(load_event(sample, raw=True))
        assert all(isinstance(outcome_of(m), str) for m in batch.messages)


def test_unsupported_names_keys_never_values() -> None:
    with pytest.raises(UnsupportedEvent) as caught:
        parse_queue_event({"who": "alice@example.com", "alice@example.com": 1})
    assert str(caught.value) == "unsupported event: top-level keys ['a***@example.com', 'who']"


def test_unsupported_event_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        parse_queue_event({})


# --- properties ----------------------------------------------------------------------------------------------------

KNOWN = [
    "Records", "eventSource", "EventSource", "messageId", "body", "attributes", "Sns", "Message", "Type", "MessageId",
    "TopicOwner", "attrs", "specversion", "data", "messageBody", "value", "partition", "offset", "systemProperties",
    "userProperties", "requestPayload", "requestContext", "detail", "detail-type", "source", "type", "action",
    "userId", "userName", "changes", "user", "eventSourceARN", "ApproximateReceiveCount", "SequenceNumber", "headers",
]  # fmt: skip
KNOWN_VALUES = ["aws:sqs", "aws:sns", "Notification", "aws.s3", "upsert", "delete", "1.0", "x.fifo"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(KNOWN_VALUES),
)
json_ish = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=8)), children, max_size=6),
        children.map(json.dumps),
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_ish)
def test_any_json_ish_event_reads_or_raises_invalid_input(event: Any) -> None:
    try:
        batch = parse_queue_event(event)
    except InvalidInputError:
        return
    assert isinstance(batch, QueueBatch) and batch.messages
    for message in batch.messages:
        assert isinstance(message.body, str) and message.message_id
        with contextlib.suppress(MalformedMessage):
            parse_changes(message.body, message_id=message.message_id, received_at=message.published_at)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_body_in_a_real_envelope_reads_and_parses_or_is_malformed(body: str) -> None:
    sqs_event = load_event("aws/queue-sqs-standard.json")
    sqs_event["Records"][0]["body"] = body
    mns_event = load_event("fc/queue-eventbridge-mns-single.json")
    mns_event["data"]["messageBody"] = body
    for event in (sqs_event, mns_event):
        message = parse_queue_event(event).messages[0]
        with contextlib.suppress(MalformedMessage):
            parse_changes(message.body)
