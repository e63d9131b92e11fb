"""The state's ``manifest.json`` (``engine.state``): which generation is the newest, its counts and its last commit,
for people and tools (the heartbeat reads it). Readers of the state trust the generation objects themselves; the
manifest only has to never go backwards (``_publish_manifest``)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.engine.state_objects import MAX_COMMIT_ATTEMPTS, StateObjects

log = logging.getLogger("cvcsync.engine.state")  # the state's log lines, wherever in it they are written


class Manifests(StateObjects):
    """Reading and publishing a state's manifest (``StateStore`` is one)."""

    def read_manifest(self) -> dict[str, Any]:
        raw = self.store.get_bytes(self.bucket, self.manifest_key)
        try:
            manifest = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def _manifest(self, generation: int, users: int, uncertain: int, run_id: str, committed_at: str) -> bytes:
        return orjson.dumps(
            {
                "generation": generation,
                "key": self._key(generation),
                "users": users - uncertain,  # users whose content the state knows CVC holds
                "uncertain": uncertain,  # users CVC may or may not hold (an interrupted or failed write)
                "runId": run_id,
                "committedAt": committed_at,
            }
        )

    def _published_generation(self) -> int:
        generation = self.read_manifest().get("generation")
        return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0

    def _publish_manifest(self, generation: int, body: bytes) -> None:
        """Point ``manifest.json`` at ``generation`` unless a newer one is published: it never goes backwards.

        The object store offers create-only writes but no compare-and-swap on an existing key, so: each generation's
        manifest is first kept beside it, create-only (``gen-N.manifest.json``); the shared one is re-read and only
        written when older; and after writing, a newer generation that committed meanwhile (whose own write ours
        may just have overwritten) is published again from its copy. A committer writes its copy before it re-reads,
        so whichever of two racing committers writes last sees the other's copy and leaves the newer one. A reader
        may see an older manifest for the moment between two of these writes, never after they settle."""
        self.store.put_bytes(
            self.bucket, self._manifest_copy_key(generation), body, content_type="application/json", if_absent=True
        )
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if self._published_generation() >= generation:
                return  # a newer commit published itself: its committer answers for it
            self.store.put_bytes(self.bucket, self.manifest_key, body, content_type="application/json")
            newer = self._newest_copy_after(generation)
            if newer is None:
                return
            generation, body = newer
        log.warning("the state manifest kept moving while it was published", extra={"generation": generation})

    def touched_manifest(
        self,
        manifest: dict[str, Any],
        generation: int,
        *,
        run_id: str,
        users: int,
        uncertain: int,
        meta: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The manifest after a journal commit on ``generation`` (``manifest``: as read a moment ago; None: leave it,
        a newer generation is published and its counts are exact): it says the commit is the newest (``journal``:
        its run, time and the meta it set, which checkouts fold in) and moves its counts by ``users`` and
        ``uncertain``. Counts are kept exactly by generations; between two, concurrent journal commits may each miss
        the other's step. ``put_manifest`` writes it; ``republish_after`` keeps it from going backwards."""
        published = manifest.get("generation", 0)
        if isinstance(published, int) and published > generation:
            return None
        found = manifest.get("journal")
        journal: dict[str, Any] = found if isinstance(found, dict) else {}
        committed_at = clock.report_time()
        return {
            **manifest,
            "generation": generation,
            "key": self._key(generation) if generation else None,
            "users": max(0, int(manifest.get("users") or 0) + users),
            "uncertain": max(0, int(manifest.get("uncertain") or 0) + uncertain),
            "runId": run_id,
            "committedAt": committed_at,
            "journal": {
                "runId": run_id,
                "committedAt": committed_at,
                "meta": {**(journal.get("meta") or {}), **(meta or {})},
            },
        }

    def put_manifest(self, manifest: dict[str, Any]) -> bool:
        return self.store.put_bytes(
            self.bucket, self.manifest_key, orjson.dumps(manifest), content_type="application/json"
        )

    def republish_after(self, generation: int) -> None:
        """A manifest of ``generation`` was written: a newer generation published meanwhile is published again."""
        newer = self._newest_copy_after(generation)
        if newer is not None:
            self._publish_manifest(*newer)

    def _newest_copy_after(self, generation: int) -> tuple[int, bytes] | None:
        """The newest generation after ``generation`` whose manifest copy exists (a generation without one is
        still being committed, and its committer publishes it), with that copy."""
        newest = generation
        while self.store.head(self.bucket, self._key(newest + 1)) is not None:
            newest += 1
        for candidate in range(newest, generation, -1):
            body = self.store.get_bytes(self.bucket, self._manifest_copy_key(candidate))
            if body is not None:
                return candidate, body
        return None
