"""Object stores without a network: locations, the S3 client's configuration, error translation, the local
store's atomic writes and key rules, the memory fake's thread safety. The contract all three stores share runs
in tests/integration/test_objects_s3.py (it needs moto for S3)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from botocore.stub import Stubber

from cvcsync.adapters.objects import LocalObjectStore, Location, MemoryObjectStore, ObjectStoreError, parse_location
from cvcsync.adapters.s3 import S3ObjectStore, s3_client, translate_s3_error
from cvcsync.config import (
    ENV_AWS_DEFAULT_REGION,
    ENV_AWS_REGION,
    ENV_OBJECT_STORE_FLAVOR,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_ENDPOINT,
    ENV_S3_REGION,
)
from cvcsync.errors import ConfigurationError, InvalidInputError

FC_CONTEXT = {
    "request_id": "b1c5100f-819d-c421-3a5e-7782a27d8a33",
    "credentials": {
        "access_key_id": "STS.fc-test-key",
        "access_key_secret": "fc-test-secret",
        "security_token": "fc-test-token",
    },
    "region": "cn-hangzhou",
}


@pytest.fixture(autouse=True)
def no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and no instance metadata: boto3's default chain never looks beyond this process."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def header(request: AWSRequest, name: str) -> str | None:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


# --- locations --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("s3://bucket/users/a.csv", Location("s3", "bucket", "users/a.csv")),
        ("oss://bucket/users/a b.csv", Location("s3", "bucket", "users/a b.csv")),
        ("S3://bucket", Location("s3", "bucket", "")),
        ("s3://bucket/", Location("s3", "bucket", "")),
        ("s3://bucket/a%20b", Location("s3", "bucket", "a%20b")),
        ("/data/users.csv", Location("local", "", "/data/users.csv")),
        ("users.csv", Location("local", "", "users.csv")),
        ("file:///data/users.csv", Location("local", "", "/data/users.csv")),
        ("C:/data/users.csv", Location("local", "", "C:/data/users.csv")),
    ],
)
def test_parse_location(text: str, location: Location) -> None:
    assert parse_location(text) == location


@pytest.mark.parametrize("text", ["", "  ", "s3:///key", "s3://", "http://example.com/a.csv", "s3://my bucket/a"])
def test_parse_location_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_location(text)


# --- the S3 client factory --------------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes = b"") -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def capture(client: Any, status: int = 200, body: bytes = b"") -> list[AWSRequest]:
    """Answer every request locally (nothing leaves the process) and keep the signed requests."""
    sent: list[AWSRequest] = []

    def answer(request: AWSRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, status, {}, _Raw(body))

    client.meta.events.register("before-send.s3", answer)
    return sent


def test_aws_defaults() -> None:
    client = s3_client({ENV_AWS_REGION: "eu-west-1", ENV_AWS_DEFAULT_REGION: "us-west-2"})
    config = client.meta.config
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert config.signature_version == "s3v4"
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert (config.connect_timeout, config.read_timeout) == (5.0, 60.0)
    assert config.s3 == {"addressing_style": "auto"}
    assert config.request_checksum_calculation != "when_required"


def test_region_falls_back_to_aws_default_region() -> None:
    assert s3_client({ENV_AWS_DEFAULT_REGION: "us-west-2"}).meta.region_name == "us-west-2"


def test_oss_endpoint_is_virtual_hosted_with_the_region_from_its_name() -> None:
    client = s3_client({ENV_S3_ENDPOINT: "https://s3.oss-cn-shanghai.aliyuncs.com/"})
    assert client.meta.endpoint_url == "https://s3.oss-cn-shanghai.aliyuncs.com"
    assert client.meta.region_name == "cn-shanghai"
    assert client.meta.config.s3 == {"addressing_style": "virtual"}
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"


def test_internal_oss_endpoint_region_and_explicit_settings_win() -> None:
    env = {
        ENV_S3_ENDPOINT: "https://s3.oss-cn-beijing-internal.aliyuncs.com",
        ENV_S3_REGION: "cn-beijing",
        ENV_S3_ADDRESSING_STYLE: "Path",
    }
    client = s3_client(env)
    assert client.meta.region_name == "cn-beijing"
    assert client.meta.config.s3 == {"addressing_style": "path"}


def test_fc_context_credentials_sign_the_requests_and_pick_the_oss_endpoint() -> None:
    client = s3_client({}, fc_context=FC_CONTEXT)
    assert client.meta.endpoint_url == "https://s3.oss-cn-hangzhou.aliyuncs.com"
    sent = capture(client)
    S3ObjectStore(client).put_bytes("cvc-user-uploads", "cvc-sync/state.json", b"{}")
    (request,) = sent
    assert request.url.startswith("https://cvc-user-uploads.s3.oss-cn-hangzhou.aliyuncs.com/cvc-sync/state.json")
    assert "Credential=STS.fc-test-key/" in (header(request, "Authorization") or "")
    assert (header(request, "Authorization") or "").startswith("AWS4-HMAC-SHA256")
    assert header(request, "X-Amz-Security-Token") == "fc-test-token"


def test_fc_context_as_attributes_works_too() -> None:
    class Creds:
        access_key_id = "STS.attr-key"
        access_key_secret = "attr-secret"
        security_token = "attr-token"

    class Context:
        credentials = Creds()
        region = "cn-shenzhen"

    sent = capture(client := s3_client({}, fc_context=Context()))
    S3ObjectStore(client).delete("b", "k")
    assert "Credential=STS.attr-key/" in (header(sent[0], "Authorization") or "")
    assert client.meta.region_name == "cn-shenzhen"


def test_oss_create_only_write_also_sends_the_oss_header() -> None:
    client = s3_client({ENV_S3_ENDPOINT: "https://s3.oss-cn-hangzhou.aliyuncs.com"}, fc_context=FC_CONTEXT)
    sent = capture(client)
    store = S3ObjectStore(client)
    assert store.put_bytes("b", "k1", b"x", if_absent=True) is True
    assert store.put_bytes("b", "k2", b"x") is True
    assert header(sent[0], "If-None-Match") == "*"
    assert header(sent[0], "x-oss-forbid-overwrite") == "true"
    assert "x-oss-forbid-overwrite" in (header(sent[0], "Authorization") or "")  # signed, not bolted on after
    assert header(sent[1], "If-None-Match") is None
    assert header(sent[1], "x-oss-forbid-overwrite") is None


def test_oss_create_only_multipart_upload_sends_the_oss_header_on_completion(tmp_path: Path) -> None:
    client = s3_client({ENV_S3_ENDPOINT: "https://s3.oss-cn-hangzhou.aliyuncs.com"}, fc_context=FC_CONTEXT)
    sent: list[AWSRequest] = []
    initiated = b"<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>"

    def answer(request: AWSRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        body = initiated if request.url.endswith("?uploads") else b"<CompleteMultipartUploadResult/>"
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Raw(body))

    client.meta.events.register("before-send.s3", answer)
    big = tmp_path / "state.sqlite.gz"
    big.write_bytes(b"\0" * (8 * 1024 * 1024 + 1))
    assert S3ObjectStore(client).put_file("b", "state/000001.sqlite.gz", big, if_absent=True) is True
    assert [r.method for r in sent] == ["POST", "PUT", "PUT", "POST"]  # initiate, two parts, complete
    complete = sent[-1]
    assert header(complete, "If-None-Match") == "*"
    assert header(complete, "x-oss-forbid-overwrite") == "true"
    assert all(header(r, "x-oss-forbid-overwrite") is None for r in sent[:-1])


def test_oss_host_with_the_s3_flavour_sends_only_if_none_match() -> None:
    """The setting wins over the host name, both ways (the other way: tests/integration/test_objects_conditional.py)."""
    client = s3_client({ENV_S3_ENDPOINT: "https://s3.oss-cn-hangzhou.aliyuncs.com", ENV_OBJECT_STORE_FLAVOR: "S3"})
    sent = capture(client)
    S3ObjectStore(client).put_bytes("b", "k", b"x", if_absent=True)
    assert header(sent[0], "If-None-Match") == "*"
    assert header(sent[0], "x-oss-forbid-overwrite") is None


def test_aws_create_only_write_sends_only_if_none_match() -> None:
    client = s3_client({ENV_AWS_REGION: "us-east-1"})
    sent = capture(client)
    S3ObjectStore(client).put_bytes("b", "k", b"x", if_absent=True)
    assert header(sent[0], "If-None-Match") == "*"
    assert header(sent[0], "x-oss-forbid-overwrite") is None


@pytest.mark.parametrize(
    "env",
    [
        {ENV_S3_ADDRESSING_STYLE: "sideways"},
        {ENV_S3_ENDPOINT: "s3.oss-cn-hangzhou.aliyuncs.com"},
        {ENV_OBJECT_STORE_FLAVOR: "minio"},
    ],
    ids=["style", "endpoint-without-scheme", "flavor"],
)
def test_bad_settings_are_configuration_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        s3_client({ENV_AWS_REGION: "us-east-1", **env})


# --- error translation (the one boundary) -----------------------------------------------------------------------------


def stubbed() -> tuple[S3ObjectStore, Stubber]:
    client = s3_client({ENV_AWS_REGION: "us-east-1", ENV_S3_ENDPOINT: "http://127.0.0.1:9"})
    return S3ObjectStore(client), Stubber(client)


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("NoSuchBucket", 404, False),
        ("AccessDenied", 403, False),
        ("InvalidAccessKeyId", 403, False),
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("SomethingNew", 502, True),
    ],
)
def test_service_errors_keep_their_code_and_say_whether_to_retry(code: str, status: int, retryable: bool) -> None:
    store, stub = stubbed()
    stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with stub, pytest.raises(ObjectStoreError) as info:
        store.open("bucket", "users/a.csv")
    error = info.value
    assert (error.code, error.retryable, error.http_status) == (code, retryable, status)
    assert isinstance(error.__cause__, ClientError)
    assert "s3://bucket/users/a.csv" in error.message


def test_absent_object_is_none_or_false_not_an_error() -> None:
    store, stub = stubbed()
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    with stub:
        assert store.get_bytes("bucket", "missing") is None
        assert store.head("bucket", "missing") is None


@pytest.mark.parametrize(("code", "status"), [("PreconditionFailed", 412), ("FileAlreadyExists", 409)])
def test_create_only_write_on_an_existing_key_is_false(code: str, status: int) -> None:
    store, stub = stubbed()
    stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
    stub.add_response(
        "head_object", {"Metadata": {"cvcsync-write-id": "another-writer"}}, {"Bucket": "bucket", "Key": "taken"}
    )
    with stub:
        assert store.put_bytes("bucket", "taken", b"x", if_absent=True) is False


def test_precondition_failure_without_if_absent_is_an_error() -> None:
    store, stub = stubbed()
    stub.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412)
    with stub, pytest.raises(ObjectStoreError, match="PreconditionFailed"):
        store.put_bytes("bucket", "k", b"x")


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (EndpointConnectionError(endpoint_url="https://x"), "ConnectionError", True),
        (ReadTimeoutError(endpoint_url="https://x"), "ConnectionError", True),
        (NoCredentialsError(), "NoCredentials", False),
    ],
)
def test_transport_and_credential_errors(exc: Exception, code: str, retryable: bool) -> None:
    error = translate_s3_error(exc, "get", "bucket", "k")
    assert (error.code, error.retryable) == (code, retryable)


def test_upload_failure_is_traced_to_the_client_error_behind_it() -> None:
    from boto3.exceptions import S3UploadFailedError

    client_error = ClientError(
        {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject"
    )
    try:
        try:
            raise client_error
        except ClientError as inner:
            raise S3UploadFailedError("Failed to upload") from inner
    except S3UploadFailedError as outer:
        error = translate_s3_error(outer, "upload", "bucket", "k")
    assert (error.code, error.http_status, error.retryable) == ("AccessDenied", 403, False)


# --- the local store --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../b", "a/..", "/abs", "a//b", "a/./b", "dir/", "", "a\x00b", "a/.cvcsync-tmp-x"]
)
def test_local_store_refuses_keys_a_directory_cannot_hold_safely(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ObjectStoreError) as info:
        store.put_bytes("bucket", key, b"x")
    assert info.value.code == "InvalidKey"
    assert list(tmp_path.rglob("*")) == [] or all(p.is_dir() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("bucket", ["", ".", "..", "a/b", "a\\b"])
def test_local_store_refuses_bucket_names_that_are_paths(tmp_path: Path, bucket: str) -> None:
    with pytest.raises(ObjectStoreError, match="bucket"):
        LocalObjectStore(tmp_path).get_bytes(bucket, "k")


def test_local_write_that_fails_leaves_the_old_object_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("bucket", "state.json", b"old")

    def crash(*_: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put_bytes("bucket", "state.json", b"new" * 1000)
    monkeypatch.undo()
    assert store.get_bytes("bucket", "state.json") == b"old"
    assert sorted(p.name for p in (tmp_path / "bucket").iterdir()) == ["state.json"]


def test_local_upload_interrupted_mid_copy_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(b"x" * 100_000)
    store = LocalObjectStore(tmp_path / "root")

    def half_then_fail(src: Any, dst: Any) -> None:
        dst.write(src.read(50_000))
        raise OSError("connection to the NFS server lost")

    monkeypatch.setattr("cvcsync.adapters.objects.shutil.copyfileobj", half_then_fail)
    with pytest.raises(OSError, match="NFS"):
        store.put_file("bucket", "uploads/export.csv", source)
    assert store.get_bytes("bucket", "uploads/export.csv") is None
    assert [p.name for p in (tmp_path / "root" / "bucket" / "uploads").iterdir()] == []


def test_local_reader_keeps_the_version_it_opened_while_it_is_replaced(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("bucket", "users.csv", b"version-1" * 1000)
    with store.open("bucket", "users.csv") as stream:
        first = stream.read(9)
        store.put_bytes("bucket", "users.csv", b"version-2")
        rest = stream.read()
    assert first + rest == b"version-1" * 1000
    assert store.get_bytes("bucket", "users.csv") == b"version-2"


def test_local_create_only_write_has_exactly_one_winner(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def write(i: int) -> None:
        barrier.wait()
        results.append(store.put_bytes("bucket", "lock", f"writer-{i}".encode(), if_absent=True))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert (store.get_bytes("bucket", "lock") or b"").startswith(b"writer-")
    assert sorted(p.name for p in (tmp_path / "bucket").iterdir()) == ["lock"]


def test_local_list_skips_temp_files_and_delete_prunes_empty_directories(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("bucket", "a/b/c.csv", b"1")
    store.put_bytes("bucket", "a/d.csv", b"2")
    (tmp_path / "bucket" / "a" / ".cvcsync-tmp-leftover").write_bytes(b"partial")
    assert list(store.list_keys("bucket", "a/")) == ["a/b/c.csv", "a/d.csv"]
    assert list(store.list_keys("bucket", "a/b")) == ["a/b/c.csv"]
    assert list(store.list_keys("nobucket")) == []
    store.delete("bucket", "a/b/c.csv")
    assert not (tmp_path / "bucket" / "a" / "b").exists()
    assert (tmp_path / "bucket" / "a").is_dir()


def test_local_list_of_a_name_prefix_walks_only_the_directories_it_can_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local state's ``state/gen-`` listing must not walk its journal's thousands of entries beside it."""
    store = LocalObjectStore(tmp_path)
    for key in ("state/gen-00000001.sqlite.gz", "state/gen-x/deeper.json", "state/journal/ab/u1.json", "state/g.json"):
        store.put_bytes("bucket", key, b"1")
    walked: list[str] = []
    real_walk = os.walk

    def recording_walk(top: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for found in real_walk(top, *args, **kwargs):
            walked.append(Path(found[0]).relative_to(tmp_path / "bucket").as_posix())
            yield found

    monkeypatch.setattr(os, "walk", recording_walk)
    assert list(store.list_keys("bucket", "state/gen-")) == ["state/gen-00000001.sqlite.gz", "state/gen-x/deeper.json"]
    assert walked == ["state", "state/gen-x"]  # not state/journal
    walked.clear()
    assert list(store.list_keys("bucket", "state/")) == [
        "state/g.json",
        "state/gen-00000001.sqlite.gz",
        "state/gen-x/deeper.json",
        "state/journal/ab/u1.json",
    ]
    assert "state/journal/ab" in walked  # a directory prefix walks all below it


def test_local_key_conflicts_with_a_directory(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("bucket", "a/b", b"1")
    with pytest.raises(ObjectStoreError) as info:
        store.put_bytes("bucket", "a", b"2")
    assert info.value.code == "KeyConflict"
    with pytest.raises(ObjectStoreError) as info:
        store.put_bytes("bucket", "a/b/c", b"3")
    assert info.value.code == "KeyConflict"


# --- the memory fake --------------------------------------------------------------------------------------------------


def test_memory_store_is_thread_safe() -> None:
    store = MemoryObjectStore()
    barrier = threading.Barrier(8)
    winners: list[int] = []

    def work(i: int) -> None:
        barrier.wait()
        for n in range(200):
            store.put_bytes("bucket", f"w{i}/{n}", b"x")
        if store.put_bytes("bucket", "lock", str(i).encode(), if_absent=True):
            winners.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(store.list_keys("bucket", "w"))) == 1600
    assert len(winners) == 1
    assert store.get_bytes("bucket", "lock") == str(winners[0]).encode()


def test_memory_store_keeps_the_content_type() -> None:
    store = MemoryObjectStore()
    store.put_bytes("b", "k.ndjson", b"{}\n", content_type="application/x-ndjson")
    assert store.content_type("b", "k.ndjson") == "application/x-ndjson"


# --- cold starts ------------------------------------------------------------------------------------------------------


def test_reading_events_and_using_local_stores_never_imports_boto3(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from cvcsync.inputs.events import parse_object_events
from cvcsync.adapters.objects import LocalObjectStore, MemoryObjectStore, parse_location
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink
parse_object_events(Path({str(Path(__file__).parents[2] / "events/fc/oss-putobject.json")!r}).read_bytes())
sink = ObjectDeadLetterSink(LocalObjectStore(Path({str(tmp_path)!r})), "b", "dl/")
sink.put([DeadLetter(record={{}}, source={{}}, error_code="X", error_message="m")])
parse_location("oss://b/k")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer"))
print(loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
