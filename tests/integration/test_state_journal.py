"""The state's per-user path over real HTTP: the store operations it adds (ranged reads, batch deletes, create-only
numbers) on the three stores, the generation's index read by ranged GETs from moto's S3, and the queue function's
single-user changes from several writers at once, against the emulator with faults."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync.adapters.objects import LocalObjectStore, MemoryObjectStore, ObjectStore
from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.engine.journal import INTENT, Entry, Journal
from cvcsync.engine.shadow import UNCERTAIN, ShadowState, UserRow
from cvcsync.engine.state import StateStore
from cvcsync.platform.runtime import LocalLambdaContext
from cvcsync.platform.triggers import schedule
from cvcsync.platform.triggers.queue import handle
from support.chaos import cvc_directory, hashes, read_state
from support.moto import MotoServer

BUCKET = "cvc-sync-state"
PREFIX = "cvc-sync/state/"


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryObjectStore()
    elif request.param == "local":
        yield LocalObjectStore(tmp_path / "store")
    else:
        moto: MotoServer = request.getfixturevalue("moto")
        client = moto.s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield S3ObjectStore(client)


def test_a_ranged_read_answers_bytes_clipped_to_the_object_and_none_when_absent(store: ObjectStore) -> None:
    store.put_bytes(BUCKET, "state/blob", bytes(range(100)))
    assert store.read_range(BUCKET, "state/blob", 10, 14) == bytes([10, 11, 12, 13])
    assert store.read_range(BUCKET, "state/blob", 95) == bytes(range(95, 100))
    assert store.read_range(BUCKET, "state/blob", 98, 500) == bytes([98, 99])
    assert store.read_range(BUCKET, "state/blob", 200, 300) == b""
    assert store.read_range(BUCKET, "state/absent", 0, 10) is None


def test_a_batch_delete_removes_what_it_names_and_ignores_what_is_gone(store: ObjectStore) -> None:
    for name in ("a", "b", "c"):
        store.put_bytes(BUCKET, f"state/journal/{name}.json", b"{}")
    store.delete_many(BUCKET, ["state/journal/a.json", "state/journal/c.json", "state/journal/never.json"])
    assert list(store.list_keys(BUCKET, "state/journal/")) == ["state/journal/b.json"]
    store.delete_many(BUCKET, [])


def test_two_writers_of_one_number_cannot_both_take_it(store: ObjectStore) -> None:
    journal = Journal(store, BUCKET, PREFIX)
    entries = [Entry("u-1", 1, INTENT, f"run-{n}") for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(journal.append, entries))
    assert won.count(True) == 1
    [body] = [store.get_bytes(BUCKET, journal.entry_key("u-1", 1))]
    assert Entry.from_bytes(body or b"").run_id == entries[won.index(True)].run_id


def test_the_generation_index_is_read_by_ranged_gets_from_s3(moto: MotoServer, tmp_path: Path) -> None:
    client = moto.s3_client()
    client.create_bucket(Bucket=BUCKET)
    ranges: list[str | None] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        if "gen-" in params["url_path"]:
            ranges.append(params["headers"].get("Range"))

    client.meta.events.register("before-call.s3.GetObject", seen)
    states = StateStore(S3ObjectStore(client), BUCKET, PREFIX)

    def users(state: ShadowState) -> None:
        state.upsert([(f"u{i:05d}", f"h{i}", orjson.dumps({"userId": f"u{i:05d}"}).decode()) for i in range(3000)])
        state.mark_uncertain([("u00042", None)])

    states.commit(users, run_id="export")
    ranges.clear()
    reader = states.reader(1)
    header = reader.header()
    assert header is not None and header.keys == 3000
    found = reader.lookup(["u:u00042", "u:u02999", "u:nobody"], header)
    assert UserRow.from_json("u00042", found["u:u00042"]).hash == UNCERTAIN
    assert UserRow.from_json("u02999", found["u:u02999"]).hash == "h2999" and "u:nobody" not in found
    # The header, the offset table (read whole once, then kept) and one block per bucket: never the whole object.
    assert len(ranges) == 1 + 1 + 3 and all(r and r.startswith("bytes=") for r in ranges)
    reader.lookup(["u:u00007"], header)
    assert len(ranges) == 1 + 1 + 3 + 1  # a later lookup reads its block alone


# -- the queue function, many writers at once ----------------------------------------------------------------------


def message(n: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": f"m-{n}",
        "receiptHandle": f"r-{n}",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:cvc-changes",
        "awsRegion": "us-east-1",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "x",
        "body": orjson.dumps(body).decode(),
    }


def person(i: int, version: int) -> dict[str, str]:
    return {"userId": f"c{i:05d}", "userName": f"员工{i}-v{version}", "groupId": "88", "groupName": "示例科技"}


def test_single_user_changes_from_four_writers_at_once_end_in_each_users_latest(
    function_env: dict[str, str], moto: MotoServer, emulator: Any
) -> None:
    """Four writers deliver one-change messages at once, the same users changed by several of them at different
    event times, some deliveries failing on CVC faults and delivered again: CVC and the state end in each user's
    latest change, and no writer ever lost a commit to another (the writers of different users never met)."""
    moto.s3_client().create_bucket(Bucket=BUCKET)
    env = {
        **function_env,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_STATE_BUCKET": BUCKET,
        "CVCSYNC_LOG_LEVEL": "ERROR",
        "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "0.1",
    }
    rng = random.Random(3)
    bodies: list[dict[str, Any]] = []
    latest: dict[str, dict[str, str] | None] = {}
    for i in range(40):
        for version in rng.sample(range(1, 5), 3):  # three changes per user, delivered in any order
            at = f"2030-01-01T00:00:0{version}Z"
            if version == 4 and i % 4 == 0:
                bodies.append({"type": "delete", "eventId": f"d-{i}", "occurredAt": at, "userId": f"c{i:05d}"})
            else:
                user = person(i, version)
                bodies.append({"type": "upsert", "eventId": f"u-{i}-{version}", "occurredAt": at, "user": user})
    for body in sorted(bodies, key=lambda b: b["occurredAt"]):
        user_id = body["userId"] if body["type"] == "delete" else body["user"]["userId"]
        latest[user_id] = None if body["type"] == "delete" else body["user"]
    rng.shuffle(bodies)
    queue = [message(n, body) for n, body in enumerate(bodies)]
    lock = threading.Lock()
    emulator.set_faults(error_rate=0.1, throttle_rate=0.05, seed=9)

    def writer() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            answer = handle({"Records": [item]}, LocalLambdaContext("queue"), env=env)
            if answer["batchItemFailures"]:
                with lock:
                    queue.insert(0, item)  # the platform delivers it again

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    emulator.set_faults()
    want = hashes({uid: user for uid, user in latest.items() if user is not None})
    assert cvc_directory(env) == want
    # Writers of one user that raced (both wrote CVC, neither saw the other) left the user uncertain and a repair
    # letter; the redrive settles it.
    for _ in range(4):
        passed = schedule.handle({"task": "redrive", "ignoreBackoff": True}, LocalLambdaContext("redrive"), env=env)
        if not passed["read"]:
            break
    assert cvc_directory(env) == want
    state = read_state(moto.s3_client(), BUCKET)
    assert state.certain == want and state.uncertain == set() and state.in_flight_lists == 0
