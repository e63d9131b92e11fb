"""Scheduled tasks (FC timer trigger; EventBridge schedule on Lambda): redrive, reconcile or heartbeat."""

from __future__ import annotations

from typing import Any

from cvcsync.platform.cold_start import cold_imports

with cold_imports():
    from cvcsync.platform.triggers.schedule import handle


def handler(event: Any, context: Any) -> Any:
    return handle(event, context)
