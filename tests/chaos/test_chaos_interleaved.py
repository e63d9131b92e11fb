"""Four writers at once on the same users (issue 11): an upload, a queue stream, redrives and reconciles run in
parallel threads against the emulator (with faults) and one state bucket in moto. Afterwards CVC and the state
equal each user's latest intent by event time, every report's received equals the sum of its outcomes, and nothing
is lost or resurrected.

Intents: day 1's export at T0; day 2's export at T2 (5% gone, 10% changed, 5% new); queue changes for a third of
the users at times spread around T2 (some before it, some after), a tenth of them deletes. The latest intent per
user is the one with the latest event time; a full snapshot at T2 means "absent" for every user it lacks.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.errors import CvcError
from cvcsync.platform.runtime import LocalLambdaContext, local_fc_context
from cvcsync.platform.triggers import schedule, upload
from support.chaos import USERS, Results, Users, cvc_directory, evolve, export_csv, hashes, keys, person, read_state
from support.chaos import snapshot as day_snapshot
from support.events import load_event

from .conftest import STATE, UPLOADS
from .test_chaos_queue import deliver

KEY = "users/2024-05-01/users.csv"  # the key of events/fc/oss-putobject.json
FC_CREDENTIALS = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
FAULTS = {"throttle_rate": 0.08, "error_rate": 0.08, "jitter_ms": 3, "retry_after_ms": 10}
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
T2 = datetime(2030, 1, 2, tzinfo=timezone.utc)


def sync(moto: Any, env: dict[str, str], body: bytes, at: datetime) -> dict[str, Any]:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=KEY, Body=body)
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["eventTime"] = clock.report_time(at)
    context = local_fc_context("chaos", timeout=900, credentials=FC_CREDENTIALS)
    [run] = orjson.loads(upload.handle(orjson.dumps(event), context, env=env))["runs"]
    return dict(run)


def task(env: dict[str, str], name: str, **options: Any) -> dict[str, Any]:
    event = {"task": name, **options}
    return dict(schedule.handle(event, LocalLambdaContext(f"chaos-{name}", timeout=900), env=env))


def queue_changes(ids: list[int], rng: random.Random) -> list[tuple[datetime, dict[str, Any]]]:
    """Changes at times within 12 hours of T2 either way (never exactly T2), a tenth of them deletes."""
    changes = []
    for n, i in enumerate(ids):
        at = T2 + timedelta(seconds=rng.choice([-1, 1]) * rng.randint(1, 12 * 3600))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if n % 10 == 0:
            body = {"type": "delete", "eventId": f"q-del-{i}", "occurredAt": stamp, "userId": person(i)["userId"]}
        else:
            body = {"type": "upsert", "eventId": f"q-up-{i}", "occurredAt": stamp, "user": person(i, version=7)}
        changes.append((at, body))
    return changes


def latest_intent(day1: Users, day2: Users, changes: list[tuple[datetime, dict[str, Any]]]) -> Users:
    """Per user, the intent with the latest event time: T0's and T2's snapshots (absent = deleted), then changes."""
    intents: dict[str, tuple[datetime, dict[str, str] | None]] = {}
    for user_id, user in day1.items():
        intents[user_id] = (T0, user)
    for user_id in set(day1) | set(day2):
        intents[user_id] = (T2, day2.get(user_id))
    for at, body in changes:
        user_id = body["user"]["userId"] if body["type"] == "upsert" else body["userId"]
        if user_id not in intents or at > intents[user_id][0]:
            intents[user_id] = (at, body.get("user"))
    return {user_id: user for user_id, (_, user) in intents.items() if user is not None}


def reports(s3: Any) -> list[dict[str, Any]]:
    found = []
    for key in keys(s3, STATE, "cvc-sync/reports/"):
        if key.endswith(".json"):
            found.append(orjson.loads(s3.get_object(Bucket=STATE, Key=key)["Body"].read()))
    return found


def test_an_upload_a_queue_a_redrive_and_a_reconcile_at_once_end_in_each_users_latest_intent(
    chaos_env: dict[str, str], moto: Any, emulator: Any, chaos_results: Results
) -> None:
    n = min(3000, max(200, USERS // 40))
    scenario = chaos_results.start("interleaved: upload, queue, redrive and reconcile at once", n)
    rng = random.Random(11)
    env = {**chaos_env, "CVC_MAX_ATTEMPTS": "2", "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "0.1"}
    day1 = day_snapshot(range(n))
    assert sync(moto, env, export_csv(day1), T0)["status"] == "applied"
    day2, _ = evolve(day1, n)
    sample = rng.sample(range(n + n // 20), n // 3)  # old and new users alike
    changes = queue_changes(sample, rng)
    queue = [(f"m-{k}", body) for k, (_, body) in enumerate(changes)]
    want = hashes(latest_intent(day1, day2, changes))

    emulator.set_faults(**FAULTS, seed=13)
    errors: list[BaseException] = []
    outcomes: dict[str, Any] = {}

    def guarded(name: str, work: Any) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = work()
            except BaseException as exc:  # re-raised in the test thread below
                errors.append(exc)

        return threading.Thread(target=run, name=name)

    def scheduled() -> list[dict[str, Any]]:
        done = []
        for k in range(4):
            for name, options in (("redrive", {"pageSize": 200, "ignoreBackoff": True}), ("reconcile", {})):
                if name == "reconcile":
                    options = {"mode": ("report", "heal-state", "heal-cvc")[k % 3]}
                try:
                    done.append(task(env, name, **options))
                except CvcError as exc:  # CVC failing past the retries: the task fails, the next timer runs it
                    assert exc.retryable, exc
                    done.append({"task": name, "status": "failed", "error": exc.code})
            time.sleep(0.05)
        return done

    threads = [
        guarded("upload", lambda: sync(moto, env, export_csv(day2), T2)),
        guarded("queue", lambda: deliver(list(queue), env, random.Random(17))),
        guarded("schedule", scheduled),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    assert not errors, errors
    assert outcomes["upload"]["status"] in ("applied", "partial")

    # Faults off: what is left (dead letters, repairs of lost races) is redriven until nothing is left.
    emulator.set_faults()
    for _ in range(6):
        passed = task(env, "redrive", pageSize=500, ignoreBackoff=True)
        if not passed["read"]:
            break
    got = cvc_directory(env)
    assert got == want
    state = read_state(moto.s3_client(), STATE)
    assert state.certain == want and state.uncertain == set()
    runs = [r for r in reports(moto.s3_client()) if "outcomes" in r]  # a reconcile counts drift, not records
    writers = {r.get("mode") or r.get("task") for r in runs}
    assert {"full", "changes", "redrive"} <= writers, writers
    for report in runs:
        received = report["received"] if "received" in report else report["read"]
        assert received == sum(report["outcomes"].values()), report.get("runId")
    scenario.succeeded({"users": n, "queueChanges": len(changes), "scheduledTasks": len(outcomes["schedule"])})
