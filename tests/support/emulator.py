"""The emulator for integration tests: ``cvcsync_dev.emulator.process`` with the tests' keys."""

from __future__ import annotations

from collections.abc import Mapping

from cvcsync_dev.emulator.process import READY_PREFIX, EmulatorProcess, EmulatorStartError
from cvcsync_dev.emulator.process import start_emulator as _start_emulator

TEST_KEY_ID = "testkey"
TEST_KEY_SECRET = "testsecret-do-not-use"
STS_KEY_ID = "STS.testkey"
STS_KEY_SECRET = "stssecret-do-not-use"
STS_TOKEN = "sts-token+with/odd=chars do-not-use"
TEST_KEYS = (f"{TEST_KEY_ID}:{TEST_KEY_SECRET}", f"{STS_KEY_ID}:{STS_KEY_SECRET}:{STS_TOKEN}")

__all__ = ["READY_PREFIX", "TEST_KEYS", "EmulatorProcess", "EmulatorStartError", "start_emulator"]


def start_emulator(
    *args: str,
    admin: bool = True,
    keys: tuple[str, ...] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> EmulatorProcess:
    """The emulator with the test keys unless ``keys`` says otherwise (``()`` passes none)."""
    return _start_emulator(*args, admin=admin, keys=TEST_KEYS if keys is None else keys, env=env, timeout=timeout)
