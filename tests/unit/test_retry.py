from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvcsync.adapters.retry import RetryContext, RetryPolicy, cut_short, is_retryable_code, parse_retry_after
from cvcsync.budget import TimeBudget
from cvcsync.errors import CvcError


def _error(code: str = "Throttling", status: int = 400, retryable: bool = True, retry_after: float | None = None):
    return CvcError(
        "x", action="CreateUser", code=code, http_status=status, retryable=retryable, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("Throttling", 400, True),
        ("Throttling.User", 400, True),
        ("Throttling.Api", 400, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("HTTP502", 502, True),
        ("SignatureDoesNotMatch", 400, False),
        ("InvalidAccessKeyId.NotFound", 404, False),
        ("Forbidden.RAM", 403, False),
        ("MissingParameter", 400, False),
    ],
)
def test_retryable_codes(code: str, status: int, expected: bool) -> None:
    assert is_retryable_code(code, status) is expected


def test_retry_after_is_milliseconds_and_capped() -> None:
    assert parse_retry_after("1500") == 1.5
    assert parse_retry_after("99999999") == 20.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") is None


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=5.0, rng=random.Random(seed))
    delay = policy.backoff(attempt)
    assert 0.0 <= delay <= min(5.0, 0.1 * 2 ** (attempt - 1))


def test_attempts_are_bounded() -> None:
    ctx = RetryContext(RetryPolicy(max_attempts=3, rng=random.Random(1)))
    delays = []
    for attempt in range(1, 5):
        ctx.attempts = attempt
        delays.append(ctx.next_delay(_error()))
    assert [d is not None for d in delays] == [True, True, False, False]


def test_permanent_errors_are_never_retried() -> None:
    ctx = RetryContext(RetryPolicy(max_attempts=5), attempts=1)
    assert ctx.next_delay(_error("SignatureDoesNotMatch", retryable=False)) is None


def test_the_budget_stops_a_wait_that_would_outlast_it() -> None:
    now = [100.0]
    ctx = RetryContext(RetryPolicy(max_attempts=5), TimeBudget(101.0, lambda: now[0]), attempts=1)
    assert ctx.next_delay(_error(retry_after=0.5)) == 0.5
    assert ctx.next_delay(_error(retry_after=1.0)) is None  # it would end exactly when the budget does
    assert ctx.next_delay(_error(retry_after=2.0)) is None
    now[0] = 100.9
    assert ctx.next_delay(_error(retry_after=0.5)) is None  # what was fine a moment ago no longer fits


def test_an_error_stopped_by_time_is_cut_short_not_failed() -> None:
    policy = RetryPolicy(max_attempts=3)
    timed_out = _error("Timeout", retryable=True)
    timed_out.attempts = 1  # the clipped read timed out and no wait fitted: attempts were left
    exhausted = _error("Throttling", retryable=True)
    exhausted.attempts = 3
    refused = _error("MissingParameter", retryable=False)
    refused.attempts = 1
    out_of_time = CvcError("x", action="CreateUser", code="DeadlineExceeded", retryable=True)
    assert cut_short(timed_out, policy) and cut_short(out_of_time, policy)
    assert not cut_short(exhausted, policy) and not cut_short(refused, policy)


def test_server_retry_after_wins_over_backoff() -> None:
    ctx = RetryContext(RetryPolicy(max_attempts=5, base_delay=10, rng=random.Random(3)), attempts=1)
    assert ctx.next_delay(_error(retry_after=0.25)) == 0.25
