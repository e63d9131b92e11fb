"""The batch path's in-flight lists (``engine.state``): before its first CVC write a run puts the users it is about
to touch under ``in-flight/``, so that every checkout until its commit holds them uncertain. A list is written and
read a chunk at a time: a first sync of a million users names a million."""

from __future__ import annotations

import gzip
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import orjson

from cvcsync.engine.state_objects import IN_FLIGHT_DIR, StateObjects

IN_FLIGHT_CHUNK = 5000  # in-flight entries read or written at once (memory flat at any list size)


class InFlightLists(StateObjects):
    """The in-flight lists of a state (``StateStore`` is one)."""

    def mark_in_flight(self, run_id: str, entries: Iterable[tuple[str, str | None]]) -> int:
        """Write the run's in-flight list, (user_id, record JSON or None) per user, before its first CVC write."""
        count = 0
        pending = iter(entries)
        with tempfile.TemporaryDirectory(prefix="cvcsync-inflight-") as tmp:
            path = Path(tmp) / "in-flight.ndjson.gz"
            with gzip.open(path, "wb", compresslevel=1) as target:
                # A chunk of lines per write: a million single-line writes to the gzip stream cost a second more.
                while chunk := list(islice(pending, IN_FLIGHT_CHUNK)):
                    target.write(b"".join([orjson.dumps(entry) + b"\n" for entry in chunk]))
                    count += len(chunk)
            if count:
                self.store.put_file(self.bucket, self.in_flight_key(run_id), path)
        return count

    def in_flight_lists(self) -> list[str]:
        return sorted(self.store.list_keys(self.bucket, self.prefix + IN_FLIGHT_DIR))

    def read_in_flight(self, key: str, workdir: Path) -> list[tuple[str, str | None]] | None:
        """The (user_id, record or None) of a list, whole (for lists known to be small); None when a commit removed
        it meanwhile."""
        chunks = self.in_flight_chunks(key, workdir)
        return None if chunks is None else [entry for chunk in chunks for entry in chunk]

    def in_flight_chunks(self, key: str, workdir: Path) -> Iterator[list[tuple[str, str | None]]] | None:
        """The entries of a list in chunks of ``IN_FLIGHT_CHUNK``, read from its file as they are used: a first sync
        of a million users folds its own list at its commit, which whole would hold ~500 MB of Python tuples.
        None when a commit removed the list meanwhile."""
        packed = workdir / f"in-flight-{uuid.uuid4().hex}.ndjson.gz"
        if not self.store.download_file(self.bucket, key, packed):
            return None

        def chunks() -> Iterator[list[tuple[str, str | None]]]:
            try:
                with gzip.open(packed, "rb") as lines:
                    while part := list(islice(lines, IN_FLIGHT_CHUNK)):
                        yield [(str(uid), record) for uid, record in map(orjson.loads, part)]
            finally:
                packed.unlink(missing_ok=True)

        return chunks()
