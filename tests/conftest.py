"""Shared fixtures: one emulator process for the session, reset to a clean state before each test using it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.emulator import EmulatorProcess, start_emulator
from support.moto import DUMMY_CREDENTIALS, MotoServer, start_moto


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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode as a real subprocess, for the whole session. Dummy AWS credentials are in the
    environment meanwhile, so even a client built without explicit ones can never sign for a real account."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in DUMMY_CREDENTIALS.items():
            patch.setenv(name, value)
        server = start_moto()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server, reset first: no buckets, objects or queues."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def function_env(emulator: EmulatorProcess, moto: MotoServer) -> Iterator[dict[str, str]]:
    """The environment a function sees here: CVC is the emulator, S3 and SQS are moto; clients built afresh."""
    from cvcsync.platform import services

    services.clear_cache()
    yield {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_SQS_ENDPOINT": moto.url,
    }
    services.clear_cache()
