"""The client spends the caller's time budget: every timeout clipped to it, no retry wait past it (no socket)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import RetryPolicy, cut_short
from cvcsync.budget import TimeBudget
from cvcsync.config import CvcSettings
from cvcsync.errors import CvcGatewayError, DeadlineExceeded
from cvcsync_dev.emulator import EmulatorApp, FaultSettings
from support.inprocess_cvc import ENDPOINT, KEY, WsgiAdapter


class Clock:
    """A monotonic clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class RecordingAdapter(WsgiAdapter):
    """The in-process emulator, remembering the timeout each request was sent with."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return super().send(request, **kwargs)


def client_on(clock: Clock, app: EmulatorApp, policy: RetryPolicy | None = None) -> tuple[CvcClient, RecordingAdapter]:
    adapter = RecordingAdapter(app)
    session = requests.Session()
    session.mount(ENDPOINT, adapter)
    settings = CvcSettings(endpoint=ENDPOINT, connect_timeout=3.05, read_timeout=20.0)
    client = CvcClient(
        Credentials(KEY.id, KEY.secret),
        settings=settings,
        session=session,
        retry_policy=policy,
        sleep=clock.sleep,
        monotonic=clock,
    )
    return client, adapter


def test_the_read_timeout_is_clipped_to_what_is_left_of_the_budget() -> None:
    clock = Clock()
    client, adapter = client_on(clock, EmulatorApp([KEY]))
    client.get_account_info(budget=TimeBudget.of(2.0, clock=clock))
    client.get_account_info(budget=TimeBudget.of(60.0, clock=clock))
    client.get_account_info(deadline=clock.now + 1.5)  # the older spelling: a budget ending at that instant
    client.get_account_info()
    assert adapter.timeouts == [(2.0, 2.0), (3.05, 20.0), (1.5, 1.5), (3.05, 20.0)]


def test_a_spent_budget_sends_nothing() -> None:
    clock = Clock()
    client, adapter = client_on(clock, EmulatorApp([KEY]))
    with pytest.raises(DeadlineExceeded):
        client.create_batch_json(['{"userId":"u-1"}'], budget=TimeBudget(clock.now, clock))
    assert adapter.timeouts == [] and client.calls["CreateUser"] == 0


def test_retry_waits_never_pass_the_budget_and_the_error_says_time_ended_it() -> None:
    clock = Clock()
    app = EmulatorApp([KEY])
    app.faults.configure(FaultSettings(throttle_rate=1.0, retry_after_ms=300, seed=4))
    policy = RetryPolicy(max_attempts=100, base_delay=0.2, max_delay=0.4, rng=random.Random(1))
    client, adapter = client_on(clock, app, policy)
    started = clock.now
    with pytest.raises(CvcGatewayError) as info:
        client.get_account_info(budget=TimeBudget.of(1.0, clock=clock))
    assert clock.now - started == pytest.approx(sum(clock.slept)) and sum(clock.slept) < 1.0
    assert len(clock.slept) >= 2 and info.value.attempts == len(clock.slept) + 1 < 100
    assert cut_short(info.value, policy)  # the budget ended it, not the attempts: its batch stays pending
    remaining = [1.0 - sum(clock.slept[:n]) for n in range(len(adapter.timeouts))]
    assert [read for _, read in adapter.timeouts] == pytest.approx(remaining)  # every attempt clipped anew
