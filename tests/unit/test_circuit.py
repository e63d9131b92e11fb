from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.errors import CvcError
from cvcsync.http_api.circuit import PROBE_WAIT, ContainerCircuit


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


# -- the HTTP container's circuit: open, then half open with exactly one probe ------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock) -> ContainerCircuit:
    circuit = ContainerCircuit(threshold=2, clock=clock)
    circuit.record(error("InvalidAccessKeyId.Inactive", False))  # an auth error opens it at once
    assert circuit.retry_after(10) == 10 and not circuit.closed
    return circuit


def test_half_open_admits_exactly_one_probe_among_concurrent_requests() -> None:
    clock = Clock()
    circuit = opened(clock)
    clock.now += 10  # cooled down
    threads = 8
    barrier = threading.Barrier(threads)

    def ask(_: int) -> float | None:
        barrier.wait()  # all at once, as a burst of requests after the cool-down
        return circuit.retry_after(10)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(ask, range(threads)))
    assert answers.count(None) == 1  # one probe; the others wait for its answer
    assert all(a == PROBE_WAIT for a in answers if a is not None)
    assert circuit.retry_after(10) == PROBE_WAIT  # still out: nobody else gets through
    circuit.record(None)  # the probe passed
    assert circuit.closed and [circuit.retry_after(10) for _ in range(3)] == [None, None, None]
    circuit.record(error("InternalError", True))  # closed again with the full threshold: one failure is not two
    assert circuit.retry_after(10) is None


def test_a_failed_probe_opens_it_again_for_a_whole_cooldown() -> None:
    clock = Clock()
    circuit = opened(clock)
    clock.now += 10
    assert circuit.retry_after(10) is None  # the probe
    clock.now += 0.5
    circuit.record(error("ServiceUnavailable", True))
    assert circuit.retry_after(10) == 10 and "ServiceUnavailable" in (circuit.reason or "")
    clock.now += 9
    assert circuit.retry_after(10) == pytest.approx(1.0)


def test_an_answer_about_one_record_proves_cvc_serves_and_closes_it() -> None:
    clock = Clock()
    circuit = opened(clock)
    clock.now += 10
    assert circuit.retry_after(10) is None
    circuit.record(error("10001", False))  # CVC understood the call and refused one user
    assert circuit.closed and circuit.reason is None


def test_a_probe_that_never_answers_is_presumed_lost_after_a_cooldown() -> None:
    clock = Clock()
    circuit = opened(clock)
    clock.now += 10
    assert circuit.retry_after(10) is None  # a probe whose request then raised something else: no answer recorded
    clock.now += 9.5
    assert circuit.retry_after(10) == pytest.approx(0.5)
    clock.now += 0.5
    assert circuit.retry_after(10) is None  # the next request probes instead
    assert circuit.retry_after(10) == PROBE_WAIT


def test_a_late_answer_while_open_changes_nothing_and_looking_admits_no_probe() -> None:
    clock = Clock()
    circuit = opened(clock)
    circuit.record(None)  # a call admitted before it opened, answering late
    assert circuit.retry_after(10) == 10
    clock.now += 10
    assert [circuit.closed for _ in range(3)] == [False] * 3  # health checks look without taking the probe
    assert circuit.retry_after(10) is None


def test_the_failures_that_open_a_runs_circuit_come_from_the_setting() -> None:
    from cvcsync.adapters.objects import MemoryObjectStore
    from cvcsync.config import SyncSettings
    from cvcsync.engine.outcomes import RunReport
    from cvcsync.outputs.deadletters import MemoryDeadLetterSink
    from cvcsync.platform.context import SyncContext
    from cvcsync.platform.runtime import Invocation
    from cvcsync.runs.run import Run
    from support.inprocess_cvc import inprocess_cvc

    settings = SyncSettings.from_env({"CVCSYNC_CIRCUIT_FAILURES": "3"})
    assert settings.circuit_failures == 3 and SyncSettings.from_env({}).circuit_failures == 5
    ctx = SyncContext(
        settings=settings,
        cvc=inprocess_cvc().client,
        store=MemoryObjectStore(),
        output_bucket="b",
        sink=MemoryDeadLetterSink(),
        invocation=Invocation("local", "req", None),
    )
    run = Run(ctx, None, RunReport(run_id="r", mode="changes", source={}, started_at="t"), writer="queue")
    assert run.breaker is not None
    for _ in range(2):
        run.breaker.record(error("Throttling", retryable=True))
    assert not run.breaker.open
    run.breaker.record(error("Throttling", retryable=True))
    assert run.breaker.open
