"""One clock, one ordering rule for every writer (issue 11): a change's event time decides, ties by arrival, and a
change with no time at all orders as its arrival, never as 1970. Through the upload and queue functions, sharing one
state bucket, against the emulator and moto.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cvcsync import clock
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers.queue import handle as handle_queue
from cvcsync.platform.triggers.upload import handle as handle_upload
from support.events import load_event

from .test_queue_function import fc as queue_fc
from .test_queue_function import sqs_event, upsert, users
from .test_upload_function import BUCKET, FC_KEY, export, fc_context, put

EXPORT_TIME = "2026-01-10T08:00:00.000Z"
QUEUE_TIME = "2026-02-01T09:00:00Z"  # after the export was made


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> dict[str, str]:
    moto.s3_client().create_bucket(Bucket=BUCKET)
    return {**function_env, "CVC_BATCH_SIZE": "20", "CVCSYNC_STATE_BUCKET": BUCKET, "CVC_MAX_ATTEMPTS": "2"}


def upload(moto: Any, env: dict[str, str], body: bytes, event_time: str) -> dict[str, Any]:
    put(moto, FC_KEY, body)
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["eventTime"] = event_time
    [run] = orjson.loads(handle_upload(orjson.dumps(event), fc_context(), env=env))["runs"]
    return run  # type: ignore[no-any-return]


def test_an_export_older_than_a_queue_change_neither_reverts_nor_deletes_it(
    env: dict[str, str], moto: Any, emulator: Any
) -> None:
    assert upload(moto, env, export(range(10)), EXPORT_TIME)["status"] == "applied"
    changes = sqs_event(upsert("e0001", "改名-队列", QUEUE_TIME), upsert("q-new", "新人-队列", QUEUE_TIME))
    assert handle_queue(changes, LocalLambdaContext("queue"), env=env)["batchItemFailures"] == []
    # The same export, uploaded again by the HR system's nightly job but made before the queue changes: its rows
    # for e0001 and its silence about q-new are older news.
    again = upload(moto, env, export(range(10)), EXPORT_TIME)
    assert again["outcomes"]["stale"] == 2 and again["outcomes"]["updated"] == again["outcomes"]["deleted"] == 0
    assert users(emulator)["e0001"] == "改名-队列" and "q-new" in users(emulator)
    # A newer export wins over both.
    newer = upload(moto, env, export(range(10)), clock.report_time())
    assert newer["outcomes"]["updated"] == 1 and newer["outcomes"]["deleted"] == 1
    assert users(emulator)["e0001"] == "员工1" and "q-new" not in users(emulator)


def test_a_change_with_no_time_at_all_orders_as_its_arrival(env: dict[str, str], emulator: Any) -> None:
    handle_queue(sqs_event(upsert("u-1", "first", QUEUE_TIME)), LocalLambdaContext("queue"), env=env)
    # An MNS topic in STREAM format hands the function the bare body: no occurredAt, no transport time.
    body = {"type": "upsert", "user": {"userId": "u-1", "userName": "second", "groupId": "88", "groupName": "示例科技"}}
    answer = orjson.loads(handle_queue(orjson.dumps(body), queue_fc(), env=env))
    assert answer["outcomes"]["stale"] == 0 and answer["outcomes"]["updated"] == 1
    assert users(emulator)["u-1"] == "second"


def test_a_run_that_wrote_nothing_still_folds_its_in_flight_list(env: dict[str, str], moto: Any, emulator: Any) -> None:
    """Every write of a queue batch fails and is handed back: the run committed nothing, yet its in-flight list
    must not outlive it (a later checkout would mark its users uncertain for ever); its commit folds the list in."""
    emulator.set_faults(error_rate=1.0, seed=1)
    answer = handle_queue(sqs_event(upsert("u-9", "甲", QUEUE_TIME)), LocalLambdaContext("queue"), env=env)
    assert answer["outcomes"]["retried"] == 1 and len(answer["batchItemFailures"]) == 1
    listed = moto.s3_client().list_objects_v2(Bucket=BUCKET, Prefix="cvc-sync/state/in-flight/")
    assert listed.get("KeyCount", 0) == 0
    manifest = orjson.loads(
        moto.s3_client().get_object(Bucket=BUCKET, Key="cvc-sync/state/manifest.json")["Body"].read()
    )
    assert manifest["uncertain"] == 1  # CVC may hold what the failed call sent: the state says it does not know
    emulator.set_faults()
    again = handle_queue(sqs_event(upsert("u-9", "甲", QUEUE_TIME)), LocalLambdaContext("queue"), env=env)
    assert again["batchItemFailures"] == [] and users(emulator) == {"u-9": "甲"}
