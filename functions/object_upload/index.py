"""Object upload (OSS trigger on FC, S3 notification on Lambda): an HR export landed; sync it into CVC."""

from __future__ import annotations

from typing import Any

from cvcsync.platform.cold_start import cold_imports

with cold_imports():
    from cvcsync.platform.triggers.upload import handle


def handler(event: Any, context: Any) -> Any:
    return handle(event, context)
