"""Fixtures of the chaos suite: the function's environment over the emulator and moto, and the results file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cvcsync import services
from support.chaos import Results

UPLOADS = "cvc-user-uploads"
STATE = "cvc-sync-state"


@pytest.fixture(scope="session")
def chaos_results() -> Iterator[Results]:
    results = Results()
    yield results
    results.save()


@pytest.fixture
def chaos_env(emulator: Any, moto: Any) -> Iterator[dict[str, str]]:
    """Uploads in one bucket, state/reports/dead letters in another; generous gates (the runs delete on purpose)."""
    services.clear_cache()
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=UPLOADS)
    s3.create_bucket(Bucket=STATE)
    yield {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_SQS_ENDPOINT": moto.url,
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "ERROR",
        "CVCSYNC_MAX_DELETES": "1000000",
        "CVCSYNC_MAX_DELETE_PERCENT": "50",
        "CVCSYNC_REDRIVE_BACKOFF_SECONDS": "0.001",
        "CVCSYNC_FANOUT": "off",  # one invocation applies the whole run (fan-out has its own tests)
    }
    services.clear_cache()
