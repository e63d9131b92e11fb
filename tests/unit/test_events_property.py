"""Properties of the event reader: it fails only with InvalidInputError, and keys survive their encoding."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events import parse_object_events
from cvcsync.inputs.events.fields import key_problem
from cvcsync.inputs.events.oss import decode_oss_key
from support.events import load_event

S3_SAMPLE = load_event("aws/s3-put-encoded-key.json")
OSS_SAMPLE = load_event("fc/oss-putobject.json")
EVENTBRIDGE_SAMPLE = load_event("aws/eventbridge-s3-object-created.json")

# Field names the reader looks at, so that random documents reach past the first test now and then.
KNOWN = [
    "events", "Records", "eventSource", "eventName", "s3", "oss", "bucket", "object", "name", "key", "size", "eTag",
    "etag", "body", "attrs", "Message", "Type", "TopicOwner", "MessageId", "specversion", "data", "messageBody",
    "requestPayload", "requestContext", "source", "detail-type", "detail", "Event", "Sns", "EventSource",
]  # fmt: skip
KNOWN_VALUES = ["aws:s3", "aws:sqs", "aws:sns", "acs:oss", "aws.s3", "Object Created", "Notification", "s3:TestEvent"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(KNOWN_VALUES),
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN), st.text(max_size=8)), children, max_size=5),
        children.map(json.dumps),  # stdlib: it also writes what orjson will not read back (Infinity, huge ints)
    )


json_ish = st.recursive(scalars, _extend, max_leaves=25)


def _parses_or_refuses(event: Any) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_object_events(event, ignore_prefixes=["cvc-sync/"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_ish)
def test_any_json_ish_document_reads_or_raises_invalid_input(event: Any) -> None:
    _parses_or_refuses(event if isinstance(event, (dict, list, str)) else [event])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_read_or_raise_invalid_input(data: bytes) -> None:
    _parses_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([S3_SAMPLE, OSS_SAMPLE, EVENTBRIDGE_SAMPLE]), st.data())
def test_mutated_samples_read_or_raise_invalid_input(sample: Any, data: st.DataObject) -> None:
    """Replace one field anywhere in a real sample with anything: the reader must not crash."""
    event = copy.deepcopy(sample)
    paths: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for name, child in items:
            paths.append((node, name))
            collect(child)

    collect(event)
    parent, name = data.draw(st.sampled_from(paths))
    parent[name] = data.draw(json_ish)
    _parses_or_refuses(event)


keys = st.text(min_size=1, max_size=40).filter(lambda k: key_problem(k) is None and not k.endswith("/"))


@settings(max_examples=300, deadline=None)
@given(keys, st.sampled_from(["/", ""]))
def test_s3_key_survives_s3_form_encoding(key: str, safe: str) -> None:
    event = copy.deepcopy(S3_SAMPLE)
    event["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe=safe)
    got = parse_object_events(event)
    assert [u.key for u in got.uploads] == [key]


@settings(max_examples=300, deadline=None)
@given(keys)
def test_eventbridge_key_survives_s3_form_encoding(key: str) -> None:
    event = copy.deepcopy(EVENTBRIDGE_SAMPLE)
    event["detail"]["object"]["key"] = quote_plus(key, safe="/")
    assert [u.key for u in parse_object_events(event).uploads] == [key]


@settings(max_examples=300, deadline=None)
@given(keys)
def test_oss_key_survives_percent_encoding(key: str) -> None:
    assert decode_oss_key(quote(key, safe="/")) == key


@settings(max_examples=300, deadline=None)
@given(keys.filter(lambda k: "%" not in k or not k.isascii()))
def test_oss_raw_key_that_cannot_be_encoded_output_is_kept(key: str) -> None:
    assert decode_oss_key(key) == key
