"""Applying plans against the emulator over real HTTP: outcomes, isolation of bad records, deadlines."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvcsync.config import CvcSettings
from cvcsync.credentials import Credentials
from cvcsync.cvc import CvcClient
from cvcsync.engine.apply import CHECKPOINTED, DONE, Applier, ApplySettings
from cvcsync.engine.outcomes import check_accounting
from cvcsync.engine.plan import DELTA, FULL, PlanInput, SyncPlan, build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.readers import SourceRow
from cvcsync.records import parse_user
from cvcsync.retry import RetryPolicy

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
        client_for(emulator, batch_size=5), ApplySettings(batch_size=5, concurrency=1, deadline=deadline, margin=0.5)
    ).run(plan)
    assert first.status == CHECKPOINTED and 0 < first.applied < 40 and first.pending == 40 - first.applied
    assert time.monotonic() < deadline + 0.5  # stopped in time, not killed mid-batch
    emulator.set_faults()
    second = Applier(client_for(emulator, batch_size=5), ApplySettings(batch_size=5)).run(plan)
    assert second.status == DONE and second.applied == 40 - first.applied
    assert plan.outcome_counts()["created"] == 40 and len(emulator.users()) == 40
    assert sum(emulator.stats()["createBatchSizes"]) == 40  # nothing was sent twice


def test_concurrency_applies_everything_once(emulator: Any, state: ShadowState, tmp_path: Path) -> None:
    plan = plan_for(state, tmp_path, [user(i) for i in range(500)])
    seen: list[int] = []
    result = Applier(
        client_for(emulator, batch_size=25), ApplySettings(batch_size=25, concurrency=6), on_progress=seen.append
    ).run(plan)
    assert result.applied == 500 and sum(seen) == 500
    assert sorted(emulator.stats()["createBatchSizes"]) == [25] * 20
