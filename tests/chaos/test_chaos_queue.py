"""Queue deliveries duplicated, reordered and replayed, some failing on CVC faults and delivered again (the SQS
partial-batch contract, played by the test): the final directory is each user's latest change, whatever came when."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.queue import handle
from support.chaos import USERS, Results, Users, cvc_directory, hashes, person, read_state
from support.events import sqs_records

from .conftest import STATE

VERSIONS = 3
START = datetime(2030, 1, 1, tzinfo=timezone.utc)


def changes_of(n: int) -> tuple[list[dict[str, Any]], Users]:
    """VERSIONS upserts per user, a second apart; every fifth user is deleted last. Returns them and the end state."""
    events: list[dict[str, Any]] = []
    final: Users = {}
    for i in range(n):
        for version in range(1, VERSIONS + 1):
            user = person(i, version)
            at = (START + timedelta(seconds=version)).strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append({"type": "upsert", "eventId": f"u-{i}-{version}", "occurredAt": at, "user": user})
            final[user["userId"]] = user
        if i % 5 == 0:
            at = (START + timedelta(seconds=VERSIONS + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            user_id = person(i)["userId"]
            events.append({"type": "delete", "eventId": f"d-{i}", "occurredAt": at, "userId": user_id})
            del final[user_id]
    return events, final


def deliver(queue: list[tuple[str, dict[str, Any]]], env: dict[str, str], rng: random.Random) -> dict[str, int]:
    """Until the queue is empty: shuffle, take batches of 1 to 25, put the failed messages back (redelivery)."""
    totals = {"deliveries": 0, "batches": 0, "redelivered": 0}
    while queue:
        rng.shuffle(queue)
        size = rng.randint(1, 25)
        batch, queue[:] = queue[:size], queue[size:]
        answer = handle(sqs_records(batch), LocalLambdaContext("chaos-queue"), env=env)
        assert answer["received"] == sum(answer["outcomes"].values()) == len(batch)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        queue.extend(m for m in batch if m[0] in failed)
        totals["deliveries"] += len(batch)
        totals["batches"] += 1
        totals["redelivered"] += len(failed)
        if answer.get("circuitOpen"):
            time.sleep(0.2)
        assert totals["batches"] < 50_000, "the queue never drained"
    return totals


def test_duplicated_reordered_and_replayed_changes_end_in_each_users_latest(
    chaos_env: dict[str, str], emulator: Any, moto: Any, chaos_results: Results
) -> None:
    n = min(1000, max(100, USERS // 60))  # a state commit per batch: this size already takes ~400 batches
    scenario = chaos_results.start("queue: duplicates, reordering, redelivery, replay", n)
    rng = random.Random(42)
    env = {**chaos_env, "CVC_MAX_ATTEMPTS": "1", "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "0.1"}
    events, final = changes_of(n)
    messages = [(f"m-{k}", event) for k, event in enumerate(events)]
    duplicates = [(f"dup-{k}", event) for k, (_, event) in enumerate(rng.sample(messages, len(messages) // 5))]

    emulator.set_faults(error_rate=0.15, throttle_rate=0.05, jitter_ms=2, retry_after_ms=10, seed=5)
    first = deliver(messages + duplicates, env, rng)
    emulator.set_faults()
    want = hashes(final)
    assert cvc_directory(env) == want

    # An operator replays a third of the archive, in any order: nothing may move.
    before = emulator.stats()["calls"]
    replay = [(f"replay-{k}", event) for k, (_, event) in enumerate(rng.sample(messages, len(messages) // 3))]
    replayed = len(replay)
    deliver(replay, env, rng)  # (empties the list, as a queue drains)
    after = emulator.stats()["calls"]
    assert after.get("CreateUser", 0) == before.get("CreateUser", 0)
    assert after.get("DeleteUser", 0) == before.get("DeleteUser", 0)
    assert cvc_directory(env) == want
    state = read_state(moto.s3_client(), STATE)
    assert state.certain == want and state.uncertain == set()

    scenario.succeeded(
        {
            "events": len(events),
            "duplicates": len(duplicates),
            "redelivered": first["redelivered"],
            "replayed": replayed,
            "writesDuringReplay": 0,
        }
    )
