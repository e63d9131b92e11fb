"""Every sample in events/fc and events/aws, read as FC hands it over (bytes) and as Lambda does (a dict)."""

from __future__ import annotations

import pytest

from cvcsync.inputs.events import ObjectUploaded, SkippedEvent, UnsupportedEvent, parse_object_events
from support.events import load_event, sample_paths

from .test_queue_events import QUEUE_SAMPLES

BUCKET = "cvc-user-uploads"
ENCODED_KEY = "users/2024 05/张 三+x.csv"


def oss(key: str, size: int, etag: str, name: str, time: str) -> ObjectUploaded:
    return ObjectUploaded(BUCKET, key, size, etag, name, "oss", time, "cn-hangzhou")


PUT = oss(
    "users/2024-05-01/users.csv",
    20480,
    "688A7BF4F233DC9C88A80BF985AB7329",
    "ObjectCreated:PutObject",
    "2024-05-01T02:00:05.000Z",
)
MULTIPART = oss(
    "users/2024-05-01/full-export.csv",
    52428800,
    "A3F1C9E2B7D64E0F9A8B7C6D5E4F3A2B",
    "ObjectCreated:CompleteMultipartUpload",
    "2024-05-01T04:30:11.000Z",
)
S3_ETAG = "0123456789abcdef0123456789abcdef"
S3_TIME = "2024-05-01T02:00:05.123Z"

# sample -> (uploads, skip reasons): what each sample must turn into, exactly.
EXPECTED: dict[str, tuple[list[ObjectUploaded], list[str]]] = {
    "fc/oss-putobject.json": ([PUT], []),
    "fc/oss-postobject.json": (
        [
            oss(
                "users/2024-05-01/new-hires.json",
                3187,
                "5D41402ABC4B2A76B9719D911017C592",
                "ObjectCreated:PostObject",
                "2024-05-01T03:15:42.000Z",
            )
        ],
        [],
    ),
    "fc/oss-completemultipartupload.json": ([MULTIPART], []),
    "fc/oss-deleteobject.json": ([], ["not-created"]),
    "fc/oss-uploadpart.json": ([], ["incomplete-upload"]),
    "fc/async-destination-onfailure.json": ([PUT], []),
    "fc/mns-topic-json-oss-putobject.json": (
        [
            oss(
                "users/2024-05-02/users.csv",
                20480,
                "688A7BF4F233DC9C88A80BF985AB7329",
                "ObjectCreated:PutObject",
                "2024-05-02T02:00:05.000Z",
            )
        ],
        [],
    ),
    "fc/mns-topic-stream-oss-base64.json": (
        [
            oss(
                "users/2024-05-03/users.csv",
                20480,
                "688A7BF4F233DC9C88A80BF985AB7329",
                "ObjectCreated:PutObject",
                "2024-05-01T02:00:05.000Z",
            )
        ],
        [],
    ),
    "fc/eventbridge-mns-queue-oss-base64.json": ([MULTIPART], []),
    "aws/s3-put-encoded-key.json": (
        [ObjectUploaded(BUCKET, ENCODED_KEY, 1337, S3_ETAG, "ObjectCreated:Put", "s3", S3_TIME, "us-east-1")],
        [],
    ),
    "aws/s3-object-removed.json": ([], ["not-created"]),
    "aws/s3-test-event.json": ([], ["test-event"]),
    "aws/eventbridge-s3-object-created.json": (
        [
            ObjectUploaded(
                BUCKET,
                ENCODED_KEY,
                1337,
                S3_ETAG,
                "Object Created",
                "eventbridge-s3",
                "2024-05-01T02:00:05Z",
                "us-east-1",
            )
        ],
        [],
    ),
    "aws/sqs-s3-notification.json": (
        [
            ObjectUploaded(
                BUCKET, "users/2024-05-02/users.csv", 2048, S3_ETAG, "ObjectCreated:Put", "s3", S3_TIME, "us-east-1"
            )
        ],
        ["test-event"],
    ),
    "aws/sqs-sns-s3-notification.json": (
        [
            ObjectUploaded(
                BUCKET,
                "users/2024-05-03/new hires.csv",
                10485760,
                S3_ETAG,
                "ObjectCreated:CompleteMultipartUpload",
                "s3",
                S3_TIME,
                "us-east-1",
            )
        ],
        [],
    ),
}


def test_every_sample_has_an_expectation_and_every_expectation_a_sample() -> None:
    """Object-event samples are expected here; queue-message samples in test_queue_events (and refused below)."""
    assert not set(EXPECTED) & set(QUEUE_SAMPLES)
    assert sample_paths("fc", "aws") == sorted([*EXPECTED, *QUEUE_SAMPLES])


@pytest.mark.parametrize("raw", [True, False], ids=["bytes", "dict"])
@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_sample_reads_as_expected(sample: str, raw: bool) -> None:
    uploads, reasons = EXPECTED[sample]
    got = parse_object_events(load_event(sample, raw=raw), ignore_prefixes=["cvc-sync/"])
    assert got.uploads == uploads
    assert [skip.reason for skip in got.skipped] == reasons
    assert all(isinstance(skip, SkippedEvent) and skip.detail for skip in got.skipped)


def test_samples_as_text_read_like_bytes() -> None:
    text = load_event("aws/s3-put-encoded-key.json", raw=True).decode()
    assert parse_object_events(text).uploads[0].key == ENCODED_KEY


@pytest.mark.parametrize("raw", [True, False], ids=["bytes", "dict"])
@pytest.mark.parametrize("sample", QUEUE_SAMPLES)
def test_queue_message_samples_are_no_object_events(sample: str, raw: bool) -> None:
    with pytest.raises(UnsupportedEvent):
        parse_object_events(load_event(sample, raw=raw), ignore_prefixes=["cvc-sync/"])
