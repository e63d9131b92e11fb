"""``LocalObjectStore`` fed hostile keys and buckets: nothing is ever read or written outside ``root/<bucket>``.

Every operation either works inside the bucket's directory or raises ``ObjectStoreError`` (``InvalidKey``,
``InvalidBucketName``, ``KeyConflict``, ``NoSuchKey``): never an ``OSError``, ``ValueError`` or ``UnicodeError``,
whatever the key holds (``..``, ``.``, empty segments, NUL, a leading ``/``, backslashes, lone surrogates, names
longer than the file system takes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvcsync.adapters.objects import LocalObjectStore, ObjectStoreError

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
SEGMENTS = ["..", ".", "", "a", "b.csv", "\x00", "..\\..", "\\", "%2e%2e", "\ud800", "x" * 300, "张" * 90, " ", "~"]
keys = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5).map("/".join),
    st.text(max_size=30),
    st.text(st.characters(), max_size=30),
)
buckets = st.one_of(
    st.sampled_from(["b", "..", ".", "", "a/b", "a\\b", "\x00", "\ud800", "x" * 300]), st.text(max_size=8)
)


def _outside(root: Path, bucket_dir: Path) -> list[Path]:
    """Every file or directory under ``root`` that is neither ``bucket_dir`` nor inside it, nor the decoy."""
    return [
        found
        for found in root.rglob("*")
        if found != bucket_dir and bucket_dir not in found.parents and found.name != "decoy.csv"
    ]


def _attempt(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ObjectStoreError as exc:
        assert exc.code in ("InvalidKey", "InvalidBucketName", "KeyConflict", "NoSuchKey"), exc.code
        return None


@FUZZ
@given(bucket=buckets, key=keys, prefix=keys)
def test_every_operation_stays_inside_the_bucket(
    tmp_path_factory: pytest.TempPathFactory, bucket: str, key: str, prefix: str
) -> None:
    root = tmp_path_factory.mktemp("store")
    (root / "decoy.csv").write_bytes(b"outside")  # a file next to the buckets: nothing may read or replace it
    store = LocalObjectStore(root / "data")
    (root / "data").mkdir()
    source = root / "decoy.csv"
    _attempt(lambda: store.put_bytes(bucket, key, b"x"))
    _attempt(lambda: store.put_bytes(bucket, key, b"y", if_absent=True))
    _attempt(lambda: store.put_file(bucket, key, source))
    got = _attempt(lambda: store.get_bytes(bucket, key))
    assert got in (None, b"x", b"outside")  # what was put there, never another file's content by another path
    info = _attempt(lambda: store.head(bucket, key))
    assert info is None or info.size in (1, len(b"outside"))
    listed = _attempt(lambda: list(store.list_keys(bucket, prefix)))
    assert listed is None or all(isinstance(name, str) and ".." not in name.split("/") for name in listed)
    _attempt(lambda: store.delete(bucket, key))
    assert source.read_bytes() == b"outside"
    if bucket and "/" not in bucket and bucket not in (".", ".."):
        assert _outside(root / "data", root / "data" / bucket) == []


@pytest.mark.parametrize(
    "key",
    ["../decoy.csv", "../../decoy.csv", "a/../../decoy.csv", "/decoy.csv", "./decoy.csv", "a//b", "a/.", "x\x00"],
)
def test_traversal_keys_are_refused_before_touching_the_disk(tmp_path: Path, key: str) -> None:
    (tmp_path / "decoy.csv").write_bytes(b"outside")
    store = LocalObjectStore(tmp_path / "data")
    for action in (
        lambda: store.get_bytes("b", key),
        lambda: store.open("b", key),
        lambda: store.head("b", key),
        lambda: store.put_bytes("b", key, b"x"),
        lambda: store.delete("b", key),
    ):
        with pytest.raises(ObjectStoreError) as caught:
            action()
        assert caught.value.code == "InvalidKey"
    assert (tmp_path / "decoy.csv").read_bytes() == b"outside"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "key", ["a/" + "x" * 256, "张" * 86, "a\ud800b", "\udcff"], ids=["long", "long-cjk", "hi", "lo"]
)
def test_names_the_file_system_cannot_take_are_invalid_keys_not_os_errors(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path)
    for action in (lambda: store.put_bytes("b", key, b"x"), lambda: store.open("b", key), lambda: store.head("b", key)):
        with pytest.raises(ObjectStoreError) as caught:
            action()
        assert caught.value.code == "InvalidKey"
    assert store.get_bytes("b", "a/" + "x" * 255) is None  # 255 bytes is still a name


@pytest.mark.parametrize("prefix", ["x" * 300 + "/a", "\ud800/a", "\x00/a", "../../", "/etc/", "a/../../"])
def test_listing_under_any_prefix_is_empty_or_inside(tmp_path: Path, prefix: str) -> None:
    store = LocalObjectStore(tmp_path / "data")
    store.put_bytes("b", "a/k.csv", b"x")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(b"root")
    assert list(store.list_keys("b", prefix)) == []
