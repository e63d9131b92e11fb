"""The time budget: deadline less margin, on an injectable monotonic clock; the applier spending it."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.budget import TimeBudget
from cvcsync.config import CvcSettings
from cvcsync.engine.apply import BUDGET_SPENT, CHECKPOINTED, Applier, ApplySettings
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, PlanInput
from cvcsync.inputs.readers import SourceRow
from cvcsync.platform.runtime import Invocation
from cvcsync_dev.emulator import EmulatorApp, FaultSettings
from support.inprocess_cvc import ENDPOINT, KEY, WsgiAdapter


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_budget_is_the_deadline_less_the_margin() -> None:
    clock = Clock()
    budget = TimeBudget.until(130.0, 10.0, clock=clock)
    assert budget.ends_at == 120.0 and budget.remaining() == 20.0 and not budget.expired()
    clock.now = 120.0
    assert budget.expired() and budget.remaining() == 0.0


def test_clip_cuts_a_timeout_to_what_is_left_and_never_below_zero() -> None:
    clock = Clock()
    budget = TimeBudget.of(3.0, clock=clock)
    assert budget.clip(20.0) == 3.0 and budget.clip(1.5) == 1.5
    clock.now += 5
    assert budget.clip(20.0) == 0.0


def test_allows_only_a_wait_that_leaves_time_after_it() -> None:
    budget = TimeBudget.of(1.0, clock=Clock())
    assert budget.allows(0.5) and not budget.allows(1.0) and not budget.allows(2.0)


def test_no_deadline_means_no_limit() -> None:
    budget = TimeBudget.until(None, 10.0)
    assert budget.remaining() is None and not budget.expired() and budget.clip(20.0) == 20.0 and budget.allows(1e9)
    assert TimeBudget.unlimited().ends_at is None


def test_apply_settings_carry_the_callers_budget_or_none() -> None:
    assert ApplySettings().budget.ends_at is None
    budget = TimeBudget(7.0)
    assert ApplySettings(budget=budget).budget is budget


def test_an_invocation_spends_its_deadline_less_a_margin() -> None:
    assert Invocation("fc", "req-1", 90.0).budget(10.0).ends_at == 80.0
    assert Invocation("local", "req-2", None).budget(10.0).ends_at is None


def test_no_batch_starts_that_the_budget_cannot_hold(tmp_path: Path) -> None:
    # CVC in this process, every call taking 0.3 s of a clock the client, the emulator and the budget share.
    clock = Clock()
    app = EmulatorApp([KEY], faults=FaultSettings(latency_ms=300), sleep=clock.sleep)
    session = requests.Session()
    session.mount(ENDPOINT, WsgiAdapter(app))
    settings = CvcSettings(endpoint=ENDPOINT, batch_size=1)
    client = CvcClient(Credentials(KEY.id, KEY.secret), settings=settings, session=session, monotonic=clock)
    state = ShadowState(tmp_path / "state.sqlite")
    rows = [SourceRow(n, {"userId": f"u-{n}", "userName": "名", "groupId": "1", "groupName": "g"}) for n in range(10)]
    plan = build_plan(PlanInput(rows, DELTA), state, tmp_path)
    try:
        budget = TimeBudget.of(1.0, clock=clock)
        result = Applier(client, ApplySettings(batch_size=1, concurrency=1, budget=budget)).run(plan)
    finally:
        plan.close()
        state.close()
    # Calls end at 0.3, 0.6, 0.9; with 0.1 s left a fourth 0.3 s call would be cut mid-way (and sent again by the
    # continuation, having perhaps taken effect), so it is not started.
    assert client.calls["CreateUser"] == 3 and clock.now == pytest.approx(100.9)
    assert (result.status, result.stopped_by, result.applied, result.pending) == (CHECKPOINTED, BUDGET_SPENT, 3, 7)
