"""The adaptive concurrency limit, driven attempt by attempt with a fake clock: how it rises, falls, pauses, holds
its bound and remembers where the service throttled."""

from __future__ import annotations

import threading
import time as real_time
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import RetryPolicy, is_retryable_code, is_throttling
from cvcsync.budget import TimeBudget
from cvcsync.config import CvcSettings
from cvcsync.engine.concurrency import BACKOFF, PROBE_SLOWDOWN, ConcurrencyController, combine
from cvcsync.errors import CvcBusinessError, CvcError, CvcGatewayError, CvcTransportError, DeadlineExceeded
from cvcsync_dev.emulator import EmulatorApp, LimitSettings
from support.inprocess_cvc import ENDPOINT, KEY, WsgiAdapter

FAST = 0.05  # seconds: the latency of an ordinary answer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def controller(start: int = 4, maximum: int = 32, time: FakeTime | None = None) -> ConcurrencyController:
    time = time or FakeTime()
    return ConcurrencyController(start, maximum, clock=time.clock, sleep=time.sleep)


def gateway(code: str, status: int, retry_after: float | None = None) -> CvcError:
    return CvcGatewayError(
        "refused", action="CreateUser", code=code, http_status=status, retryable=True, retry_after=retry_after
    )


THROTTLED = gateway("Throttling.User", 400)


def attempt(limiter: ConcurrencyController, error: CvcError | None = None, latency: float = FAST) -> None:
    """One attempt on this thread: take a place, end with ``error`` (None: answered in ``latency``)."""
    assert limiter.before_attempt(TimeBudget.unlimited())
    limiter.after_attempt(latency, error)


def answers_until(limiter: ConcurrencyController, level: int, most: int = 10_000) -> int:
    """How many ordinary answers it takes the limit to reach ``level``."""
    for n in range(1, most + 1):
        attempt(limiter)
        if limiter.limit >= level:
            return n
    raise AssertionError(f"the limit stayed at {limiter.limit}, below {level}")


def test_it_starts_at_the_setting_within_its_bounds() -> None:
    assert controller(4, 32).limit == 4
    assert controller(50, 32).limit == 32
    assert controller(0, 32).limit == 1
    with pytest.raises(ValueError, match="at least 1"):
        controller(4, 0)


def test_answers_in_good_time_raise_the_limit_by_about_one_per_round() -> None:
    limiter = controller(4)
    assert answers_until(limiter, 5) == 5  # 1/4 + 1/4.25 + ... : a round of four answers and a bit
    assert answers_until(limiter, 6) in (5, 6)
    assert limiter.report().high == 6 and limiter.report().throttled == 0


def test_the_limit_never_passes_its_maximum() -> None:
    limiter = controller(4, maximum=6)
    for _ in range(500):
        attempt(limiter)
    assert limiter.limit == 6 and limiter.report().high == 6


def test_slow_answers_hold_the_limit() -> None:
    limiter = controller(4)
    for _ in range(3):
        attempt(limiter, latency=FAST)
    held = limiter.limit, limiter.report()
    for _ in range(40):
        attempt(limiter, latency=FAST * 3)  # three times the fastest: more calls would only queue
    assert limiter.limit == held[0] == 4
    attempt(limiter, latency=FAST * 1.5)  # within the tolerance again
    assert limiter.limit == 4 and limiter.report().attempts == held[1].attempts + 41


@pytest.mark.parametrize(
    "error",
    [
        gateway("Throttling", 400),
        gateway("Throttling.User", 400),
        gateway("Throttling.Api", 400),
        gateway("ServiceUnavailable", 503),
        gateway("HTTP429", 429),
        gateway("InternalError", 500),
        gateway("HTTP502", 502),
    ],
)
def test_throttling_and_server_errors_cut_the_limit_multiplicatively(error: CvcError) -> None:
    limiter = controller(10)
    attempt(limiter, error)
    assert limiter.limit == int(10 * BACKOFF) == 7
    assert limiter.report().backoffs == 1


def test_only_throttling_counts_as_throttled() -> None:
    limiter = controller(10)
    attempt(limiter, gateway("Throttling.User", 400))
    attempt(limiter, gateway("InternalError", 500))
    report = limiter.report()
    assert (report.throttled, report.server_errors, report.attempts) == (1, 1, 2)
    assert report.throttled_share == 0.5


@pytest.mark.parametrize(
    "error",
    [
        CvcTransportError("lost", action="CreateUser", code="ConnectionError", retryable=True),
        CvcTransportError("slow", action="CreateUser", code="Timeout", retryable=True),
        DeadlineExceeded("no time", action="CreateUser", code="DeadlineExceeded", retryable=True),
    ],
)
def test_transport_failures_and_the_deadline_move_nothing(error: CvcError) -> None:
    limiter = controller(10)
    attempt(limiter, error)
    assert limiter.limit == 10 and limiter.report().backoffs == 0


def test_a_business_refusal_is_an_answer() -> None:
    limiter = controller(4)
    refused = CvcBusinessError("bad user", action="CreateUser", code="10001", http_status=200)
    for _ in range(5):
        attempt(limiter, refused)
    assert limiter.limit == 5 and limiter.report().throttled == 0


def test_one_cut_per_round_attempts_started_before_a_cut_do_not_cut_again() -> None:
    limiter = controller(10)
    started, go_on, ended = threading.Event(), threading.Event(), threading.Event()

    def under_the_old_limit() -> None:
        assert limiter.before_attempt(TimeBudget.unlimited())
        started.set()
        go_on.wait(5)
        limiter.after_attempt(FAST, THROTTLED)  # answered after the cut, but sent before it
        ended.set()

    worker = threading.Thread(target=under_the_old_limit)
    worker.start()
    assert started.wait(5)
    attempt(limiter, THROTTLED)  # 10 -> 7
    go_on.set()
    assert ended.wait(5)
    worker.join(5)
    assert limiter.limit == 7 and limiter.report().backoffs == 1
    attempt(limiter, THROTTLED)  # sent after the cut: the new limit is too high as well
    assert limiter.limit == int(7 * BACKOFF) == 4
    assert limiter.report().throttled == 3 and limiter.report().backoffs == 2


def test_a_maximum_equal_to_the_start_pins_the_limit() -> None:
    time = FakeTime()
    limiter = controller(4, maximum=4, time=time)
    for _ in range(50):
        attempt(limiter)
    attempt(limiter, gateway("Throttling", 400, retry_after=0.5))
    attempt(limiter, gateway("InternalError", 500))
    report = limiter.report()
    assert (report.low, report.high, report.final, report.backoffs) == (4, 4, 4, 0)
    assert (report.throttled, report.server_errors, report.pauses) == (1, 1, 1)  # counted, and the pause holds
    assert limiter.before_attempt(TimeBudget.unlimited()) and time.slept == [pytest.approx(0.5)]


def test_it_never_goes_below_one() -> None:
    limiter = controller(2)
    for _ in range(10):
        attempt(limiter, THROTTLED)
    assert limiter.limit == 1 and limiter.report().low == 1


def test_the_way_back_to_a_throttled_level_is_quick_and_the_probe_past_it_slow() -> None:
    limiter = controller(9)
    attempt(limiter, THROTTLED)  # the service refused the 9th call in flight: 9 -> 6.3
    assert limiter.limit == 6
    back = answers_until(limiter, 8)
    assert back <= 14  # about one per round: 6 + 7 answers
    probe = answers_until(limiter, 9)
    assert probe >= 8 * PROBE_SLOWDOWN * 0.9  # the step to the throttled level takes PROBE_SLOWDOWN rounds
    # Passing it (the service's limit moved) forgets it: the way up is quick again after one more slow step.
    answers_until(limiter, 10)
    assert answers_until(limiter, 11) <= 11


def test_a_probe_costs_about_one_throttled_call_in_many() -> None:
    """At a service limit of 8 calls, the run keeps 8 in flight nearly all the time and is throttled rarely."""
    limiter = controller(4)
    for _ in range(3000):
        attempt(limiter, THROTTLED if limiter.limit > 8 else None)
    report = limiter.report()
    assert report.throttled_share <= 0.02
    assert report.settled >= 0.9 * 8 and report.high == 9


def test_retry_after_pauses_every_worker_not_only_the_one_that_saw_it() -> None:
    time = FakeTime()
    limiter = controller(10, time=time)
    attempt(limiter, gateway("Throttling", 400, retry_after=0.5))
    assert limiter.report().pauses == 1
    time.now += 0.1
    assert limiter.before_attempt(TimeBudget.unlimited())  # another worker's next attempt waits the rest
    assert time.slept == [pytest.approx(0.4)]
    limiter.after_attempt(FAST, None)
    assert limiter.before_attempt(TimeBudget.unlimited())  # the pause is over: no more waiting
    assert len(time.slept) == 1


def test_a_pause_longer_than_the_budget_is_not_waited() -> None:
    time = FakeTime()
    limiter = controller(10, time=time)
    attempt(limiter, gateway("Throttling", 400, retry_after=2.0))
    assert not limiter.before_attempt(TimeBudget(time.now + 1.0, time.clock))
    assert time.slept == []
    for _ in range(limiter.limit):  # no place was taken by the refused attempt: all of them are free
        assert limiter.before_attempt(TimeBudget(time.now + 5.0, time.clock))


def test_an_attempt_waits_for_a_place_under_the_limit() -> None:
    limiter = controller(2)
    budget = TimeBudget.unlimited()
    assert limiter.before_attempt(budget) and limiter.before_attempt(budget)
    admitted = threading.Event()

    def third() -> None:
        limiter.before_attempt(budget)
        admitted.set()

    waiting = threading.Thread(target=third)
    waiting.start()
    assert not admitted.wait(0.2)  # two under way, limit two
    limiter.after_attempt(FAST, None)
    assert admitted.wait(5)
    waiting.join(5)


def test_waiting_for_a_place_stops_when_the_budget_ends() -> None:
    limiter = controller(1)
    assert limiter.before_attempt(TimeBudget.unlimited())
    assert not limiter.before_attempt(TimeBudget.of(0.05))


def test_the_report_says_how_the_limit_moved() -> None:
    limiter = controller(4, maximum=8)
    for _ in range(200):
        attempt(limiter)
    attempt(limiter, gateway("Throttling", 400, retry_after=0.01))
    report = limiter.report()
    assert (report.start, report.maximum, report.low, report.high, report.final) == (4, 8, 4, 8, 5)
    assert 4 < report.mean < report.settled <= 8
    assert report.to_dict() == {
        "start": 4,
        "max": 8,
        "low": 4,
        "high": 8,
        "final": 5,
        "mean": round(report.mean, 2),
        "settled": round(report.settled, 2),
        "attempts": 201,
        "throttled": 1,
        "serverErrors": 0,
        "backoffs": 1,
        "pauses": 1,
    }


def test_an_attempt_ended_by_an_unexpected_exception_frees_its_place_and_moves_nothing() -> None:
    limiter = controller(1)
    assert limiter.before_attempt(TimeBudget.unlimited())
    limiter.after_attempt(None, None)
    assert limiter.before_attempt(TimeBudget.of(0.05))  # the place is free again
    assert limiter.limit == 1 and limiter.report().attempts == 0


def test_a_run_continued_in_another_invocation_reports_over_both() -> None:
    first = controller(4, maximum=8)
    for _ in range(100):
        attempt(first)
    attempt(first, THROTTLED)
    second = controller(4, maximum=8)
    for _ in range(20):
        attempt(second)
    one, two = first.report(), second.report()
    both = combine(combine(None, one), two)
    assert both["start"] == 4 and both["low"] == 4 and both["high"] == 8 and both["final"] == two.final
    assert both["attempts"] == 121 and both["throttled"] == 1 and both["backoffs"] == 1
    assert both["mean"] == round((one.mean * 101 + two.mean * 20) / 121, 2)
    assert both["settled"] == round(two.settled, 2)
    assert combine(None, two) == two.to_dict() and combine({}, two) == two.to_dict()


def test_a_429_is_throttling_and_worth_a_retry_whatever_its_code() -> None:
    assert is_throttling("HTTP429", 429) and is_retryable_code("HTTP429", 429)
    assert is_throttling("ServiceUnavailableTemporary", 503) and not is_throttling("InternalError", 500)


# --- through the client, against the emulator in this process (no socket) -----------------------------------------


def paced_client(time: FakeTime, app: EmulatorApp, attempts: int) -> CvcClient:
    session = requests.Session()
    session.mount(ENDPOINT, WsgiAdapter(app))
    return CvcClient(
        Credentials(KEY.id, KEY.secret),
        settings=CvcSettings(endpoint=ENDPOINT),
        session=session,
        retry_policy=RetryPolicy(max_attempts=attempts),
        sleep=time.sleep,
        monotonic=time.clock,
        now=lambda: datetime.fromtimestamp(time.now, timezone.utc),
    )


def test_the_pause_one_call_met_holds_back_the_next_call_of_another_worker() -> None:
    time = FakeTime()
    time.now = real_time.time()  # the emulator checks the signed Timestamp against its own (this) clock
    app = EmulatorApp([KEY], clock=time.clock, sleep=time.sleep, limits=LimitSettings(max_qps=1))
    client = paced_client(time, app, attempts=1)
    limiter = controller(4, time=time)
    user = '{"userId":"u-1","userName":"n","groupId":"g","groupName":"G"}'
    client.create_batch_json([user], pacer=limiter)  # the one call this second may make
    with pytest.raises(CvcGatewayError) as throttled:  # the next is throttled: the next token comes in 1 s
        client.create_batch_json([user], pacer=limiter)
    assert (throttled.value.code, throttled.value.retry_after) == ("Throttling.User", 1.0)
    assert time.slept == []  # one attempt allowed: the worker that saw it gave up at once
    answer = client.create_batch_json([user], pacer=limiter)  # another worker: waits out the pause, then passes
    assert time.slept == [pytest.approx(1.0)] and answer.attempts == 1
    report = limiter.report()
    assert (report.attempts, report.throttled, report.pauses, report.backoffs) == (3, 1, 1, 1)
    assert app.limits.snapshot()["refused"] == 1


def test_a_throttled_attempt_is_retried_after_the_pause_and_counted_once() -> None:
    time = FakeTime()
    time.now = real_time.time()
    app = EmulatorApp([KEY], clock=time.clock, sleep=time.sleep, limits=LimitSettings(max_qps=1))
    client = paced_client(time, app, attempts=5)
    limiter = controller(4, time=time)
    user = '{"userId":"u-1","userName":"n","groupId":"g","groupName":"G"}'
    client.create_batch_json([user], pacer=limiter)
    answer = client.create_batch_json([user], pacer=limiter)
    assert answer.attempts == 2 and time.slept == [pytest.approx(1.0)]  # the retry's own wait covered the pause
    assert limiter.report().throttled == 1 and client.calls["CreateUser"] == 3


class BrokenSession(requests.Session):
    """A transport that fails in a way no one planned for."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise RuntimeError("broken transport")


def test_an_attempt_that_ends_in_an_unexpected_exception_gives_its_place_back() -> None:
    client = CvcClient(
        Credentials(KEY.id, KEY.secret), settings=CvcSettings(endpoint=ENDPOINT), session=BrokenSession()
    )
    limiter = controller(1)
    with pytest.raises(RuntimeError):
        client.delete_batch(["u-1"], pacer=limiter)
    assert limiter.before_attempt(TimeBudget.of(0.05))  # the only place is free again


def test_the_settings_bound_the_adaptive_limit_and_a_concurrency_set_alone_stays_pinned() -> None:
    from cvcsync.config import ConfigurationError, SyncSettings

    assert SyncSettings.from_env({}).max_concurrency == 32  # adapts from 4 up to 32
    assert SyncSettings.from_env({"CVCSYNC_CONCURRENCY": "6"}).max_concurrency == 6  # set alone: fixed, as before
    both = SyncSettings.from_env({"CVCSYNC_CONCURRENCY": "4", "CVCSYNC_MAX_CONCURRENCY": "16"})
    assert (both.concurrency, both.max_concurrency) == (4, 16)
    with pytest.raises(ConfigurationError, match="CVCSYNC_MAX_CONCURRENCY"):
        SyncSettings.from_env({"CVCSYNC_CONCURRENCY": "8", "CVCSYNC_MAX_CONCURRENCY": "4"})
