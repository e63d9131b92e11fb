"""Dead letters: the record format, the shared base (validation, counting, a log line without personal data),
the object sink on the memory store, the memory sink, the queue sink's batching against a stubbed client, and
the factory."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync.adapters.objects import MemoryObjectStore
from cvcsync.config import ENV_DEADLETTER_QUEUE_URL, ENV_DEADLETTER_SINK, ENV_OUTPUT_PREFIX
from cvcsync.errors import ConfigurationError, CvcBusinessError, InvalidInputError
from cvcsync.logs import JsonFormatter
from cvcsync.outputs.deadletters import UNREADABLE, DeadLetter, DeadLetterError, MemoryDeadLetterSink
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink, QueueDeadLetterSink, deadletter_sink_from_env

NOW = datetime(2024, 5, 1, 2, 3, 4, 567000, tzinfo=timezone.utc)
PERSONAL = {"userId": "u-1001", "userName": "张三", "email": "zhangsan@example.com", "mobile": "13812345678"}
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/111122223333/cvc-sync-dead-letters"


def letter(n: int = 1, **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "record": {**PERSONAL, "userId": f"u-{n:04d}"},
        "source": {"bucket": "cvc-user-uploads", "key": "users/2024-05-01/users.csv", "line": n + 1},
        "error_code": "UserExists",
        "error_message": "the user already exists",
        "request_id": f"REQ-{n}",
        "attempts": 1,
        "failed_at": "2024-05-01T02:03:04.567Z",
        "run_id": "run-20240501",
    }
    return DeadLetter(**{**fields, **overrides})


# --- the record -------------------------------------------------------------------------------------------------------


def test_json_round_trip_keeps_everything() -> None:
    original = letter(7, kind="message", retryable=True, request_id=None)
    assert DeadLetter.from_json(original.to_json()) == original
    assert DeadLetter.from_json(original.to_json().decode()) == original
    data = orjson.loads(original.to_json())
    assert data["errorCode"] == "UserExists"
    assert data["record"] == original.record
    assert data["version"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    record=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    source=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    code=st.text(min_size=1, max_size=20),
    message=st.text(max_size=50),
    attempts=st.integers(0, 100),
    kind=st.sampled_from(["record", "message"]),
    retryable=st.booleans(),
    request_id=st.none() | st.text(max_size=20),
)
def test_json_round_trip_property(
    record: dict[str, Any],
    source: dict[str, Any],
    code: str,
    message: str,
    attempts: int,
    kind: Any,
    retryable: bool,
    request_id: str | None,
) -> None:
    original = DeadLetter(record, source, code, message, request_id, attempts, kind=kind, retryable=retryable)
    line = original.to_json()
    assert b"\n" not in line
    assert DeadLetter.from_json(line) == original


def test_a_record_orjson_cannot_encode_is_escaped_not_lost() -> None:
    odd = letter(record={"userName": "bad \ud800 surrogate"})
    line = odd.to_json()
    assert b"\\ud800" in line
    assert DeadLetter.from_json(line).record == {"userName": "bad \ud800 surrogate"}


def test_from_error_takes_what_the_error_knows() -> None:
    error = CvcBusinessError("user exists", action="CreateUser", code="UserExists", request_id="RID-9", retryable=False)
    error.attempts = 3
    built = DeadLetter.from_error(PERSONAL, {"line": 2}, error, run_id="r1", now=NOW)
    assert (built.error_code, built.error_message, built.request_id, built.attempts) == (
        "UserExists",
        "user exists",
        "RID-9",
        3,
    )
    assert (built.failed_at, built.run_id, built.kind, built.retryable) == (
        "2024-05-01T02:03:04.567Z",
        "r1",
        "record",
        False,
    )
    plain = DeadLetter.from_error({"a": 1}, {}, ValueError("x" * 5000), run_id="r1", kind="message", attempts=2)
    assert (plain.error_code, len(plain.error_message), plain.attempts, plain.kind) == (
        "ValueError",
        2000,
        2,
        "message",
    )
    assert plain.failed_at.endswith("Z")


@pytest.mark.parametrize(
    "overrides",
    [
        {"error_code": ""},
        {"kind": "user"},
        {"attempts": -1},
        {"attempts": True},
        {"failed_at": "yesterday"},
        {"record": ["not", "a", "dict"]},
        {"retryable": "yes"},
        {"request_id": 5},
    ],
)
def test_invalid_letters_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as info:
        letter(**overrides)
    assert info.value.code == "InvalidDeadLetter"


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b'{"record": {}}', b""])
def test_from_json_refuses_what_is_not_a_letter(line: bytes) -> None:
    with pytest.raises(InvalidInputError):
        DeadLetter.from_json(line)


# --- the shared base --------------------------------------------------------------------------------------------------


def test_put_refuses_anything_but_letters_before_writing() -> None:
    sink = MemoryDeadLetterSink()
    with pytest.raises(InvalidInputError):
        sink.put([letter(1), {"record": {}}])  # type: ignore[list-item]
    assert sink.letters == []
    assert sink.put([]) == 0


def test_the_log_line_counts_and_names_codes_but_never_the_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemoryDeadLetterSink()
    letters = [letter(1), letter(2), letter(3, error_code="InvalidMobile", error_message="mobile 13812345678 invalid")]
    with caplog.at_level(logging.DEBUG):
        assert sink.put(letters) == 3
    records = [r for r in caplog.records if r.name == "cvcsync.outputs.deadletters"]
    assert len(records) == 1
    assert getattr(records[0], "errorCodes") == {"InvalidMobile": 1, "UserExists": 2}  # noqa: B009
    assert getattr(records[0], "deadLetters") == 3  # noqa: B009
    rendered = [JsonFormatter().format(r) for r in caplog.records] + [r.getMessage() for r in caplog.records]
    raw = " ".join(rendered + [repr(r.__dict__) for r in caplog.records])
    for secret in ("u-0001", "张三", "zhangsan", "13812345678", "1381234", "the user already exists", "REQ-1"):
        assert secret not in raw


# --- memory sink ------------------------------------------------------------------------------------------------------


def test_memory_sink_read_and_remove() -> None:
    sink = MemoryDeadLetterSink()
    sink.put([letter(i) for i in range(5)])
    page = sink.read(3)
    assert [s.letter for s in page] == [letter(i) for i in range(3)]
    assert sink.remove([page[0].handle, page[2].handle, "unknown"]) == 2
    assert [s.letter for s in sink.read()] == [letter(1), letter(3), letter(4)]


# --- object sink ------------------------------------------------------------------------------------------------------


def object_sink(store: MemoryObjectStore | None = None) -> tuple[ObjectDeadLetterSink, MemoryObjectStore]:
    store = store or MemoryObjectStore()
    return ObjectDeadLetterSink(store, "state-bucket", "cvc-sync/dead-letters/", now=lambda: NOW), store


def test_object_sink_writes_one_ndjson_object_per_put() -> None:
    sink, store = object_sink()
    sink.put([letter(1), letter(2)])
    sink.put([letter(3, run_id="run/../evil id")])
    keys = list(store.list_keys("state-bucket"))
    assert len(keys) == 2
    pattern = re.compile(r"cvc-sync/dead-letters/2024/05/01/(run-20240501|run_.._evil_id)-[0-9a-f]{32}\.ndjson")
    assert all(pattern.fullmatch(k) for k in keys), keys
    first = next(k for k in keys if "run-20240501" in k)
    body = store.get_bytes("state-bucket", first) or b""
    assert body.endswith(b"\n")
    assert [DeadLetter.from_json(line) for line in body.splitlines()] == [letter(1), letter(2)]
    assert store.content_type("state-bucket", first) == "application/x-ndjson"


def test_object_sink_read_and_partial_remove_rewrites_the_rest() -> None:
    sink, store = object_sink()
    sink.put([letter(1), letter(2), letter(3)])
    page = sink.read()
    assert [s.letter for s in page] == [letter(1), letter(2), letter(3)]
    assert sink.remove([page[1].handle]) == 1
    assert [s.letter for s in sink.read()] == [letter(1), letter(3)]
    assert len(list(store.list_keys("state-bucket"))) == 1
    again = sink.read()
    assert sink.remove([s.handle for s in again]) == 2
    assert list(store.list_keys("state-bucket")) == []
    assert sink.remove([page[0].handle]) == 0  # already gone


def test_object_sink_read_pages_across_objects() -> None:
    sink, _ = object_sink()
    for n in range(4):
        sink.put([letter(n * 10 + i) for i in range(3)])
    assert len(sink.read(5)) == 5
    assert len(sink.read(100)) == 12


def test_object_sink_remove_finds_a_letter_that_moved() -> None:
    sink, _ = object_sink()
    sink.put([letter(1), letter(2), letter(3)])
    stale = sink.read()
    sink.remove([stale[0].handle])  # letter 2 is now on the first line
    assert sink.remove([stale[2].handle]) == 1
    assert [s.letter for s in sink.read()] == [letter(2)]


def test_object_sink_returns_unreadable_lines_as_letters() -> None:
    sink, store = object_sink()
    store.put_bytes("state-bucket", "cvc-sync/dead-letters/2024/05/01/x.ndjson", letter(1).to_json() + b"\n{broken\n")
    page = sink.read()
    assert page[0].letter == letter(1)
    assert page[1].letter.error_code == UNREADABLE
    assert page[1].letter.record == {"raw": "{broken"}
    assert page[1].letter.source["line"] == 2


def test_object_sink_never_overwrites_an_existing_object() -> None:
    class Taken(MemoryObjectStore):
        refusals = 0

        def put_bytes(self, bucket: str, key: str, data: bytes, **kw: Any) -> bool:
            if kw.get("if_absent") and self.refusals < 2:
                self.refusals += 1
                return False
            return super().put_bytes(bucket, key, data, **kw)

    sink, store = object_sink(Taken())
    sink.put([letter(1)])
    assert len(list(store.list_keys("state-bucket"))) == 1
    always = Taken()
    always.refusals = -(10**6)
    with pytest.raises(DeadLetterError):
        object_sink(always)[0].put([letter(1)])


@pytest.mark.parametrize(
    "handle",
    ["not-a-handle", '["cvc-sync/state/manifest.json", 0, "x"]', '["cvc-sync/dead-letters/a.txt", 0, "x"]', "[1]"],
)
def test_bad_or_foreign_handles_are_refused(handle: str) -> None:
    sink, store = object_sink()
    store.put_bytes("state-bucket", "cvc-sync/state/manifest.json", b"{}")
    with pytest.raises(InvalidInputError):
        sink.remove([handle])
    assert store.get_bytes("state-bucket", "cvc-sync/state/manifest.json") == b"{}"


# --- queue sink against a stubbed client ------------------------------------------------------------------------------


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.session.Session().client(
        "sqs", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_queue_sink_retries_only_the_entries_that_failed(sqs: Any) -> None:
    stub = Stubber(sqs)
    stub.add_response(
        "send_message_batch",
        {"Successful": [], "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}]},
        {"QueueUrl": QUEUE_URL, "Entries": ANY},
    )
    stub.add_response("send_message_batch", {"Successful": [], "Failed": []}, {"QueueUrl": QUEUE_URL, "Entries": ANY})
    sent: list[list[str]] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: sent.append([e["Id"] for e in params["Entries"]]),
    )
    with stub:
        assert QueueDeadLetterSink(sqs, QUEUE_URL).put([letter(0), letter(1), letter(2)]) == 3
    assert sent == [["0", "1", "2"], ["1"]]


def test_queue_sink_stops_on_a_sender_fault(sqs: Any) -> None:
    stub = Stubber(sqs)
    stub.add_response(
        "send_message_batch",
        {"Successful": [], "Failed": [{"Id": "0", "SenderFault": True, "Code": "InvalidMessageContents"}]},
    )
    with stub, pytest.raises(DeadLetterError, match="InvalidMessageContents"):
        QueueDeadLetterSink(sqs, QUEUE_URL).put([letter(0)])


def test_queue_sink_translates_client_errors(sqs: Any) -> None:
    stub = Stubber(sqs)
    stub.add_client_error("send_message_batch", "AWS.SimpleQueueService.NonExistentQueue", http_status_code=400)
    with stub, pytest.raises(DeadLetterError) as info:
        QueueDeadLetterSink(sqs, QUEUE_URL).put([letter(0)])
    assert (info.value.code, info.value.retryable) == ("AWS.SimpleQueueService.NonExistentQueue", False)


def test_queue_sink_sends_oversized_letters_to_the_overflow_sink(sqs: Any) -> None:
    overflow = MemoryDeadLetterSink()
    big = letter(9, record={"blob": "x" * 300_000})
    stub = Stubber(sqs)
    stub.add_response("send_message_batch", {"Successful": [], "Failed": []})
    with stub:
        assert QueueDeadLetterSink(sqs, QUEUE_URL, overflow=overflow).put([letter(1), big]) == 2
    assert overflow.letters == [big]


def test_queue_sink_without_overflow_sends_the_rest_then_refuses(sqs: Any) -> None:
    stub = Stubber(sqs)
    stub.add_response("send_message_batch", {"Successful": [], "Failed": []})
    with stub, pytest.raises(DeadLetterError, match="1 dead letter") as info:
        QueueDeadLetterSink(sqs, QUEUE_URL).put([letter(1), letter(2, record={"blob": "x" * 300_000})])
    assert info.value.code == "DeadLetterTooLarge"
    stub.assert_no_pending_responses()


# --- the factory ------------------------------------------------------------------------------------------------------


def test_factory_defaults_to_the_object_sink_under_the_output_prefix() -> None:
    store = MemoryObjectStore()

    def no_sqs() -> Any:
        raise AssertionError("the object sink needs no SQS client")

    sink = deadletter_sink_from_env({}, store, "state-bucket", no_sqs)
    assert isinstance(sink, ObjectDeadLetterSink)
    assert (sink.bucket, sink.prefix) == ("state-bucket", "cvc-sync/dead-letters/")
    custom = deadletter_sink_from_env({ENV_OUTPUT_PREFIX: "sync-out"}, store, "b", no_sqs)
    assert isinstance(custom, ObjectDeadLetterSink) and custom.prefix == "sync-out/dead-letters/"


def test_factory_builds_the_queue_sink_with_the_object_sink_as_overflow() -> None:
    client = object()
    env = {ENV_DEADLETTER_SINK: "Queue", ENV_DEADLETTER_QUEUE_URL: QUEUE_URL}
    sink = deadletter_sink_from_env(env, MemoryObjectStore(), "b", lambda: client)
    assert isinstance(sink, QueueDeadLetterSink)
    assert (sink.client, sink.queue_url) == (client, QUEUE_URL)
    assert isinstance(sink.overflow, ObjectDeadLetterSink) and sink.overflow.prefix == "cvc-sync/dead-letters/"


@pytest.mark.parametrize(
    "env",
    [
        {ENV_DEADLETTER_SINK: "kafka"},
        {ENV_DEADLETTER_SINK: "queue"},
        {ENV_OUTPUT_PREFIX: "/abs/"},
        {ENV_OUTPUT_PREFIX: "a/../b"},
    ],
)
def test_factory_refuses_bad_settings(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        deadletter_sink_from_env(env, MemoryObjectStore(), "b", lambda: None)


def test_log_goes_through_the_json_formatter_cleanly() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("cvcsync.outputs.deadletters")
    log.addHandler(handler)
    try:
        MemoryDeadLetterSink().put([letter(1)])
    finally:
        log.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert (line["deadLetters"], line["errorCodes"], line["sink"]) == (1, {"UserExists": 1}, "memory")
