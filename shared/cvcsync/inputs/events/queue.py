"""Queue and topic events, read into platform-neutral messages: one entry point, ``parse_queue_event``.

It takes what a handler receives (FC's ``bytes``, Lambda's ``dict``, a ``list`` in batch mode) and tells the shapes
apart; anything else raises ``UnsupportedEvent`` naming the keys it saw, never their values.

* FC's MNS topic trigger, in its four formats: JSON (``Message`` is the body, attributes merged at the top level),
  STREAM with attributes (``{"body", "attrs"}``), and STREAM without attributes, where the event *is* the body.
  That last one cannot be told from a bare change body, so any event that is no envelope we know but has the
  outline of a change body (``changes.looks_like_change_body``) is read as one STREAM-like MNS topic message, with
  an id hashed from the body. Text that is neither an envelope nor JSON (nor base64 of it) is unsupported.
* FC's EventBridge triggers (CloudEvents 1.0, one object or a batch array whose items may be JSON strings): MNS
  queue (``data.messageBody``), RocketMQ (``data.body``) and Kafka (``data.value``); a body already decoded to JSON
  (the sources' JSON data format) is re-encoded as text. A batch must come from one kind of source.
* Lambda: SQS (``Records[].body``), SNS (``Records[].Sns.Message``), SNS through SQS (with raw message delivery the
  body is the message; without it the body is SNS's ``{"Type": "Notification", "Message"}`` envelope, which is
  opened), and EventBridge events whose ``detail`` is the change (any ``source`` but ``aws.s3``).
* FC's async-invocation destination records (``{"requestPayload": "<original event>", "requestContext"}``), at the
  top level or as the body of an FC queue message (a destination can be an MNS queue or topic): the original event
  is read again, up to ``MAX_DEPTH`` levels, and the batch is marked ``replay``. AWS bodies are not searched for
  them: an SQS message must stay one message, so that ``batchItemFailures`` can name it.

Base64: only MNS bodies are decoded (MNS clients encode by default, and nothing in the event says so), and only
when the text is valid base64 of UTF-8 JSON (``mns.decode_body``). Other transports deliver the body as sent.

Ordering keys (``group_id``): an SQS FIFO queue's ``MessageGroupId``; a Kafka record's key (Kafka orders records by
key: one key, one partition; the partition itself is an artefact of hashing, not something a producer declared);
a RocketMQ ordered message's sharding key (``__SHARDINGKEY``). RocketMQ's ``KEYS`` are a lookup index (several keys,
space-separated, no ordering promise), so they are kept as an attribute, not used as a group. MNS has no ordering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from cvcsync.inputs.changes import looks_like_change_body
from cvcsync.inputs.events import MAX_DEPTH, destination, eventbridge, fields, mns, oss, sns, sqs
from cvcsync.inputs.events.types import UnsupportedEvent
from cvcsync.logs import scrub_text

__all__ = ["QueueBatch", "QueueMessage", "parse_queue_event"]

# Where a message body was carried (QueueMessage.source_kind).
SOURCE_MNS_TOPIC = "mns-topic"
SOURCE_MNS_QUEUE = "mns-queue"
SOURCE_ROCKETMQ = "rocketmq"
SOURCE_KAFKA = "kafka"
SOURCE_SQS = "sqs"
SOURCE_SNS = "sns"
SOURCE_EVENTBRIDGE = "eventbridge"

# What invoked the function (QueueBatch.platform_kind): it decides how failures are answered.
PLATFORM_MNS_TOPIC = "mns-topic"
PLATFORM_SQS = "sqs"
PLATFORM_SQS_FIFO = "sqs-fifo"
PLATFORM_SNS = "sns"
PLATFORM_EVENTBRIDGE = "eventbridge"
_EVENTBRIDGE_PLATFORMS = {
    eventbridge.MNS_QUEUE: ("eventbridge-mns", SOURCE_MNS_QUEUE),
    eventbridge.ROCKETMQ: ("eventbridge-rocketmq", SOURCE_ROCKETMQ),
    eventbridge.KAFKA: ("eventbridge-kafka", SOURCE_KAFKA),
}
ROCKETMQ_SHARDING_KEY = "__SHARDINGKEY"
DERIVED_ID_PREFIX = "body-"
_NOT_JSON: Any = object()


@dataclass(frozen=True)
class QueueMessage:
    """One message, out of its envelopes.

    ``message_id`` is the transport's (SQS ``messageId``, MNS ``MessageId``, Kafka ``topic/partition/offset``...),
    or, when it has none (MNS STREAM format), ``body-`` and a hash of the body, and then ``derived_id`` is true:
    such an id names the content, not a delivery, so two sends of the same body share it; deduplicate by it only
    within one invocation. ``receive_count``: SQS ``ApproximateReceiveCount``, or an FC destination's
    ``approximateInvokeCount``. ``published_at`` (UTC): the transport's time, a fallback for a change's
    ``occurredAt``. ``sequence_number``: SQS FIFO ``SequenceNumber``, Kafka offset, RocketMQ queue offset.
    ``origin``: the queue or topic (ARN, name or CloudEvent subject).
    """

    message_id: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    receive_count: int | None = None
    group_id: str | None = None
    published_at: datetime | None = None
    source_kind: str = ""
    sequence_number: str | None = None
    origin: str | None = None
    derived_id: bool = False


@dataclass(frozen=True)
class QueueBatch:
    """Every message of one invocation, in delivery order. ``platform_kind`` names the trigger (``mns-topic``,
    ``eventbridge-mns``, ``eventbridge-rocketmq``, ``eventbridge-kafka``, ``sqs``, ``sqs-fifo``, ``sns``,
    ``eventbridge``); for a destination record at the top level it is the original event's. ``replay``: at least
    one message came out of an FC destination record, so it has failed before."""

    platform_kind: str
    messages: list[QueueMessage]
    replay: bool = False


def parse_queue_event(event: bytes | str | Mapping[str, Any] | list[Any]) -> QueueBatch:
    """Every message in ``event``; ``UnsupportedEvent`` (an ``InvalidInputError``) for a shape it does not read,
    and no other exception. Message bodies are not checked here: ``changes.parse_changes`` does that, per message,
    so that one malformed body is dead-lettered without failing its neighbours."""
    return _read(event, 0)


def _read(event: Any, depth: int) -> QueueBatch:
    if depth > MAX_DEPTH:
        raise UnsupportedEvent(f"event nested deeper than {MAX_DEPTH} levels")
    if isinstance(event, (bytes, bytearray, memoryview, str)):
        text = _text(event)
        document = _json(text)
        if document is _NOT_JSON:
            body = mns.decode_body(text)
            document = _json(body)
            if document is _NOT_JSON:
                raise UnsupportedEvent(
                    f"unsupported event: {len(text)} characters that are neither JSON nor base64 of JSON"
                )
            text = body
        return _read_document(document, text, depth)
    if isinstance(event, (Mapping, list)):
        return _read_document(event, None, depth)
    raise UnsupportedEvent(f"unsupported event: a JSON {fields.json_type(event)}")


def _read_document(document: Any, text: str | None, depth: int) -> QueueBatch:
    """``text``: the event as it arrived, when it arrived as text (the body, if this is a STREAM message)."""
    if isinstance(document, Mapping):
        if destination.is_destination_record(document):
            return _replay(document, depth)
        if "Records" in document:
            return _lambda_records(document.get("Records"))
        if mns.is_topic_json(document) or mns.is_stream_with_attributes(document):
            return _fc_batch(PLATFORM_MNS_TOPIC, [_mns_topic(document)], depth)
        if eventbridge.is_cloud_event(document):
            platform, message = _cloud_event(document, None)
            return _fc_batch(platform, [message], depth)
        if "detail-type" in document and "detail" in document:
            return QueueBatch(PLATFORM_EVENTBRIDGE, [_aws_eventbridge(document)])
        if sns.is_sns_envelope(document):
            return QueueBatch(PLATFORM_SNS, [_sns(document)])
    if isinstance(document, list) and document:
        items = [_json_item(item) for item in document]
        if all(isinstance(item, Mapping) and eventbridge.is_cloud_event(item) for item in items):
            return _eventbridge_batch(items, depth)
    if looks_like_change_body(document):
        body = text if text is not None else _body_text(document)
        return QueueBatch(PLATFORM_MNS_TOPIC, [_message(None, body, SOURCE_MNS_TOPIC)])
    raise UnsupportedEvent(f"unsupported event: {_describe(document)}")


def _describe(document: Any) -> str:
    if isinstance(document, Mapping):
        if oss.is_oss_event(document):
            return "an OSS object event, which the upload function reads"
        return f"top-level keys {fields.keys_seen(document)}"
    if isinstance(document, list):
        if not document:
            return "an empty list"
        first = document[0]
        inside = f" keys {fields.keys_seen(first)}" if isinstance(first, Mapping) else ""
        return f"a list of {len(document)} items, the first a JSON {fields.json_type(first)}{inside}"
    return f"a JSON {fields.json_type(document)}"


# --- FC: MNS topic, EventBridge, destinations -------------------------------------------------------------------


def _mns_topic(document: Mapping[str, Any]) -> QueueMessage:
    body = mns.decode_body(mns.topic_payload(document))
    attributes = mns.topic_attributes(document)
    if not mns.is_topic_json(document):  # STREAM with attributes: no id, no time
        return _message(None, body, SOURCE_MNS_TOPIC, attributes=attributes)
    return _message(
        fields.text(document.get("MessageId")),
        body,
        SOURCE_MNS_TOPIC,
        attributes=attributes,
        published_at=fields.instant(document.get("PublishTime")),
        origin=fields.text(document.get("TopicName")),
    )


def _eventbridge_batch(items: list[Any], depth: int) -> QueueBatch:
    platforms: set[str] = set()
    messages: list[QueueMessage] = []
    for position, item in enumerate(items, start=1):
        platform, message = _cloud_event(item, position)
        platforms.add(platform)
        messages.append(message)
    if len(platforms) > 1:
        raise UnsupportedEvent(f"an EventBridge batch mixing sources: {sorted(platforms)}")
    return _fc_batch(platforms.pop(), messages, depth)


def _cloud_event(event: Mapping[str, Any], position: int | None) -> tuple[str, QueueMessage]:
    kind = eventbridge.queue_source(event)
    if kind is None:
        where = f"batch item {position}: " if position is not None else ""
        event_type = _scrub_type(event.get("type"))
        data_keys = fields.keys_seen(fields.mapping(event.get("data")))
        raise UnsupportedEvent(
            f"{where}EventBridge event of type {event_type} carries no queue message: data keys {data_keys}"
        )
    platform, source_kind = _EVENTBRIDGE_PLATFORMS[kind]
    data = fields.mapping(event.get("data"))
    body = _body_text(eventbridge.queue_payload(event))
    event_id = fields.text(event.get("id"))
    origin = fields.text(event.get("subject"))
    published_at = fields.instant(event.get("time")) or fields.instant(event.get("aliyunpublishtime"))
    if kind == eventbridge.MNS_QUEUE:
        body = mns.decode_body(body)
        message_id = fields.text(data.get("messageId")) or event_id
        return platform, _message(message_id, body, source_kind, published_at=published_at, origin=origin)
    if kind == eventbridge.KAFKA:
        return platform, _kafka(data, body, event_id, published_at, origin)
    return platform, _rocketmq(data, body, event_id, published_at, origin)


def _kafka(
    data: Mapping[str, Any], body: str, event_id: str | None, published_at: datetime | None, origin: str | None
) -> QueueMessage:
    topic = fields.text(data.get("topic"))
    partition = fields.size(data.get("partition"))
    offset = fields.size(data.get("offset"))
    record_id = f"{topic}/{partition}/{offset}" if topic and partition is not None and offset is not None else None
    return _message(
        record_id or event_id,
        body,
        SOURCE_KAFKA,
        attributes=_kafka_headers(data.get("headers")),
        group_id=fields.text(data.get("key")) or None,
        published_at=fields.instant(data.get("timestamp")) or published_at,
        sequence_number=str(offset) if offset is not None else None,
        origin=origin or topic,
    )


def _kafka_headers(headers: Any) -> dict[str, str]:
    """Kafka headers as EventBridge renders them: ``{"headers": [{"key", "value"}...]}``, a bare list of those,
    or a plain mapping. Values that are not text (bytes rendered as numbers) are kept as JSON."""
    if isinstance(headers, Mapping) and isinstance(headers.get("headers"), list):
        headers = headers["headers"]
    if isinstance(headers, list):
        return {
            str(item["key"]): fields.attribute_text(item.get("value"))
            for item in headers
            if isinstance(item, Mapping) and isinstance(item.get("key"), str)
        }
    if isinstance(headers, Mapping):
        return fields.text_map(headers)
    return {}


def _rocketmq(
    data: Mapping[str, Any], body: str, event_id: str | None, published_at: datetime | None, origin: str | None
) -> QueueMessage:
    system = fields.mapping(data.get("systemProperties"))
    user = fields.mapping(data.get("userProperties"))
    attributes = fields.text_map(user)
    for name in ("TAGS", "KEYS"):
        if fields.text(system.get(name)):
            attributes.setdefault(name, system[name])
    sharding_key = fields.text(system.get(ROCKETMQ_SHARDING_KEY)) or fields.text(user.get(ROCKETMQ_SHARDING_KEY))
    queue_offset = system.get("QUEUE_OFFSET")
    return _message(
        fields.text(system.get("UNIQ_KEY")) or fields.text(system.get("MSG_ID")) or event_id,
        body,
        SOURCE_ROCKETMQ,
        attributes=attributes,
        group_id=sharding_key or None,
        published_at=published_at,
        sequence_number=str(queue_offset) if fields.size(queue_offset) is not None else None,
        origin=origin or fields.text(data.get("topic")),
    )


def _fc_batch(platform: str, messages: list[QueueMessage], depth: int) -> QueueBatch:
    """The batch, with any message whose body is a destination record replaced by the original's messages."""
    out: list[QueueMessage] = []
    replay = False
    for message in messages:
        inner = _destination_in(message.body)
        if inner is None:
            out.append(message)
            continue
        original = _replay(inner, depth + 1)
        out.extend(original.messages)
        replay = True
    return QueueBatch(platform, out, replay)


def _destination_in(body: str) -> Mapping[str, Any] | None:
    document = _json(body)
    if isinstance(document, Mapping) and destination.is_destination_record(document):
        return document
    return None


def _replay(record: Mapping[str, Any], depth: int) -> QueueBatch:
    payload = destination.request_payload(record)
    if payload is None:
        raise UnsupportedEvent("destination record without a requestPayload")
    try:
        original = _read(payload, depth + 1)
    except UnsupportedEvent as exc:
        prefix = "destination record's requestPayload: "
        raise UnsupportedEvent(exc.message if exc.message.startswith(prefix) else prefix + exc.message) from None
    count = destination.invoke_count(record)
    messages = [m if m.receive_count is not None else replace(m, receive_count=count) for m in original.messages]
    return QueueBatch(original.platform_kind, messages, replay=True)


# --- Lambda: SQS, SNS, EventBridge -------------------------------------------------------------------------------


def _lambda_records(records: Any) -> QueueBatch:
    if not isinstance(records, list) or not records:
        raise UnsupportedEvent("unsupported event: Records is not a non-empty list")
    messages: list[QueueMessage] = []
    platforms: set[str] = set()
    for position, record in enumerate(records, start=1):
        if isinstance(record, Mapping) and sqs.is_sqs_record(record):
            platforms.add(PLATFORM_SQS_FIFO if sqs.is_fifo(record) else PLATFORM_SQS)
            messages.append(_sqs(record))
        elif isinstance(record, Mapping) and sns.is_sns_record(record):
            platforms.add(PLATFORM_SNS)
            messages.append(_sns(record))
        else:
            raise UnsupportedEvent(f"record {position} is not an SQS or SNS message: {_record_kind(record)}")
    if len(platforms) > 1:
        raise UnsupportedEvent(f"Records mixing sources: {sorted(platforms)}")
    return QueueBatch(platforms.pop(), messages)


def _record_kind(record: Any) -> str:
    if not isinstance(record, Mapping):
        return f"a JSON {fields.json_type(record)}"
    source = record.get("eventSource", record.get("EventSource"))
    if isinstance(source, str):
        return f"eventSource {_scrub_type(source)}"
    return f"keys {fields.keys_seen(record)}"


def _sqs(record: Mapping[str, Any]) -> QueueMessage:
    body = sqs.sqs_body(record)
    fifo = sqs.is_fifo(record)
    attributes = sqs.message_attributes(record)
    published_at = fields.instant(sqs.system_attribute(record, "SentTimestamp"))
    source_kind = SOURCE_SQS
    envelope = _json(body)
    if isinstance(envelope, Mapping) and sns.is_sns_envelope(envelope):
        body = sns.sns_message(envelope)
        attributes = {**sns.message_attributes(envelope), **attributes}
        published_at = fields.instant(envelope.get("Timestamp")) or published_at
        source_kind = SOURCE_SNS
    receive_count = fields.size(sqs.system_attribute(record, "ApproximateReceiveCount"))
    return _message(
        fields.text(record.get("messageId")),
        body,
        source_kind,
        attributes=attributes,
        receive_count=receive_count,
        group_id=sqs.system_attribute(record, "MessageGroupId") if fifo else None,
        published_at=published_at,
        sequence_number=sqs.system_attribute(record, "SequenceNumber") if fifo else None,
        origin=fields.text(record.get("eventSourceARN")),
    )


def _sns(record: Mapping[str, Any]) -> QueueMessage:
    envelope = sns.envelope(record)
    return _message(
        fields.text(envelope.get("MessageId")),
        sns.sns_message(record),
        SOURCE_SNS,
        attributes=sns.message_attributes(record),
        published_at=fields.instant(envelope.get("Timestamp")),
        origin=fields.text(envelope.get("TopicArn")),
    )


def _aws_eventbridge(event: Mapping[str, Any]) -> QueueMessage:
    if event.get("source") == "aws.s3":
        raise UnsupportedEvent(
            "an S3 event from EventBridge is an upload, not a user change: send it to the upload function"
        )
    return _message(
        fields.text(event.get("id")),
        _body_text(event.get("detail")),
        SOURCE_EVENTBRIDGE,
        published_at=fields.instant(event.get("time")),
        origin=fields.text(event.get("source")),
    )


# --- small pieces ------------------------------------------------------------------------------------------------


def _message(message_id: str | None, body: str, source_kind: str, **details: Any) -> QueueMessage:
    if message_id:
        return QueueMessage(message_id, body, source_kind=source_kind, **details)
    return QueueMessage(_derived_id(body), body, source_kind=source_kind, derived_id=True, **details)


def _derived_id(body: str) -> str:
    """A stable id for a body: the hash of its canonical JSON (key order and spacing do not matter), or of the
    text itself when it is not JSON."""
    document = _json(body)
    data = body.encode("utf-8", "surrogatepass")
    if document is not _NOT_JSON:
        with contextlib.suppress(orjson.JSONEncodeError):  # nested beyond orjson's writer: the text will do
            data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return DERIVED_ID_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


def _body_text(payload: Any) -> str:
    """A body as text: a string as it is, decoded JSON re-encoded, nothing (or what is no JSON) as the empty string,
    which ``parse_changes`` refuses for that one message."""
    if payload is None:
        return ""
    if isinstance(payload, str):
        return payload
    try:
        return orjson.dumps(payload).decode()
    except orjson.JSONEncodeError:
        pass  # an integer beyond 64 bits (Lambda's json module reads those), or nesting beyond orjson's writer
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return ""


def _text(event: bytes | bytearray | memoryview | str) -> str:
    if isinstance(event, str):
        return event
    try:
        return bytes(event).decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedEvent(f"unsupported event: {len(event)} bytes that are not UTF-8 text") from None


def _json(text: str) -> Any:
    """The decoded JSON, or ``_NOT_JSON``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _json_item(item: Any) -> Any:
    """A batch item: an object, or an object as a JSON string (one of FC's Kafka samples)."""
    if isinstance(item, str):
        decoded = _json(item)
        return decoded if decoded is not _NOT_JSON else item
    return item


def _scrub_type(value: Any) -> str:
    """A type or source name for an error message: short, scrubbed, quoted."""
    if not isinstance(value, str):
        return f"(a JSON {fields.json_type(value)})"
    return repr(scrub_text(value[:200])[:60])
