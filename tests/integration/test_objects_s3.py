"""The ObjectStore contract, run against all three stores: memory, a local directory, and S3 (moto server)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cvcsync.adapters.objects import LocalObjectStore, MemoryObjectStore, ObjectStore, ObjectStoreError
from cvcsync.adapters.s3 import S3ObjectStore
from support.moto import MotoServer

BUCKET = "cvc-user-uploads"
BIG = 20 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryObjectStore()
    elif request.param == "local":
        yield LocalObjectStore(tmp_path / "store")
    else:
        moto: MotoServer = request.getfixturevalue("moto")
        client = moto.s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield S3ObjectStore(client)


def big_payload() -> bytes:
    # Incompressible and not repetitive, so that nothing along the way can cheat by deduplicating.
    return os.urandom(BIG)


def test_round_trip(store: ObjectStore) -> None:
    data = "userId,userName\nu-1,张三\n".encode()
    assert store.put_bytes(BUCKET, "users/2024 05/张 三+x.csv", data, content_type="text/csv") is True
    assert store.get_bytes(BUCKET, "users/2024 05/张 三+x.csv") == data
    with store.open(BUCKET, "users/2024 05/张 三+x.csv") as stream:
        assert stream.read(7) == b"userId,"
        assert stream.read() == data[7:]
    info = store.head(BUCKET, "users/2024 05/张 三+x.csv")
    assert info is not None
    assert (info.size, info.etag) == (len(data), hashlib.md5(data).hexdigest())


def test_overwrite_replaces(store: ObjectStore) -> None:
    store.put_bytes(BUCKET, "state.json", b"one")
    store.put_bytes(BUCKET, "state.json", b"two")
    assert store.get_bytes(BUCKET, "state.json") == b"two"


def test_absent_keys(store: ObjectStore, tmp_path: Path) -> None:
    assert store.get_bytes(BUCKET, "missing.csv") is None
    assert store.head(BUCKET, "missing.csv") is None
    assert store.download_file(BUCKET, "missing.csv", tmp_path / "out.csv") is False
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ObjectStoreError) as info:
        store.open(BUCKET, "missing.csv")
    assert (info.value.code, info.value.retryable) == ("NoSuchKey", False)
    store.delete(BUCKET, "missing.csv")  # deleting what is not there is fine


def test_delete(store: ObjectStore) -> None:
    store.put_bytes(BUCKET, "a/b.csv", b"x")
    store.delete(BUCKET, "a/b.csv")
    assert store.get_bytes(BUCKET, "a/b.csv") is None
    assert list(store.list_keys(BUCKET, "a/")) == []


def test_if_absent_creates_only(store: ObjectStore) -> None:
    assert store.put_bytes(BUCKET, "runs/lock", b"first", if_absent=True) is True
    assert store.put_bytes(BUCKET, "runs/lock", b"second", if_absent=True) is False
    assert store.get_bytes(BUCKET, "runs/lock") == b"first"
    assert store.put_bytes(BUCKET, "runs/lock", b"third") is True
    assert store.get_bytes(BUCKET, "runs/lock") == b"third"


def test_if_absent_has_exactly_one_winner_among_concurrent_writers(store: ObjectStore) -> None:
    """What a continuation's claim rests on: of writers racing for one key, exactly one is told it created it."""
    key = "cvc-sync/runs/r1/claims/resume-1.json"
    bodies = [f"request-{n}".encode() for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda body: store.put_bytes(BUCKET, key, body, if_absent=True), bodies))
    assert won.count(True) == 1
    assert store.get_bytes(BUCKET, key) == bodies[won.index(True)]


def test_list_keys_in_order_under_a_prefix(store: ObjectStore) -> None:
    for key in ["b/2.csv", "a/1.csv", "a/sub/3.csv", "a-sibling.csv", "ab.csv", "a/张.csv"]:
        store.put_bytes(BUCKET, key, b"x")
    assert list(store.list_keys(BUCKET, "a/")) == ["a/1.csv", "a/sub/3.csv", "a/张.csv"]
    assert list(store.list_keys(BUCKET, "a")) == ["a-sibling.csv", "a/1.csv", "a/sub/3.csv", "a/张.csv", "ab.csv"]
    assert len(list(store.list_keys(BUCKET))) == 6
    assert list(store.list_keys(BUCKET, "zzz/")) == []


def test_streaming_a_large_object_keeps_memory_flat(store: ObjectStore) -> None:
    data = big_payload()
    expected = hashlib.sha256(data).hexdigest()
    store.put_bytes(BUCKET, "exports/big.csv", data)
    del data
    digest = hashlib.sha256()
    total = 0
    tracemalloc.start()
    try:
        with store.open(BUCKET, "exports/big.csv") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == BIG
    assert digest.hexdigest() == expected
    assert peak < 2 * 1024 * 1024, f"reading {BIG} bytes in chunks peaked at {peak} bytes"


def test_put_file_and_download_file(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(big_payload())  # above boto3's 8 MiB threshold: a multipart upload on S3
    store.put_file(BUCKET, "exports/export.csv", source)
    target = tmp_path / "copy.csv"
    assert store.download_file(BUCKET, "exports/export.csv", target) is True
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    info = store.head(BUCKET, "exports/export.csv")
    assert info is not None and info.size == BIG


def test_a_create_only_upload_of_many_parts_keeps_their_order(store: ObjectStore, tmp_path: Path) -> None:
    """A generation of a large state is uploaded create-only in parts sent ``MULTIPART_THREADS`` at a time: the
    object must hold them in order (random bytes, so a part in the wrong place cannot go unseen)."""
    from cvcsync.adapters.s3 import MULTIPART_CHUNK, MULTIPART_THREADS

    source = tmp_path / "generation"
    source.write_bytes(os.urandom(MULTIPART_CHUNK * (MULTIPART_THREADS + 2) + 12345))  # more parts than threads
    assert store.put_file(BUCKET, "state/gen-00000009.sqlite.gz", source, if_absent=True) is True
    target = tmp_path / "copy"
    assert store.download_file(BUCKET, "state/gen-00000009.sqlite.gz", target) is True
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert store.put_file(BUCKET, "state/gen-00000009.sqlite.gz", source, if_absent=True) is False


@pytest.mark.parametrize("size", [1024, BIG], ids=["small", "multipart"])
def test_put_file_if_absent_creates_only(store: ObjectStore, tmp_path: Path, size: int) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"1" * size)
    second.write_bytes(b"2" * size)
    assert store.put_file(BUCKET, "state/000001.sqlite.gz", first, if_absent=True) is True
    assert store.put_file(BUCKET, "state/000001.sqlite.gz", second, if_absent=True) is False
    assert store.get_bytes(BUCKET, "state/000001.sqlite.gz") == first.read_bytes()
    assert store.put_file(BUCKET, "state/000001.sqlite.gz", second) is True
    assert store.get_bytes(BUCKET, "state/000001.sqlite.gz") == second.read_bytes()


# --- S3 only ----------------------------------------------------------------------------------------------------------


def test_listing_pages_through_continuation_tokens(moto: MotoServer) -> None:
    client = moto.s3_client()
    client.create_bucket(Bucket=BUCKET)
    keys = [f"dead-letters/{i:05d}.ndjson" for i in range(265)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=b"x"), keys))
    client.put_object(Bucket=BUCKET, Key="other/x", Body=b"x")
    calls: list[Any] = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(kw))
    store = S3ObjectStore(client, page_size=50)
    assert list(store.list_keys(BUCKET, "dead-letters/")) == keys
    assert len(calls) == 6  # 265 keys, 50 a page: five continuation tokens followed


def test_missing_bucket_is_translated(moto: MotoServer) -> None:
    store = S3ObjectStore(moto.s3_client())
    with pytest.raises(ObjectStoreError) as info:
        store.put_bytes("no-such-bucket", "k", b"x")
    assert (info.value.code, info.value.http_status, info.value.retryable) == ("NoSuchBucket", 404, False)
    assert info.value.request_id
    with pytest.raises(ObjectStoreError) as info:
        list(store.list_keys("no-such-bucket"))
    assert info.value.code == "NoSuchBucket"


def test_refused_create_only_multipart_upload_leaves_no_parts_behind(moto: MotoServer, tmp_path: Path) -> None:
    client = moto.s3_client()
    client.create_bucket(Bucket=BUCKET)
    store = S3ObjectStore(client)
    store.put_bytes(BUCKET, "taken", b"already here")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (9 * 1024 * 1024))
    assert store.put_file(BUCKET, "taken", big, if_absent=True) is False
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert store.get_bytes(BUCKET, "taken") == b"already here"


def test_create_only_write_is_enforced_by_the_server(moto: MotoServer) -> None:
    """moto 5 implements If-None-Match: * on PutObject (412 PreconditionFailed): check it is the server saying no."""
    client = moto.s3_client()
    client.create_bucket(Bucket=BUCKET)
    store = S3ObjectStore(client)
    statuses: list[int] = []
    client.meta.events.register(
        "after-call.s3.PutObject", lambda http_response, **_: statuses.append(http_response.status_code)
    )
    assert store.put_bytes(BUCKET, "lock", b"a", if_absent=True) is True
    assert store.put_bytes(BUCKET, "lock", b"b", if_absent=True) is False
    assert statuses == [200, 412]
