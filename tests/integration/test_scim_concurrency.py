"""Concurrent SCIM requests against moto's create-only writes and the emulator: several writers of one user are
serialised by its lock (no lost update, CVC ends as the last document says), one userName is created once, the
deletion limit lets exactly ``limit`` removals through however many race, and different users never wait."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cvcsync.http_api.app import HttpApi
from cvcsync.platform import services
from support.http_api import Answer
from support.scim_api import SCIM_ENV, STATE_BUCKET, patch, scim, user


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> Iterator[dict[str, str]]:
    moto.s3_client().create_bucket(Bucket=STATE_BUCKET)
    yield {**function_env, **SCIM_ENV}
    services.clear_cache()


def at_once(calls: list[Callable[[], Answer]]) -> list[Answer]:
    """Run every call in its own thread, released together; their answers in order."""
    answers: list[Answer | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def keys(moto: Any, prefix: str) -> list[str]:
    listing = moto.s3_client().list_objects_v2(Bucket=STATE_BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_writers_of_one_user_take_turns_and_none_is_lost(env: dict[str, str], emulator: Any, moto: Any) -> None:
    api = HttpApi(env)
    made = scim(api, "POST", "/Users", user("one@example.com", display="起")).json()
    path = f"/Users/{made['id']}"
    names = [f"名{n}" for n in range(6)]
    answers = at_once(
        [
            lambda name=name: scim(api, "PATCH", path, patch({"op": "replace", "path": "displayName", "value": name}))
            for name in names
        ]
    )
    assert [a.status for a in answers] == [200] * len(names), [a.body for a in answers if a.status != 200]
    versions = sorted(int(a.json()["meta"]["version"][3:-1]) for a in answers)
    assert versions == list(range(2, 2 + len(names)))  # each write saw the one before it
    final = scim(api, "GET", path).json()
    assert final["meta"]["version"] == f'W/"{1 + len(names)}"'
    assert {u["userId"]: u["userName"] for u in emulator.users()} == {"one@example.com": final["displayName"]}
    assert not keys(moto, "cvc-sync/scim/locks/")


def test_one_username_created_at_once_is_created_once(env: dict[str, str], emulator: Any) -> None:
    api = HttpApi(env)
    answers = at_once([lambda: scim(api, "POST", "/Users", user("twice@example.com", display="重")) for _ in range(5)])
    statuses = sorted(a.status for a in answers)
    assert statuses == [201, 409, 409, 409, 409], [a.body for a in answers]
    assert all(a.json()["scimType"] == "uniqueness" for a in answers if a.status == 409)
    listed = scim(api, "GET", "/Users").json()
    assert listed["totalResults"] == 1 and [u["userId"] for u in emulator.users()] == ["twice@example.com"]


def test_racing_removals_never_pass_the_deletion_limit(env: dict[str, str], emulator: Any, moto: Any) -> None:
    api = HttpApi({**env, "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR": "3"})
    ids = [scim(api, "POST", "/Users", user(f"r{n}@example.com", display=f"甲{n}")).json()["id"] for n in range(8)]
    off = patch({"op": "Replace", "path": "active", "value": "False"})
    answers = at_once([lambda scim_id=scim_id: scim(api, "PATCH", f"/Users/{scim_id}", off) for scim_id in ids])
    assert sorted(a.status for a in answers) == [200] * 3 + [403] * 5
    assert len(emulator.users()) == 5
    assert len(keys(moto, "cvc-sync/scim/deletions/")) == 3


def test_different_users_never_wait_for_each_other(env: dict[str, str], emulator: Any, moto: Any) -> None:
    api = HttpApi(env)
    answers = at_once([lambda n=n: scim(api, "POST", "/Users", user(f"p{n}@example.com")) for n in range(8)])
    assert [a.status for a in answers] == [201] * 8
    assert len(emulator.users()) == 8
    assert len(keys(moto, "cvc-sync/scim/users/")) == 8
