"""What the emulator records about the calls it served, for tests to read through the admin API."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson


class Journal:
    """Off by default. When on, every CreateUser/DeleteUser that passed the gateway is recorded with the user ids it
    named and how it ended (ok, refused, throttled, error, dropped): an oracle independent of the client, so a test
    can tell which users' last write failed and must therefore be dead-lettered."""

    WRITES = ("CreateUser", "DeleteUser")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self._entries: list[dict[str, Any]] = []

    def switch(self, enabled: bool) -> None:
        with self._lock:
            self.enabled = enabled
            self._entries = []

    def record(self, action: str, params: Mapping[str, str], result: str) -> None:
        if not self.enabled or action not in self.WRITES:
            return
        try:
            items = orjson.loads(params.get("UserInfo") or "[]")
        except orjson.JSONDecodeError:
            items = []
        ids = [i.get("userId") for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        with self._lock:
            self._entries.append({"seq": len(self._entries), "action": action, "userIds": ids, "result": result})

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)


class Stats:
    """Counters for the admin API: calls per action, batch sizes applied, faults injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._calls: Counter[str] = Counter()
            self._create_sizes: list[int] = []
            self._delete_sizes: list[int] = []
            self._faults: Counter[str] = Counter({"throttled": 0, "errors": 0, "dropped": 0})

    def call(self, action: str) -> None:
        with self._lock:
            self._calls[action] += 1

    def batch(self, action: str, size: int) -> None:
        with self._lock:
            (self._create_sizes if action == "CreateUser" else self._delete_sizes).append(size)

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self, users: int) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "createBatchSizes": list(self._create_sizes),
                "deleteBatchSizes": list(self._delete_sizes),
                "users": users,
                "faults": dict(self._faults),
            }
