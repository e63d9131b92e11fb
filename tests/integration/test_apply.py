"""Applying plans against the emulator over real HTTP: outcomes, isolation of bad records, the time budget, the
circuit, and the request id on the worker threads' log lines."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.retry import RetryPolicy
from cvcsync.budget import TimeBudget
from cvcsync.config import CvcSettings
from cvcsync.engine.apply import BUDGET_SPENT, CHECKPOINTED, CIRCUIT_OPEN, DONE, Applier, ApplySettings
from cvcsync.engine.circuit import CircuitBreaker
from cvcsync.engine.outcomes import check_accounting
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, FULL, PlanInput, SyncPlan
from cvcsync.inputs.readers import SourceRow
from cvcsync.inputs.records import parse_user
from cvcsync.logs import JsonFormatter
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.queue import handle as handle_queue
from support.events import sqs_records

GROUP = {"groupId": "88", "groupName": "示例科技"}


def user(i: int, **extra: str) -> dict[str, str]:
    return {"userId": f"u-{i:05d}", "userName": f"用户{i}", **GROUP, **extra}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite")
    yield shadow
    shadow.close()


def client_for(emulator: Any, *, batch_size: int = 10, attempts: int = 4) -> CvcClient:
    return CvcClient(
        Credentials(emulator.access_key_id, emulator.access_key_secret),
        settings=CvcSettings(endpoint=emulator.url, batch_size=batch_size),
        retry_policy=RetryPolicy(max_attempts=attempts, base_delay=0.001, max_delay=0.01, rng=random.Random(5)),
    )


def plan_for(state: ShadowState, tmp_path: Path, users: list[dict[str, Any]], mode: str = FULL) -> SyncPlan:
    items = [SourceRow(n, u) for n, u in enumerate(users, start=2)]
    return build_plan(PlanInput(items, mode), state, tmp_path)


def test_outcomes_for_creates_updates_deletes(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    client = client_for(emulator)
    kept, changed, gone = user(1), user(2), user(3)
    client.create_users([kept, changed, gone])
    for raw in (kept, changed, gone):
        parsed = parse_user(raw)
        state.upsert([(parsed.user_id, parsed.content_hash(), parsed.to_json().decode())])
    plan = plan_for(state, tmp_path, [kept, {**changed, "departName": "新部门"}, *[user(i) for i in range(10, 35)]])
    result = Applier(client, ApplySettings(batch_size=10)).run(plan)
    assert (result.status, result.pending, result.dead_lettered) == (DONE, 0, 0)
    outcomes = plan.outcome_counts()
    assert (outcomes["created"], outcomes["updated"], outcomes["unchanged"], outcomes["deleted"]) == (25, 1, 1, 1)
    check_accounting(plan.rows_read() + plan.implied_deletions(), outcomes)
    directory = {u["userId"]: u for u in emulator.users()}
    assert "u-00003" not in directory and directory["u-00002"]["departName"] == "新部门" and len(directory) == 27
    stats = emulator.stats()
    assert stats["calls"]["DeleteUser"] == 1 and sorted(stats["createBatchSizes"]) == [
        3,
        6,
        10,
        10,
    ]  # 3 to stage, 26 to apply


def test_one_bad_record_is_isolated_and_its_neighbours_land(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    plan = plan_for(state, tmp_path, [user(i) for i in range(16)])
    # Something our validation lets through but CVC refuses, for the whole batch: a user the licence cannot hold
    # is hard to stage, so forge the stored record of one row to miss its required name.
    plan.db.execute("UPDATE rows SET record = json_remove(record, '$.userName') WHERE user_id = 'u-00005'")
    result = Applier(client_for(emulator, batch_size=8), ApplySettings(batch_size=8)).run(plan)
    assert result.dead_lettered == 1
    [problem] = list(plan.problems())
    assert problem.user_id == "u-00005" and problem.code == "10001" and problem.request_id
    assert len(emulator.users()) == 15


def test_exhausted_retries_dead_letter_the_batch(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    emulator.set_faults(error_rate=1.0, seed=2)
    plan = plan_for(state, tmp_path, [user(i) for i in range(5)], mode=DELTA)
    result = Applier(client_for(emulator, attempts=2), ApplySettings(batch_size=10)).run(plan)
    assert result.dead_lettered == 5 and plan.outcome_counts()["deadLettered"] == 5
    problem = next(plan.problems())
    assert problem.code in ("InternalError", "ServiceUnavailable")


def test_deadline_checkpoints_and_a_second_run_finishes(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    emulator.set_faults(latency_ms=150, seed=1)
    plan = plan_for(state, tmp_path, [user(i) for i in range(40)])
    deadline = time.monotonic() + 1.0
    first = Applier(
        client_for(emulator, batch_size=5),
        ApplySettings(batch_size=5, concurrency=1, budget=TimeBudget.until(deadline, 0.5)),
    ).run(plan)
    assert first.status == CHECKPOINTED and first.stopped_by == BUDGET_SPENT
    assert 0 < first.applied < 40 and first.pending == 40 - first.applied and first.dead_lettered == 0
    assert time.monotonic() < deadline + 0.5  # stopped in time, not killed mid-batch
    emulator.set_faults()
    second = Applier(client_for(emulator, batch_size=5), ApplySettings(batch_size=5)).run(plan)
    assert second.status == DONE and second.applied == 40 - first.applied
    assert plan.outcome_counts()["created"] == 40 and len(emulator.users()) == 40
    # Only the batch the budget cut mid-call (CVC may have applied it: its users are in the in-flight list) can
    # have been sent twice; nothing that was answered was.
    assert 40 <= sum(emulator.stats()["createBatchSizes"]) <= 45


def test_a_budget_that_ends_mid_call_stops_within_it_and_leaves_the_rest_pending(
    emulator: Any, state: ShadowState, tmp_path: Path
) -> None:
    # The defaults' trap: a 20 s read timeout against a 10 s margin. The call that is in flight when the budget
    # ends must end with it, not when the read times out or the platform's deadline comes.
    emulator.set_faults(latency_ms=8000, error_rate=1.0, seed=1)  # slow, then failing: no late side effect
    plan = plan_for(state, tmp_path, [user(i) for i in range(10)], mode=DELTA)
    deadline = time.monotonic() + 12.0
    settings = ApplySettings(batch_size=5, concurrency=1, budget=TimeBudget.until(deadline, 10.0))  # a 2 s budget
    result = Applier(client_for(emulator, batch_size=5), settings).run(plan)
    assert time.monotonic() < deadline - 5.0  # returned with the margin free for the checkpoint, not at the deadline
    assert (result.status, result.stopped_by) == (CHECKPOINTED, BUDGET_SPENT)
    assert (result.applied, result.dead_lettered, result.pending) == (0, 0, 10)  # cut short is pending, not failed
    assert plan.pending_count() == 10 and emulator.stats()["calls"]["CreateUser"] == 1  # no retry past the budget


def test_retry_waits_stop_at_the_budget_and_leave_the_batch_pending(
    emulator: Any, state: ShadowState, tmp_path: Path
) -> None:
    emulator.set_faults(throttle_rate=1.0, retry_after_ms=400, seed=2)  # throttled for as long as anyone asks
    plan = plan_for(state, tmp_path, [user(i) for i in range(5)], mode=DELTA)
    client = CvcClient(
        Credentials(emulator.access_key_id, emulator.access_key_secret),
        settings=CvcSettings(endpoint=emulator.url, batch_size=5),
        retry_policy=RetryPolicy(max_attempts=1000, base_delay=0.2, max_delay=0.4, rng=random.Random(5)),
    )
    deadline = time.monotonic() + 11.0
    settings = ApplySettings(batch_size=5, concurrency=1, budget=TimeBudget.until(deadline, 10.0))  # a 1 s budget
    result = Applier(client, settings).run(plan)
    assert time.monotonic() < deadline - 5.0  # the waits stopped at the budget, not at the platform's deadline
    assert (result.status, result.stopped_by) == (CHECKPOINTED, BUDGET_SPENT)
    assert (result.dead_lettered, result.pending) == (0, 5)  # out of time is not a failure of the batch
    assert 1 < client.calls["CreateUser"] < 1000


def test_bisection_stops_when_the_budget_is_spent(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    plan = plan_for(state, tmp_path, [user(i) for i in range(8)])
    plan.db.execute("UPDATE rows SET record = json_remove(record, '$.userName') WHERE user_id = 'u-00005'")
    client = client_for(emulator, batch_size=8)
    # A budget counted in calls, so the test does not depend on how fast the machine is: three CreateUser calls.
    budget = TimeBudget(3.0, clock=lambda: float(client.calls["CreateUser"]))
    result = Applier(client, ApplySettings(batch_size=8, budget=budget)).run(plan)
    # 8 refused -> [0-3] landed, [4-7] refused -> the budget is spent: [4,5] and [6,7] are never sent.
    assert client.calls["CreateUser"] == emulator.stats()["calls"]["CreateUser"] == 3
    assert emulator.stats()["createBatchSizes"] == [4]  # the one batch CVC accepted
    assert (result.status, result.stopped_by) == (CHECKPOINTED, BUDGET_SPENT)
    assert (result.applied, result.dead_lettered, result.pending) == (4, 0, 4)
    second = Applier(client_for(emulator, batch_size=8), ApplySettings(batch_size=8)).run(plan)
    assert (second.status, second.applied, second.dead_lettered) == (DONE, 3, 1)
    assert [p.user_id for p in plan.problems()] == ["u-00005"] and len(emulator.users()) == 7


def test_an_open_circuit_is_reported_as_such_with_true_counts(
    emulator: Any, state: ShadowState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(error_rate=1.0, seed=3)
    plan = plan_for(state, tmp_path, [user(i) for i in range(6)], mode=DELTA)
    caplog.set_level(logging.WARNING, logger="cvcsync.engine.apply")
    settings = ApplySettings(batch_size=1, concurrency=1)
    result = Applier(client_for(emulator, attempts=1), settings, breaker=CircuitBreaker(threshold=2)).run(plan)
    # Call 1 failed (dead-lettered), call 2 failed and opened the circuit (left pending), 3-6 were never sent.
    assert (result.status, result.stopped_by) == (CHECKPOINTED, CIRCUIT_OPEN)
    assert (result.applied, result.dead_lettered, result.pending) == (0, 1, 5)
    [line] = [r for r in caplog.records if r.name == "cvcsync.engine.apply"]
    assert line.getMessage().startswith("circuit open") and "deadline" not in line.getMessage()
    assert (line.applied, line.deadLettered, line.notSent) == (0, 1, 5)  # type: ignore[attr-defined]


def _sqs_event(users: list[dict[str, str]]) -> dict[str, Any]:
    change = {"type": "upsert", "occurredAt": "2024-05-01T00:00:01Z"}
    return sqs_records([(f"m-{n}", {**change, "eventId": f"e-{n}", "user": u}) for n, u in enumerate(users)])


def test_the_queue_function_logs_every_worker_line_with_its_request_id_and_the_circuit_truthfully(
    function_env: dict[str, str], moto: Any, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    moto.s3_client().create_bucket(Bucket="cvc-sync-state")
    env = {
        **function_env,
        "CVCSYNC_STATE_BUCKET": "cvc-sync-state",
        "CVCSYNC_LOG_LEVEL": "INFO",
        "CVC_BATCH_SIZE": "1",
        "CVC_MAX_ATTEMPTS": "1",
    }
    emulator.set_faults(error_rate=1.0, seed=5)
    context = LocalLambdaContext("queue")
    caplog.handler.setFormatter(JsonFormatter())  # formatted as it is emitted, on the thread that emits it
    answer = handle_queue(_sqs_event([user(i) for i in range(12)]), context, env=env)
    assert answer["circuitOpen"] and len(answer["batchItemFailures"]) == 12
    lines = [orjson.loads(text) for text in caplog.text.splitlines()]
    assert len(lines) == len(caplog.records)
    from_workers = [
        line
        for record, line in zip(caplog.records, lines, strict=True)
        if record.threadName.startswith("cvc-apply")
        and record.name in ("cvcsync.adapters.cvc", "cvcsync.engine.circuit")
    ]
    assert {line["message"] for line in from_workers} >= {
        "cvc call failed",
        "circuit open: CVC is failing; no more calls this invocation",
    }
    assert all(line.get("requestId") == context.aws_request_id for line in from_workers)
    [summary] = [line for line in lines if line["logger"] == "cvcsync.engine.apply"]
    assert summary["message"].startswith("circuit open") and "deadline" not in summary["message"]
    assert summary["applied"] == 0 and summary["deadLettered"] + summary["notSent"] == 12  # every call failed


def test_concurrency_applies_everything_once(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    plan = plan_for(state, tmp_path, [user(i) for i in range(500)])
    seen: list[int] = []
    result = Applier(
        client_for(emulator, batch_size=25), ApplySettings(batch_size=25, concurrency=6), on_progress=seen.append
    ).run(plan)
    assert result.applied == 500 and sum(seen) == 500
    assert sorted(emulator.stats()["createBatchSizes"]) == [25] * 20


def test_adaptive_concurrency_settles_at_the_services_limit_and_retries_what_it_throttled(
    emulator: Any, state: ShadowState, tmp_path: Path
) -> None:
    # The emulator serves 3 calls at once and throttles the 4th (Throttling.User); 30 ms per call, so that the
    # calls in flight overlap there as they do here. The run starts at 1 and may go up to 16.
    emulator.set_faults(latency_ms=30, seed=1)
    emulator.set_limits(max_concurrency=3)
    plan = plan_for(state, tmp_path, [user(i) for i in range(1200)])
    client = client_for(emulator, batch_size=10)
    result = Applier(client, ApplySettings(batch_size=10, concurrency=1, max_concurrency=16)).run(plan)
    assert (result.status, result.applied, result.dead_lettered, result.pending) == (DONE, 1200, 0, 0)
    assert len(emulator.users()) == 1200 and plan.outcome_counts()["created"] == 1200
    limits, moved = emulator.limits(), result.concurrency
    assert moved is not None
    # It went past the limit, was throttled, and retried every throttled call: one call more per refusal.
    assert limits["refused"] > 0 and moved.throttled == limits["refused"] and moved.backoffs > 0
    assert client.calls["CreateUser"] == 120 + limits["refused"] == moved.attempts
    assert limits["peakInFlight"] == 3 and moved.high > 3 and moved.low == 1
    # And it settled there: about 3 in flight over the second half of the run, throttled rarely.
    assert 2.5 <= moved.settled <= 4.0
    assert moved.throttled_share <= 0.1


def test_a_fixed_concurrency_when_the_maximum_is_the_start(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    emulator.set_faults(latency_ms=20, seed=1)
    plan = plan_for(state, tmp_path, [user(i) for i in range(200)])
    result = Applier(client_for(emulator), ApplySettings(batch_size=10, concurrency=2, max_concurrency=2)).run(plan)
    assert result.applied == 200 and result.concurrency is not None
    assert (result.concurrency.low, result.concurrency.high) == (2, 2)
    assert emulator.limits()["peakInFlight"] == 2
