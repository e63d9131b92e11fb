"""A generation of the shadow state as one object: the SQLite snapshot for the batch path, and an index of it for
the change path, which reads one user (or one event id) with two ranged GETs whatever the directory's size.

Layout (one create-only object, so the snapshot and its index can never disagree)::

    b"CVCSTATE" | header length (u32, big-endian) | header (JSON) | body

and the body is ``gzip(SQLite file)``, then an offset table of ``buckets + 1`` u64 (big-endian), then the blocks.
Every key (``u:<userId>``: the user's ``UserRow``; ``e:<eventId>``: when it was applied) falls in the bucket
``blake2b(key) mod buckets``; a block is the zlib-compressed NDJSON ``[key, value]`` of one bucket's keys, about
``KEYS_PER_BLOCK`` of them, so a lookup reads 16 bytes of the table and one block of a few KB, at 1k users as at
1M. The header (offsets relative to the body, the bucket count, the state's meta table) is read once per
generation and cached: generations never change. Offsets and sizes count bytes.

A *reference* generation is a header alone, naming in ``base`` the generation object that holds its snapshot and
index: what a commit that changed no user writes (an unchanged full snapshot re-uploaded: only its time, its row
count and the last run are new, ``meta``). It costs one small create-only PUT instead of the whole snapshot down and
up again (20 s at 1M users); a reference always names an object with a body, never another reference.

A generation written before this format is a plain ``gzip(SQLite)``: ``extract`` reads it as before, and
``GenerationReader`` says it has no index (the change path then asks for one to be written: ``StateStore``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import struct
import tempfile
import threading
import weakref
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from cvcsync.engine.shadow import ShadowState
from cvcsync.errors import CvcSyncError

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore

MAGIC = b"CVCSTATE"
GZIP_MAGIC = b"\x1f\x8b"
FORMAT = 1
KEYS_PER_BLOCK = 64
HEADER_PROBE = 64 * 1024  # the first read of a generation: its header, usually whole
SETTLED_IN_HEADER = 16  # generations whose settled in-flight lists the header names
USER, EVENT = "u:", "e:"
_U32, _U64 = struct.Struct(">I"), struct.Struct(">Q")
COPY_BUFFER = 1024 * 1024
# zlib's fastest level, for the snapshot and the index blocks alike: at 1M users level 6 took 3.2 s + 2.6 s of a
# first sync's commit, level 1 1.5 s + 1.1 s, for objects 15-20% larger (55 MB + 63 MB instead of 45 MB + 57 MB).
COMPRESS_LEVEL = 1


class GenerationFormatError(CvcSyncError):
    """A generation object that is neither format this code knows: written by a newer version, or damaged."""

    code = "StateFormat"


def bucket_of(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") % buckets


# -- writing ------------------------------------------------------------------------------------------------------


# Each index line, ``[key, value]``, made by SQLite itself (the values as ``UserRow.to_json`` reads them; a field the
# state lacks is null): a million users cost one pass in SQL and one hash each, not a million Python objects.
_INDEX_LINES = """
    WITH ids AS (SELECT user_id FROM main.users UNION SELECT user_id FROM main.changes
                 UNION SELECT user_id FROM main.journal_hw)
    SELECT 'u:' || i.user_id AS key, json_array('u:' || i.user_id, json_object(
        'h', u.hash, 'r', u.record, 's', u.synced_at,
        't', c.occurred_at, 'o', c.op, 'g', c.generation, 'q', c.entry_seq,
        'w', COALESCE(j.seq, 0),
        'f', (SELECT json_group_array(json_array(f.seq, f.entry_id)) FROM main.journal_folded AS f
              WHERE f.user_id = i.user_id))) AS line
    FROM ids AS i LEFT JOIN main.users AS u USING (user_id) LEFT JOIN main.changes AS c USING (user_id)
    LEFT JOIN main.journal_hw AS j USING (user_id)
    UNION ALL
    SELECT 'e:' || event_id, json_array('e:' || event_id, applied_at) FROM main.events
"""


def _write_index(state: ShadowState, target: BinaryIO, workdir: Path) -> tuple[int, int, int]:
    """The offset table and blocks to ``target``; returns (buckets, keys, bytes written)."""
    db = state.db
    keys = int(
        db.execute(
            "SELECT (SELECT COUNT(*) FROM (SELECT user_id FROM users UNION SELECT user_id FROM changes "
            "UNION SELECT user_id FROM journal_hw)) + (SELECT COUNT(*) FROM events)"
        ).fetchone()[0]
    )
    buckets = max(1, -(-keys // KEYS_PER_BLOCK))
    # The lines sorted by bucket in a scratch database beside the state (memory stays flat at any size), then one
    # block per bucket.
    scratch = workdir / "index.sqlite"
    db.create_function("cvcsync_bucket", 1, lambda key: bucket_of(key, buckets), deterministic=True)
    db.execute("ATTACH DATABASE ? AS idx", (str(scratch),))
    try:
        db.executescript(
            "PRAGMA idx.journal_mode = OFF; PRAGMA idx.synchronous = OFF; "
            "CREATE TABLE idx.k (bucket INTEGER NOT NULL, key TEXT NOT NULL, line TEXT NOT NULL);"
        )
        db.execute(f"INSERT INTO idx.k SELECT cvcsync_bucket(key), key, line FROM ({_INDEX_LINES})")  # noqa: S608 - a constant  # nosec B608
        offsets = [0] * (buckets + 1)
        table_size = _U64.size * (buckets + 1)
        with tempfile.TemporaryFile(dir=workdir) as blocks:
            position, current = table_size, 0
            lines: list[bytes] = []

            def flush(upto: int) -> None:
                nonlocal position, lines, current
                data = zlib.compress(b"\n".join(lines), COMPRESS_LEVEL) if lines else b""
                blocks.write(data)
                for b in range(current, upto):
                    offsets[b] = position if b == current else position + len(data)
                position += len(data)
                lines, current = [], upto

            for bucket, line in db.execute("SELECT bucket, line FROM idx.k ORDER BY bucket, key"):
                if bucket != current:
                    flush(bucket)
                lines.append(line.encode("utf-8"))
            flush(buckets)
            offsets[buckets] = position
            target.write(b"".join(_U64.pack(o) for o in offsets))
            blocks.seek(0)
            shutil.copyfileobj(blocks, target, COPY_BUFFER)
        return buckets, keys, position
    finally:
        db.execute("DETACH DATABASE idx")
        scratch.unlink(missing_ok=True)


def reference(*, generation: int, base_key: str, meta: dict[str, str], settled: list[str]) -> bytes:
    """A reference generation (module docstring): ``meta`` is the whole meta table of the new generation."""
    raw = orjson.dumps({"format": FORMAT, "generation": generation, "base": base_key, "meta": meta, "settled": settled})
    return MAGIC + _U32.pack(len(raw)) + raw


def write(state: ShadowState, target: Path) -> dict[str, Any]:
    """``state`` (committed, closed or not) as a generation object at ``target``; returns its header."""
    workdir = target.parent
    packed = workdir / (target.name + ".sqlite.gz")
    with state.path.open("rb") as source, gzip.open(packed, "wb", compresslevel=COMPRESS_LEVEL) as zipped:
        shutil.copyfileobj(source, zipped, COPY_BUFFER)
    sqlite_size = packed.stat().st_size
    index = workdir / (target.name + ".index")
    with index.open("wb") as out:
        buckets, keys, _ = _write_index(state, out, workdir)
    header = {
        "format": FORMAT,
        "generation": state.generation + 1,
        "sqlite": [0, sqlite_size],
        "table": sqlite_size,
        "buckets": buckets,
        "keys": keys,
        "meta": state.all_meta(),
        # The in-flight lists recent commits settled: a change run's view needs them (``engine.journal``).
        "settled": [
            key
            for (key,) in state.db.execute(
                "SELECT key FROM settled_lists WHERE generation > ?", (state.generation + 1 - SETTLED_IN_HEADER,)
            )
        ],
    }
    raw = orjson.dumps(header)
    with target.open("wb") as out:
        out.write(MAGIC + _U32.pack(len(raw)) + raw)
        for part in (packed, index):
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER)
            part.unlink()
    return header


# -- reading the snapshot (the batch path) ----------------------------------------------------------------------


class _Limited(io.RawIOBase):
    """At most ``size`` bytes of ``stream``: the snapshot, not the index after it."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream, self._left = stream, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._stream.read(min(len(view), self._left))
        view[: len(chunk)] = chunk
        self._left -= len(chunk)
        return len(chunk)


def extract(stream: BinaryIO, target: Path) -> dict[str, Any] | None:
    """The SQLite snapshot of a generation object read from ``stream`` into ``target``; its header (None: a
    generation of the old format, plain gzip). Reads no byte of the index. A reference generation has no snapshot of
    its own: its header is returned (``base`` names the object to extract) and ``target`` is left alone."""
    head = stream.read(len(MAGIC))
    if head[:2] == GZIP_MAGIC:
        with gzip.GzipFile(fileobj=_Chain(head, stream)) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, COPY_BUFFER)
        return None
    if head != MAGIC:
        raise GenerationFormatError("a state generation in an unknown format: is a newer cvc-sync writing it?")
    (length,) = _U32.unpack(stream.read(_U32.size))
    header: dict[str, Any] = orjson.loads(stream.read(length))
    if header.get("base"):
        return header
    _, size = header["sqlite"]
    with gzip.GzipFile(fileobj=_Limited(stream, int(size))) as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, COPY_BUFFER)
    return header


class _Chain(io.RawIOBase):
    """``first`` (already read) and then the rest of ``stream``."""

    def __init__(self, first: bytes, stream: BinaryIO) -> None:
        self._first, self._stream = first, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._first:
            n = min(len(view), len(self._first))
            view[:n], self._first = self._first[:n], self._first[n:]
            return n
        chunk = self._stream.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)


# -- reading one key at a time (the change path) -----------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a reader needs of a generation to look keys up in it (None index: the old format, no index)."""

    body: int  # where the body starts in the object
    table: int
    buckets: int
    keys: int
    meta: dict[str, str]
    settled: tuple[str, ...] = ()  # in-flight lists recent generations settled
    source: str | None = None  # the object holding the body: a reference generation's base (None: this one)


_HEADERS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Header | None]] = weakref.WeakKeyDictionary()
_HEADERS_LOCK = threading.Lock()
_HEADERS_KEPT = 16  # generations per store whose header stays cached
# The offset table of a generation, read whole on its first lookup and kept: a change then costs one ranged GET per
# bucket (the block) instead of two. 125 KB at 1M users, read in one GET as the 16 bytes were; past this many
# buckets (4M users) the 16 bytes are read per bucket as before.
TABLE_KEPT_BUCKETS = 65_536
_TABLES: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], bytes]] = weakref.WeakKeyDictionary()
_TABLES_KEPT = 4  # generations per store whose offset table stays cached


class GenerationReader:
    """Point reads in one generation object: ``lookup`` some keys with two ranged GETs per bucket they fall in."""

    def __init__(self, store: ObjectStore, bucket: str, key: str) -> None:
        self.store, self.bucket, self.key = store, bucket, key

    def header(self) -> Header | None:
        """The generation's header; None when it is of the old format (no index). ``StateMissing`` when absent."""
        with _HEADERS_LOCK:
            cached = _HEADERS.setdefault(self.store, {})
            if (self.bucket, self.key) in cached:
                return cached[(self.bucket, self.key)]
        probe = self.store.read_range(self.bucket, self.key, 0, HEADER_PROBE)
        if probe is None:
            raise CvcSyncError(f"state generation {self.key} vanished while reading it", code="StateMissing")
        header: Header | None
        if probe[:2] == GZIP_MAGIC:
            header = None
        elif probe[: len(MAGIC)] == MAGIC:
            start = len(MAGIC) + _U32.size
            (length,) = _U32.unpack(probe[len(MAGIC) : start])
            raw = probe[start : start + length]
            if len(raw) < length:
                raw = self.store.read_range(self.bucket, self.key, start, start + length) or b""
            data = orjson.loads(raw)
            if data.get("base"):  # a reference: the base's body, this generation's meta
                base = GenerationReader(self.store, self.bucket, str(data["base"])).header()
                if base is None or base.source is not None:
                    raise GenerationFormatError(f"state generation {self.key} names a base without an index")
                header = replace(
                    base, meta=data["meta"], settled=tuple(data.get("settled") or ()), source=str(data["base"])
                )
            else:
                header = Header(
                    start + length,
                    int(data["table"]),
                    int(data["buckets"]),
                    int(data["keys"]),
                    data["meta"],
                    tuple(data.get("settled") or ()),
                )
        else:
            raise GenerationFormatError(f"state generation {self.key} is in an unknown format")
        with _HEADERS_LOCK:
            cached = _HEADERS.setdefault(self.store, {})
            if len(cached) >= _HEADERS_KEPT:
                cached.pop(next(iter(cached)))
            cached[(self.bucket, self.key)] = header
        return header

    @staticmethod
    def buckets(keys: Iterable[str], header: Header) -> dict[int, set[str]]:
        """``keys`` by the bucket (block) they fall in: one ``block`` read each."""
        by_bucket: dict[int, set[str]] = {}
        for key in keys:
            by_bucket.setdefault(bucket_of(key, header.buckets), set()).add(key)
        return by_bucket

    def lookup(self, keys: Iterable[str], header: Header) -> dict[str, Any]:
        """The values of those of ``keys`` the generation holds (one bucket after the other)."""
        found: dict[str, Any] = {}
        for bucket, wanted in self.buckets(keys, header).items():
            found.update(self.block(header, bucket, wanted))
        return found

    def _offsets(self, header: Header, bucket: int) -> bytes | None:
        """The 16 bytes of ``bucket``'s offsets: from the generation's table read whole once (``TABLE_KEPT_BUCKETS``),
        else read on their own. None when the object is gone."""
        key = header.source or self.key
        at = header.body + header.table
        if header.buckets > TABLE_KEPT_BUCKETS:
            return self.store.read_range(self.bucket, key, at + bucket * _U64.size, at + (bucket + 2) * _U64.size)
        with _HEADERS_LOCK:
            table = _TABLES.setdefault(self.store, {}).get((self.bucket, key))
        if table is None:  # two threads may both read it the first time: harmless, generations never change
            table = self.store.read_range(self.bucket, key, at, at + (header.buckets + 1) * _U64.size)
            if table is None or len(table) < (header.buckets + 1) * _U64.size:
                return None
            with _HEADERS_LOCK:
                cached = _TABLES.setdefault(self.store, {})
                if len(cached) >= _TABLES_KEPT:
                    cached.pop(next(iter(cached)))
                cached[(self.bucket, key)] = table
        return table[bucket * _U64.size : (bucket + 2) * _U64.size]

    def block(self, header: Header, bucket: int, wanted: set[str]) -> dict[str, Any]:
        """Those of ``wanted`` (keys of ``bucket``) the generation holds: one ranged GET for the block, after the
        generation's offset table (one GET, the first time: ``_offsets``)."""
        key = header.source or self.key
        pair = self._offsets(header, bucket)
        if pair is None or len(pair) < 2 * _U64.size:
            raise CvcSyncError(f"state generation {self.key} vanished while reading it", code="StateMissing")
        start, end = _U64.unpack(pair[:8])[0], _U64.unpack(pair[8:])[0]
        if end <= start:
            return {}
        data = self.store.read_range(
            self.bucket, key, header.body + header.table + start, header.body + header.table + end
        )
        if data is None:
            raise CvcSyncError(f"state generation {self.key} vanished while reading it", code="StateMissing")
        found: dict[str, Any] = {}
        for line in zlib.decompress(data).split(b"\n"):
            key, value = orjson.loads(line)
            if key in wanted:
                found[key] = value
        return found
