"""The queue function and the scheduled redrive order changes by one rule (``cvcsync.clock``): event time, ties by
arrival. A late, older change applied after a newer one failed must not make the redrive drop the newer one as
stale (issue 11, defect 1). Real HTTP: the queue and scheduled handlers, the emulator, moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cvcsync.platform import services
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.queue import handle as queue_handle
from cvcsync.platform.triggers.schedule import handle as schedule_handle
from support.events import sqs_records

STATE = "cvc-sync-state"


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> Iterator[dict[str, str]]:
    moto.s3_client().create_bucket(Bucket=STATE)
    yield {
        **function_env,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "WARNING",
        "CVCSYNC_REDRIVE_BACKOFF_SECONDS": "0.001",  # the letter is due at once
    }
    services.clear_cache()


def change_event(change: dict[str, Any], message_id: str) -> dict[str, Any]:
    """One SQS record carrying ``change`` (as the queue function receives it from Lambda)."""
    return sqs_records([(message_id, change)])


def upsert(uid: str, name: str, at: str) -> dict[str, Any]:
    user = {"userId": uid, "userName": name, "groupId": "88", "groupName": "示例科技"}
    return {"type": "upsert", "eventId": f"u-{uid}-{at}", "occurredAt": at, "user": user}


def delete(uid: str, at: str) -> dict[str, Any]:
    return {"type": "delete", "eventId": f"d-{uid}-{at}", "occurredAt": at, "userId": uid}


def queue(env: dict[str, str], change: dict[str, Any], message_id: str) -> dict[str, Any]:
    return dict(queue_handle(change_event(change, message_id), LocalLambdaContext("queue"), env=env))


def dead_letters(moto: Any) -> list[dict[str, Any]]:
    s3 = moto.s3_client()
    listing = s3.list_objects_v2(Bucket=STATE, Prefix="cvc-sync/dead-letters/").get("Contents", [])
    found = []
    for item in listing:
        body = s3.get_object(Bucket=STATE, Key=item["Key"])["Body"].read()
        found += [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return found


def test_a_late_older_change_does_not_make_the_redrive_drop_a_newer_failed_one(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    """CVC refuses the 10:00 create (its licence is full: a business refusal), so it is dead-lettered; the 09:00
    version arrives late: the failed 10:00 change is the user's latest intent all the same (engine.settle records
    it), so 09:00 is stale; the redrive applies 10:00."""
    emulator.set_capacity(0)
    failed = queue(env, upsert("u-1", "甲 (10:00)", "2024-05-01T10:00:00Z"), "m-1")
    emulator.set_capacity(100)
    assert failed["outcomes"]["deadLettered"] == 1 and failed["batchItemFailures"] == []
    [letter] = dead_letters(moto)
    assert letter["record"]["occurredAt"].startswith("2024-05-01T10:00:00")

    late = queue(env, upsert("u-1", "甲 (09:00)", "2024-05-01T09:00:00Z"), "m-2")  # older, arrives later
    assert late["outcomes"]["stale"] == 1 and emulator.users() == []

    redrive = dict(schedule_handle({"task": "redrive"}, LocalLambdaContext("scheduled"), env=env))
    assert redrive["outcomes"]["applied"] == 1 and redrive["outcomes"]["stale"] == 0
    assert [u["userName"] for u in emulator.users()] == ["甲 (10:00)"] and dead_letters(moto) == []

    # The redriven change is remembered at its own time: anything older than 10:00 is stale from now on.
    again = queue(env, delete("u-1", "2024-05-01T09:30:00Z"), "m-3")
    assert again["outcomes"]["stale"] == 1 and len(emulator.users()) == 1
