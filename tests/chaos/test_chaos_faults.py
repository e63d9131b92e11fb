"""A full sync under seeded faults (5xx, throttling, dropped connections, random latency), then a redrive.

The oracle is independent of the code under test: the emulator's journal says, per user, how the last write that
named it ended. A user whose last write did not end ``ok`` exhausted its retries and must be dead-lettered; every
other changed user must hold exactly the snapshot's content in CVC (read back through ListUsers) and in the state.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers import schedule, upload
from support.chaos import (
    USERS,
    Results,
    cvc_directory,
    dead_letters,
    evolve,
    export_csv,
    hashes,
    keys,
    last_results,
    read_state,
    snapshot,
)
from support.events import load_event

from .conftest import STATE, UPLOADS

KEY = "users/2024-05-01/users.csv"  # the key of events/fc/oss-putobject.json
FC_CREDENTIALS = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
FAULTS = {"throttle_rate": 0.10, "error_rate": 0.10, "drop_rate": 0.02, "jitter_ms": 4, "retry_after_ms": 20}


def sync(moto: Any, env: dict[str, str], body: bytes) -> dict[str, Any]:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=KEY, Body=body)
    context = local_fc_context("chaos", timeout=900, credentials=FC_CREDENTIALS)
    answer = orjson.loads(upload.handle(load_event("fc/oss-putobject.json", raw=True), context, env=env))
    [run] = answer["runs"]
    return dict(run)


def redrive(env: dict[str, str]) -> dict[str, Any]:
    event = {"task": "redrive", "pageSize": 500, "ignoreBackoff": True}
    return dict(schedule.handle(event, LocalLambdaContext("chaos-redrive", timeout=900), env=env))


def test_a_full_sync_under_faults_dead_letters_exactly_what_failed_and_a_redrive_converges(
    chaos_env: dict[str, str], moto: Any, emulator: Any, chaos_results: Results
) -> None:
    scenario = chaos_results.start("full sync under faults, then redrive", USERS)
    s3 = moto.s3_client()
    day1 = snapshot(range(USERS))
    first = sync(moto, chaos_env, export_csv(day1))
    assert first["outcomes"]["created"] == USERS

    day2, changed = evolve(day1, USERS)
    touched = set().union(*changed.values())
    # Small enough batches that, with two attempts per call, some batches surely exhaust their retries.
    batch = max(10, min(100, len(touched) // 200))
    env = {**chaos_env, "CVC_MAX_ATTEMPTS": "2", "CVC_BATCH_SIZE": str(batch), "CVCSYNC_CONCURRENCY": "4"}
    # Faults on a fifth of the calls sometimes fail five calls in a row at 100k users: the circuit would open and the
    # run pause for a continuation this process cannot receive. This scenario is about dead letters (the circuit has
    # its own tests), so it takes more failing calls to open.
    env["CVCSYNC_CIRCUIT_FAILURES"] = "50"
    emulator.journal(enabled=True)
    emulator.set_faults(seed=20261126, **FAULTS)
    started = time.monotonic()
    run = sync(moto, env, export_csv(day2))
    seconds = time.monotonic() - started
    journal = emulator.journal()
    faults = emulator.stats()["faults"]
    emulator.set_faults()

    # Accounting: every row and every implied deletion ends in exactly one outcome.
    assert run["received"] == sum(run["outcomes"].values()) == len(day2) + len(changed["deleted"])
    assert run["outcomes"]["unchanged"] == len(day2) - len(changed["updated"]) - len(changed["created"])

    # Dead letters are exactly the users whose last write did not end well (or that were never sent).
    last = last_results(journal)
    failed = {user_id for user_id in touched if last.get(user_id) != "ok"}
    letters = dead_letters(s3, STATE)
    lettered = sorted(letter["record"]["userId"] for letter in letters)
    assert lettered == sorted(failed)
    assert run["outcomes"]["deadLettered"] == run["deadLetters"] == len(failed) > 0
    assert all(letter["attempts"] >= 1 and letter["errorCode"] for letter in letters)
    assert set(last) <= touched  # no write for an unchanged user

    # Everything else is exactly the snapshot, in CVC and in the state; the failed users are uncertain there.
    want = hashes(day2)
    directory = cvc_directory(env)
    state = read_state(s3, STATE)
    for user_id in (set(day1) | set(day2)) - failed:
        assert directory.get(user_id) == want.get(user_id), user_id
        assert state.certain.get(user_id) == want.get(user_id), user_id
    assert state.uncertain == failed and state.in_flight_lists == 0
    for user_id, claimed in state.certain.items():  # the state never claims what CVC does not hold
        assert directory.get(user_id) == claimed, user_id

    # A redrive with the faults off converges: no letter left, nothing parked, CVC and the state are the snapshot.
    passes = []
    while dead_letters(s3, STATE) and len(passes) < 10:
        passes.append(redrive(env))
    assert dead_letters(s3, STATE) == [] and keys(s3, STATE, "cvc-sync/parked/") == []
    assert sum(p["outcomes"]["applied"] for p in passes) == len(failed)
    assert cvc_directory(env) == want
    state = read_state(s3, STATE)
    assert state.certain == want and state.uncertain == set()

    # And the same export once more costs no write at all.
    before = emulator.stats()["calls"]
    again = sync(moto, env, export_csv(day2))
    after = emulator.stats()["calls"]
    assert again["outcomes"]["unchanged"] == len(day2)
    assert after.get("CreateUser", 0) == before.get("CreateUser", 0)
    assert after.get("DeleteUser", 0) == before.get("DeleteUser", 0)

    scenario.succeeded(
        {
            "changedRows": len(touched),
            "batchSize": batch,
            "writeCalls": len(journal),
            "throttled": faults["throttled"],
            "errors": faults["errors"],
            "dropped": faults["dropped"],
            "deadLettered": len(failed),
            "redrivePasses": len(passes),
            "deadLettersAfterRedrive": 0,
            "syncUnderFaultsSeconds": round(seconds, 1),
        }
    )
