"""Shared fixtures: one emulator process for the session, reset to a clean state before each test using it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.emulator import EmulatorProcess, start_emulator


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    """The emulator as a real subprocess (admin API on, the test keys), for the whole session."""
    process = start_emulator()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def emulator(emulator_process: EmulatorProcess) -> EmulatorProcess:
    """The session's emulator, reset first: no users, nonces or stats, faults off, keys and capacity as started."""
    emulator_process.reset()
    return emulator_process
