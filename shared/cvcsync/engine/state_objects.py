"""Where the objects of one shadow state live (``engine.state``): the keys its generations, their manifests and
the in-flight lists go under, named in one place for the parts of the state that read and write them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore

IN_FLIGHT_DIR = "in-flight/"
MAX_COMMIT_ATTEMPTS = 8  # tries of a create-only write that met a concurrent writer (a generation, the manifest)


class StateObjects:
    """The objects of a state under ``prefix`` in a bucket of an object store."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def _key(self, generation: int) -> str:
        return f"{self.prefix}gen-{generation:08d}.sqlite.gz"

    def _manifest_copy_key(self, generation: int) -> str:
        return f"{self.prefix}gen-{generation:08d}.manifest.json"

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}manifest.json"

    def in_flight_key(self, run_id: str) -> str:
        return f"{self.prefix}{IN_FLIGHT_DIR}{run_id}.ndjson.gz"
