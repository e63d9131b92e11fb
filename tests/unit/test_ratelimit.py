from __future__ import annotations

import threading
import time

from cvcsync.adapters.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


def test_burst_then_steady_rate() -> None:
    t = FakeTime()
    limiter = RateLimiter(10, burst=2, clock=t.clock, sleep=t.sleep)
    for _ in range(12):
        assert limiter.acquire()
    assert t.slept[:1] == [0.1]  # two free from the burst, then one every 1/10 s
    assert abs(t.now - 1.0) < 1e-9


def test_a_wait_past_the_deadline_is_not_taken_and_the_token_is_returned() -> None:
    t = FakeTime()
    limiter = RateLimiter(1, burst=1, clock=t.clock, sleep=t.sleep)
    assert limiter.acquire()
    assert not limiter.acquire(deadline=0.5)
    assert t.slept == []
    t.now = 1.0
    assert limiter.acquire(deadline=1.5)  # the refused booking did not eat the next token
    assert t.slept == []


def test_threads_share_one_budget() -> None:
    limiter = RateLimiter(200, burst=1)
    started = threading.Event()
    done: list[int] = []

    def worker() -> None:
        started.wait()
        for _ in range(10):
            limiter.acquire()
        done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    clock_start = time.monotonic()
    started.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - clock_start
    assert len(done) == 4
    assert elapsed >= (40 - 1) / 200 * 0.9  # 40 tokens at 200/s cannot come faster than ~0.2 s
