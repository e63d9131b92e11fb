"""moto for integration tests: ``cvcsync_dev.emulator.moto`` (shared with ``make demo``)."""

from __future__ import annotations

from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, REGION, MotoServer, MotoStartError, start_moto

__all__ = ["DUMMY_CREDENTIALS", "REGION", "MotoServer", "MotoStartError", "start_moto"]
