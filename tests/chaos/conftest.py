"""Fixtures of the chaos suite: the function's environment over the emulator and moto, and the results file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.chaos import Results

UPLOADS = "cvc-user-uploads"
STATE = "cvc-sync-state"


@pytest.fixture(scope="session")
def chaos_results() -> Iterator[Results]:
    results = Results()
    yield results
    results.save()


@pytest.fixture
def chaos_env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    """The function's environment over the emulator and moto (tests/conftest.py), with uploads in one bucket and
    state, reports and dead letters in another; generous gates (the runs delete on purpose)."""
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=UPLOADS)
    s3.create_bucket(Bucket=STATE)
    return {
        **function_env,
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "ERROR",
        "CVCSYNC_MAX_DELETES": "1000000",
        "CVCSYNC_MAX_DELETE_PERCENT": "50",
        "CVCSYNC_REDRIVE_BACKOFF_SECONDS": "0.001",
        "CVCSYNC_FANOUT": "off",  # one invocation applies the whole run (fan-out has its own tests)
    }
