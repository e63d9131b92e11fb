"""A local emulator of the CVC user API (version 2019-10-30): gateway checks, the five user actions, faults, limits.

It stands in for the real service in tests, demos and benchmarks; ``docs/emulator.md`` tells what it does and where
it is (and is not) faithful. ``EmulatorApp`` is the WSGI application; ``EmulatorServer`` and ``main`` serve it with
waitress, which is imported only by ``server``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvcsync_dev.emulator.app import EmulatorApp
from cvcsync_dev.emulator.codes import (
    ERROR_BATCH_TOO_LARGE,
    ERROR_CAPACITY_EXCEEDED,
    ERROR_COUNT_MISMATCH,
    ERROR_INVALID_USER,
    ERROR_USER_NOT_FOUND,
)
from cvcsync_dev.emulator.faults import FaultDecision, FaultInjector, FaultKind, FaultSettings
from cvcsync_dev.emulator.keys import AccessKey, parse_access_key, parse_access_keys
from cvcsync_dev.emulator.limits import FlowControl, LimitSettings
from cvcsync_dev.emulator.nonces import NonceCache
from cvcsync_dev.emulator.store import CapacityExceeded, MemoryStore, SqliteStore, Store, User

if TYPE_CHECKING:
    from cvcsync_dev.emulator.server import EmulatorServer, main

__all__ = [
    "ERROR_BATCH_TOO_LARGE",
    "ERROR_CAPACITY_EXCEEDED",
    "ERROR_COUNT_MISMATCH",
    "ERROR_INVALID_USER",
    "ERROR_USER_NOT_FOUND",
    "AccessKey",
    "CapacityExceeded",
    "EmulatorApp",
    "EmulatorServer",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultSettings",
    "FlowControl",
    "LimitSettings",
    "MemoryStore",
    "NonceCache",
    "SqliteStore",
    "Store",
    "User",
    "main",
    "parse_access_key",
    "parse_access_keys",
]


def __getattr__(name: str) -> object:
    # The server (and with it waitress) loads only when asked for.
    if name in ("EmulatorServer", "main"):
        from cvcsync_dev.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
