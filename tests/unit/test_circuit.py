from __future__ import annotations

import logging

import pytest

from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.errors import CvcError


def error(code: str, retryable: bool) -> CvcError:
    return CvcError("x", action="CreateUser", code=code, retryable=retryable)


def test_an_auth_error_opens_at_once_with_one_alert_line(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(threshold=5)
    caplog.set_level(logging.ERROR)
    breaker.record(error("InvalidAccessKeyId.NotFound", False))
    breaker.record(error("InvalidAccessKeyId.NotFound", False))
    assert breaker.open and "InvalidAccessKeyId.NotFound" in (breaker.reason or "")
    assert [r.code for r in caplog.records] == ["CircuitOpen"]  # type: ignore[attr-defined]


def test_consecutive_retryable_failures_open_it() -> None:
    breaker = CircuitBreaker(threshold=3)
    for _ in range(2):
        breaker.record(error("ServiceUnavailable", True))
    assert not breaker.open
    breaker.record(error("Throttling", True))
    assert breaker.open


def test_a_success_resets_the_count_and_business_refusals_do_not_count() -> None:
    breaker = CircuitBreaker(threshold=2)
    breaker.record(error("InternalError", True))
    breaker.record(None)
    breaker.record(error("InternalError", True))
    for _ in range(10):
        breaker.record(error("10001", False))  # one bad record is not a sick service
    assert not breaker.open
