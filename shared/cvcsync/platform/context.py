"""What a run talks to (``SyncContext``) and how it hands work on (``Dispatcher``).

Kept apart from ``runs.export`` so that a path that only applies changes (the queue function) does not import the
upload machinery (readers, column mapping, gates) on a cold start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import SyncSettings
from cvcsync.engine.state import StateStore
from cvcsync.platform.runtime import Invocation

if TYPE_CHECKING:
    from cvcsync.adapters.objects import ObjectStore
    from cvcsync.inputs.columns import ColumnMap
    from cvcsync.outputs.deadletters import DeadLetterSink


class Dispatcher(Protocol):
    """Hands events to new invocations of this function (async invoke, a queue, or threads locally)."""

    def dispatch(self, events: list[dict[str, Any]]) -> None: ...


@dataclass
class SyncContext:
    """Everything a run talks to; built lazily from the environment by the functions, explicitly by tests."""

    settings: SyncSettings
    cvc: CvcClient
    store: ObjectStore
    output_bucket: str
    sink: DeadLetterSink | None
    invocation: Invocation
    dispatcher: Dispatcher | None = None
    on_progress: Callable[[int], None] | None = None
    on_apply_start: Callable[[int], None] | None = None
    state_store: StateStore | None = None
    calls_baseline: Counter[str] = field(default_factory=Counter)  # the client outlives runs: count only ours
    column_map: ColumnMap | None = None  # None: from the environment, when an upload is read

    @property
    def state(self) -> StateStore:
        if self.state_store is None:
            self.state_store = StateStore(self.store, self.output_bucket, self.settings.key("state") + "/")
        return self.state_store

    def put_json(self, key: str, value: Any) -> None:
        self.store.put_bytes(self.output_bucket, key, orjson.dumps(value), content_type="application/json")
