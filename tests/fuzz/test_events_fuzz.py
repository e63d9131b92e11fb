"""Every event adapter fed hostile input: arbitrary JSON-ish values, mutated real samples and raw bytes.

Whatever arrives, the entry points (``parse_object_events``, ``parse_queue_event``, ``parse_scheduled_event``) return
their neutral types or raise one of our ``InvalidInputError``s with a code and a message; the small per-source readers
(``oss``, ``s3``, ``sqs``, ``sns``, ``mns``, ``eventbridge``, ``destination``) never raise at all, bar the documented
``UnsupportedEvent`` of a record without bucket or key. No upload ever carries a key that could leave its bucket's
prefix or the directory a local store keeps it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.adapters.objects import LocalObjectStore, ObjectStoreError
from cvcsync.config import SyncSettings
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.changes import MalformedMessage, parse_changes
from cvcsync.inputs.events import (
    ObjectEvents,
    ObjectUploaded,
    SkippedEvent,
    UnsupportedEvent,
    destination,
    eventbridge,
    fields,
    mns,
    oss,
    parse_object_events,
    s3,
    sns,
    sqs,
)
from cvcsync.inputs.events import types as event_types
from cvcsync.inputs.events.queue import QueueBatch, parse_queue_event
from cvcsync.inputs.events.timer import TASKS, ScheduledTask, parse_scheduled_event
from cvcsync.platform.triggers.common import decode_event
from support.events import load_event, sample_paths
from support.hostile import HOSTILE_STRINGS, RAW_PAYLOADS, hostile_text, json_ish, mutated, raw_bytes

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

OWN_OUTPUT = "cvc-sync/"
SKIP_REASONS = {value for name, value in vars(event_types).items() if name.startswith("SKIP_")}

QUEUE_SAMPLES = [path for path in sample_paths("fc", "aws") if "/queue-" in path]
OBJECT_SAMPLES = [path for path in sample_paths("fc", "aws") if "/queue-" not in path]
SCHEDULE_SAMPLES = sample_paths("schedule")

# Names the readers look at, so that random documents reach past the first test now and then.
EVENT_KEYS = [
    "events", "Records", "eventSource", "EventSource", "eventName", "s3", "oss", "bucket", "object", "name", "key",
    "size", "eTag", "etag", "body", "attrs", "Message", "Type", "TopicOwner", "TopicName", "MessageId", "specversion",
    "data", "messageBody", "value", "partition", "offset", "systemProperties", "userProperties", "requestPayload",
    "requestContext", "approximateInvokeCount", "source", "detail-type", "detail", "Event", "Sns", "attributes",
    "messageAttributes", "eventSourceARN", "triggerTime", "payload", "task", "resources", "headers", "type",
]  # fmt: skip
EVENT_VALUES = [
    "aws:s3", "aws:sqs", "aws:sns", "acs:oss", "aws.s3", "aws.events", "Object Created", "Notification",
    "s3:TestEvent", "ObjectCreated:Put", "ObjectCreated:PutObject", "Scheduled Event", "redrive", "heartbeat", "1.0",
]  # fmt: skip
events = json_ish(EVENT_KEYS, EVENT_VALUES)


def _checked_error(exc: InvalidInputError) -> None:
    """A rejection must say what it is (a code) and why (a message), in one line a log can hold."""
    assert isinstance(exc.code, str) and exc.code
    assert isinstance(exc.message, str) and exc.message.strip()
    assert len(exc.message) < 2000


def _safe_key(upload: ObjectUploaded, root: Path | None) -> None:
    """An upload's key: nothing hostile, never our own output, and kept inside a local store's bucket directory."""
    assert isinstance(upload.bucket, str) and upload.bucket
    assert fields.key_problem(upload.key) is None
    assert not upload.key.startswith(OWN_OUTPUT) and not upload.key.endswith("/")
    report_key = SyncSettings().key("reports", upload.key, "run.json")
    assert report_key.startswith(SyncSettings().output_prefix) and ".." not in report_key.split("/")
    if root is None:
        return
    store = LocalObjectStore(root)
    try:
        store.put_bytes("bucket", upload.key, b"x")
    except ObjectStoreError as exc:
        assert exc.code in ("InvalidKey", "KeyConflict")  # refused (a '.' or empty segment): fine, nothing written
    for written in root.rglob("*"):
        assert (root / "bucket") == written or (root / "bucket") in written.parents


def read_object_events(event: Any, root: Path | None = None) -> ObjectEvents | None:
    try:
        found = parse_object_events(event, ignore_prefixes=[OWN_OUTPUT])
    except InvalidInputError as exc:
        assert isinstance(exc, UnsupportedEvent)
        _checked_error(exc)
        return None
    for upload in found.uploads:
        _safe_key(upload, root)
    for skip in found.skipped:
        assert isinstance(skip, SkippedEvent) and skip.reason in SKIP_REASONS and skip.detail
    return found


def read_queue_event(event: Any) -> QueueBatch | None:
    try:
        batch = parse_queue_event(event)
    except InvalidInputError as exc:
        _checked_error(exc)
        return None
    assert batch.messages and batch.platform_kind
    for message in batch.messages:
        assert isinstance(message.message_id, str) and message.message_id
        assert isinstance(message.body, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.attributes.items())
        try:
            parse_changes(message.body, message_id=message.message_id, received_at=message.published_at)
        except MalformedMessage as exc:
            _checked_error(exc)
            assert exc.problems and all(problem.reason for problem in exc.problems)
    return batch


def read_scheduled_event(event: Any) -> ScheduledTask | None:
    try:
        task = parse_scheduled_event(event)
    except InvalidInputError as exc:
        _checked_error(exc)
        return None
    assert task.name in TASKS and isinstance(task.options, dict)
    assert task.trigger_name is None or isinstance(task.trigger_name, str)
    assert task.fired_at is None or isinstance(task.fired_at, str)
    return task


# --- arbitrary values ------------------------------------------------------------------------------------------


@FUZZ
@given(events)
def test_object_events_any_value(event: Any) -> None:
    read_object_events(event)


@FUZZ
@given(events)
def test_queue_events_any_value(event: Any) -> None:
    read_queue_event(event)


@FUZZ
@given(events)
def test_scheduled_events_any_value(event: Any) -> None:
    read_scheduled_event(event)


# --- mutated real samples --------------------------------------------------------------------------------------


@FUZZ
@given(event=st.sampled_from(OBJECT_SAMPLES).flatmap(lambda path: mutated(load_event(path))))
def test_object_samples_mutated(event: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    read_object_events(event, tmp_path_factory.mktemp("store"))


@FUZZ
@given(st.sampled_from(QUEUE_SAMPLES).flatmap(lambda path: mutated(load_event(path))))
def test_queue_samples_mutated(event: Any) -> None:
    read_queue_event(event)


@FUZZ
@given(st.sampled_from(SCHEDULE_SAMPLES).flatmap(lambda path: mutated(load_event(path))))
def test_scheduled_samples_mutated(event: Any) -> None:
    read_scheduled_event(event)


@pytest.mark.parametrize("resources", [5, True, 1.5, None, "arn:aws:events:r/cvc-sync-redrive", {"a": 1}, [7, None]])
@pytest.mark.parametrize("sample", ["schedule/aws-scheduled-event-rule-name.json", "schedule/fc-timer-redrive.json"])
def test_scheduled_event_fields_of_the_wrong_type(sample: str, resources: Any) -> None:
    event = load_event(sample)
    event.update(resources=resources, time=resources, triggerName=resources, triggerTime=resources)
    read_scheduled_event(event)


@pytest.mark.parametrize("path", OBJECT_SAMPLES + QUEUE_SAMPLES + SCHEDULE_SAMPLES)
def test_every_sample_still_reads_as_bytes_through_decode_event(path: str) -> None:
    """The baseline the mutations start from: each sample reads (or is skipped/refused) as its own parser says."""
    raw = load_event(path, raw=True)
    if path in SCHEDULE_SAMPLES:
        read_scheduled_event(decode_event(raw))
    elif path in QUEUE_SAMPLES:
        assert read_queue_event(decode_event(raw)) is not None
    else:
        assert read_object_events(decode_event(raw)) is not None


# --- raw bytes -------------------------------------------------------------------------------------------------


@FUZZ
@given(raw_bytes)
def test_raw_bytes_to_every_entry_point(data: bytes) -> None:
    for event in (data, decode_event(data)):
        read_object_events(event)
        read_queue_event(event)
        read_scheduled_event(event)


@pytest.mark.parametrize("data", RAW_PAYLOADS, ids=range(len(RAW_PAYLOADS)))
def test_each_hostile_payload_is_refused_with_our_error(data: bytes) -> None:
    assert read_object_events(data) is None  # none of them is an object event
    assert read_queue_event(data) is None  # nor a queue message
    assert read_scheduled_event(data) is None  # nor a schedule


@pytest.mark.parametrize("depth", [1025, 100_000])
def test_deep_nesting_inside_envelopes_is_refused_with_a_code(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    sqs_event = load_event("aws/queue-sqs-standard.json")
    sqs_event["Records"][0]["body"] = nested
    batch = read_queue_event(sqs_event)
    assert batch is not None
    with pytest.raises(MalformedMessage) as caught:
        parse_changes(batch.messages[0].body)
    assert caught.value.problems[0].field == "body" and "nested" in caught.value.problems[0].reason
    s3_event = load_event("aws/sqs-s3-notification.json")
    s3_event["Records"][0]["body"] = nested
    with pytest.raises(UnsupportedEvent):
        parse_object_events(s3_event)


# --- the small readers never raise -----------------------------------------------------------------------------

records = st.dictionaries(
    st.sampled_from(EVENT_KEYS) | hostile_text, json_ish(EVENT_KEYS, EVENT_VALUES, 10), max_size=8
)


@FUZZ
@given(records)
def test_source_readers_never_raise(record: dict[str, Any]) -> None:
    for read in (oss.read_oss_record, s3.read_s3_record, s3.read_eventbridge_s3):
        try:
            got = read(record)
        except UnsupportedEvent as exc:
            _checked_error(exc)
            assert "without" in exc.message  # names the fields it needed
        else:
            assert isinstance(got, (ObjectUploaded, SkippedEvent))
    for test in (
        oss.is_oss_event,
        oss.is_oss_record,
        s3.is_s3_record,
        s3.is_test_event,
        s3.is_eventbridge_s3,
        sqs.is_sqs_record,
        sqs.is_fifo,
        sns.is_sns_envelope,
        sns.is_sns_record,
        mns.is_topic_json,
        mns.is_stream_with_attributes,
        eventbridge.is_cloud_event,
        destination.is_destination_record,
    ):
        assert isinstance(test(record), bool)
    assert isinstance(sqs.sqs_body(record), str) and isinstance(sns.sns_message(record), str)
    assert isinstance(mns.topic_payload(record), str)
    for attributes in (sqs.message_attributes(record), sns.message_attributes(record), mns.topic_attributes(record)):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
    sent = sqs.system_attribute(record, "SentTimestamp")
    assert sent is None or sent == record["attributes"]["SentTimestamp"]
    assert eventbridge.queue_source(record) in (None, eventbridge.MNS_QUEUE, eventbridge.ROCKETMQ, eventbridge.KAFKA)
    eventbridge.cloud_event_payload(record)
    eventbridge.queue_payload(record)
    destination.request_payload(record)
    count = destination.invoke_count(record)
    assert count is None or (isinstance(count, int) and count >= 0)
    assert isinstance(fields.keys_seen(record), str)


@FUZZ
@given(json_ish())
def test_field_readers_never_raise(value: Any) -> None:
    assert fields.text(value) in (None, value)
    assert isinstance(fields.mapping(value), Mapping)
    size = fields.size(value)
    assert size is None or (isinstance(size, int) and size >= 0)
    etag = fields.etag(value)
    assert etag is None or (etag and '"' not in etag[:1])
    moment = fields.instant(value)
    assert moment is None or moment.utcoffset() is not None
    assert isinstance(fields.attribute_text(value), str)
    assert isinstance(fields.json_type(value), str)
    if isinstance(value, str):
        assert isinstance(mns.decode_body(value), str)
        assert isinstance(oss.decode_oss_key(value), str)
        assert s3.decode_s3_key(value) is None or isinstance(s3.decode_s3_key(value), str)
        assert isinstance(fields.event_name(value, "oss:"), str)


# --- keys: hostile ones are skipped with a reason, never read ---------------------------------------------------

# key -> the skip reason when it arrives as it is (decoded); percent-encoded, it may also be a harmless literal key.
HOSTILE_KEYS = {
    "../secret.csv": "hostile-key",
    "uploads/../../etc/passwd": "hostile-key",
    "uploads/..": "hostile-key",
    "/etc/passwd": "hostile-key",
    "uploads/a\x00.csv": "hostile-key",
    "uploads/a\r\nb.csv": "hostile-key",
    "uploads/\x1b[2J.csv": "hostile-key",
    "uploads/" + "a" * 1100 + ".csv": "invalid-key",
    "uploads/" + "张" * 400 + ".csv": "invalid-key",
    "uploads/a\ud800.csv": "invalid-key",
    "cvc-sync/reports/r.json": "own-output",
    "uploads/dir/": "directory-marker",
    "": "invalid-key",
}
KEY_SAMPLES = ["fc/oss-putobject.json", "aws/s3-put-encoded-key.json", "aws/eventbridge-s3-object-created.json"]


def _with_key(sample: str, key: str) -> Any:
    event = load_event(sample)
    if sample == "fc/oss-putobject.json":
        event["events"][0]["oss"]["object"]["key"] = key
    elif sample == "aws/s3-put-encoded-key.json":
        event["Records"][0]["s3"]["object"]["key"] = key
    else:
        event["detail"]["object"]["key"] = key
    return event


@pytest.mark.parametrize("key", sorted(HOSTILE_KEYS), ids=range(len(HOSTILE_KEYS)))
@pytest.mark.parametrize("sample", KEY_SAMPLES)
def test_hostile_keys_are_skipped_with_a_reason(key: str, sample: str, tmp_path: Path) -> None:
    found = read_object_events(_with_key(sample, key), tmp_path)
    assert found is not None and found.uploads == [], found
    assert [skip.reason for skip in found.skipped] == [HOSTILE_KEYS[key]]
    if HOSTILE_KEYS[key] in ("hostile-key", "invalid-key") and key:
        assert key not in found.skipped[0].detail  # never repeated into a log line


@pytest.mark.parametrize("key", sorted(HOSTILE_KEYS), ids=range(len(HOSTILE_KEYS)))
@pytest.mark.parametrize("sample", KEY_SAMPLES)
def test_percent_encoded_hostile_keys_never_become_hostile_uploads(key: str, sample: str, tmp_path: Path) -> None:
    found = read_object_events(_with_key(sample, quote(key, safe="/", errors="surrogatepass")), tmp_path)
    assert found is not None
    assert all(upload.key != key for upload in found.uploads)  # decoded to the hostile key: skipped, as above


@FUZZ
@given(
    segments=st.lists(st.sampled_from(["..", ".", "", "a", "%2e%2e", "\x00", "b.csv", "..\\", "\ud800"]), max_size=6)
)
def test_any_key_made_of_dot_segments_stays_inside(
    segments: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = "/".join(segments)
    for sample in KEY_SAMPLES:
        read_object_events(_with_key(sample, key), tmp_path_factory.mktemp("store"))


@FUZZ
@given(hostile_text)
def test_error_messages_never_echo_values(value: str) -> None:
    """``UnsupportedEvent`` names the keys it saw, never their values (which may be personal data)."""
    marker = "MARKER-" + value.encode("utf-8", "backslashreplace").hex()[:20] + "-\u5f20"
    for event in ({"unknown": marker}, {"events": [{"x": marker}]}, {"specversion": "1.0", "data": {"k": marker}}):
        with pytest.raises(UnsupportedEvent) as caught:
            parse_object_events(event)
        assert marker not in caught.value.message


def test_hostile_strings_table_is_used() -> None:
    """The table in ``support.hostile`` feeds every strategy here: keep it non-trivial."""
    assert len(HOSTILE_STRINGS) > 20 and "\ud800" in HOSTILE_STRINGS
