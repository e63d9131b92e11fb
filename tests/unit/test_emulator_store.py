"""The emulator's two stores behave the same: upsert, capacity, atomic batches, paging order, threads."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcsync_dev.emulator.store import CapacityExceeded, MemoryStore, SqliteStore, Store, User


def user(user_id: str, name: str = "name", **optional: Any) -> User:
    return User(user_id=user_id, user_name=name, group_id="88", group_name="示例科技", **optional)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "users.db")
    yield made
    made.close()


def test_upsert_creates_and_sets_create_time(store: Store) -> None:
    store.upsert([user("u1", depart_name="研发部")], capacity=10, now_ms=1000)
    got = store.get("u1")
    assert got == user("u1", depart_name="研发部", create_time=1000)


def test_update_replaces_fields_and_keeps_create_time(store: Store) -> None:
    store.upsert([user("u1", user_email="a@example.com")], capacity=10, now_ms=1000)
    store.upsert([user("u1", name="renamed", user_tel="123")], capacity=10, now_ms=2000)
    got = store.get("u1")
    assert got is not None
    assert (got.user_name, got.user_tel, got.user_email, got.create_time) == ("renamed", "123", None, 1000)


def test_later_entry_of_a_batch_wins(store: Store) -> None:
    store.upsert([user("u1", name="first"), user("u1", name="second")], capacity=1, now_ms=5)
    assert store.count() == 1
    got = store.get("u1")
    assert got is not None and got.user_name == "second"


def test_capacity_refuses_the_whole_batch(store: Store) -> None:
    store.upsert([user("a"), user("b")], capacity=3, now_ms=1)
    with pytest.raises(CapacityExceeded) as caught:
        store.upsert([user("c"), user("d")], capacity=3, now_ms=2)
    assert (caught.value.current, caught.value.added, caught.value.capacity) == (2, 2, 3)
    assert [u.user_id for u in store.all()] == ["a", "b"]


def test_updates_do_not_count_against_capacity(store: Store) -> None:
    store.upsert([user("a"), user("b")], capacity=2, now_ms=1)
    store.upsert([user("a", name="x"), user("b", name="y")], capacity=2, now_ms=2)
    assert [u.user_name for u in store.all()] == ["x", "y"]


def test_delete_counts_only_existing_users(store: Store) -> None:
    store.upsert([user("a"), user("b")], capacity=10, now_ms=1)
    assert store.delete(["a", "missing", "a"]) == 1
    assert store.get("a") is None
    assert store.count() == 1


def test_page_is_in_code_point_order_with_total(store: Store) -> None:
    ids = ["b", "a", "é", "Z", "10", "9", "用户"]
    store.upsert([user(i) for i in ids], capacity=100, now_ms=1)
    total, first = store.page(0, 4)
    _, rest = store.page(4, 4)
    assert total == len(ids)
    assert [u.user_id for u in first + rest] == sorted(ids)
    assert store.page(100, 4) == (len(ids), [])


def test_clear_empties_the_store(store: Store) -> None:
    store.upsert([user("a")], capacity=10, now_ms=1)
    store.clear()
    assert (store.count(), store.all(), store.get("a")) == (0, [], None)


def test_concurrent_batches_are_all_applied(store: Store) -> None:
    def worker(thread: int) -> None:
        for batch in range(10):
            store.upsert([user(f"t{thread}-b{batch}-{i}") for i in range(20)], capacity=10_000, now_ms=1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 8 * 10 * 20
    assert store.page(0, 5)[0] == 1600


def test_concurrent_batches_never_overflow_capacity(store: Store) -> None:
    refused: list[int] = []

    def worker(thread: int) -> None:
        for batch in range(5):
            try:
                store.upsert([user(f"t{thread}-{batch}-{i}") for i in range(10)], capacity=155, now_ms=1)
            except CapacityExceeded:
                refused.append(thread)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 150
    assert len(refused) == 30 - 15


def test_sqlite_keeps_users_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    first = SqliteStore(path)
    first.upsert([user("a", user_mobile="13812341234")], capacity=10, now_ms=42)
    first.close()
    second = SqliteStore(path)
    try:
        assert second.get("a") == user("a", user_mobile="13812341234", create_time=42)
    finally:
        second.close()


def test_user_shapes_leave_out_absent_optional_fields() -> None:
    request = {"userId": "u", "userName": "n", "groupId": "g", "groupName": "G", "departId": "d", "other": "x"}
    made = User.from_camel(request)
    assert made.to_api() == {
        "UserId": "u",
        "UserName": "n",
        "GroupId": "g",
        "GroupName": "G",
        "DepartId": "d",
        "CreateTime": 0,
    }
    assert made.to_camel() == {
        "userId": "u",
        "userName": "n",
        "groupId": "g",
        "groupName": "G",
        "departId": "d",
        "createTime": 0,
    }


# One operation: ("upsert", ids) or ("delete", ids), over a small id space so that operations collide.
_ids = st.lists(st.sampled_from(["a", "b", "c", "d", "é", "用"]), min_size=1, max_size=4)
_operations = st.lists(st.tuples(st.sampled_from(["upsert", "delete"]), _ids), max_size=12)


@settings(max_examples=40, deadline=None)
@given(operations=_operations, capacity=st.integers(min_value=0, max_value=6))
def test_memory_and_sqlite_agree(operations: list[tuple[str, list[str]]], capacity: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        stores: list[Store] = [MemoryStore(), SqliteStore(Path(folder) / "h.db")]
        outcomes: list[list[object]] = [[], []]
        for index, made in enumerate(stores):
            for step, (operation, ids) in enumerate(operations):
                if operation == "upsert":
                    try:
                        made.upsert([user(i, name=f"n{step}") for i in ids], capacity=capacity, now_ms=step)
                        outcomes[index].append("ok")
                    except CapacityExceeded as exc:
                        outcomes[index].append(("full", exc.current, exc.added))
                else:
                    outcomes[index].append(made.delete(ids))
            outcomes[index].append(made.all())
            outcomes[index].append(made.page(1, 2))
            made.close()
        assert outcomes[0] == outcomes[1]
