"""engine.settle: one rule for recording every writer's writes, and the repair of a race lost to a newer change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cvcsync.engine.settle import (
    DELETE,
    LOST_RACE,
    UPSERT,
    Write,
    last_changes,
    record_snapshot,
    repair_letters,
    settle_writes,
    snapshot_repairs,
)
from cvcsync.engine.state import UNCERTAIN, ShadowState

T1, T2, T3 = "2030-01-01T00:00:00.000000Z", "2030-01-02T00:00:00.000000Z", "2030-01-03T00:00:00.000000Z"


def record(uid: str, name: str) -> str:
    return orjson.dumps({"userId": uid, "userName": name, "groupId": "88", "groupName": "示例科技"}).decode()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ShadowState]:
    shadow = ShadowState(tmp_path / "state.sqlite")
    yield shadow
    shadow.close()


def test_writes_are_recorded_at_their_event_time(state: ShadowState) -> None:
    repairs = settle_writes(state, [Write("u1", T2, UPSERT, "h1", record("u1", "a")), Write("u2", T2, DELETE)])
    assert repairs == [] and state.get("u1") is not None and state.get("u2") is None
    assert state.last_changes(["u1", "u2"]) == {"u1": T2, "u2": T2}


def test_a_tie_goes_to_the_later_arrival(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T2, UPSERT, "h1", record("u1", "a"))])
    assert settle_writes(state, [Write("u1", T2, UPSERT, "h2", record("u1", "b"))]) == []
    assert state.get("u1") == ("h2", orjson.loads(record("u1", "b")))


def test_a_write_older_than_a_committed_upsert_lost_the_race(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T3, UPSERT, "new", record("u1", "newer"))])
    [repair] = settle_writes(state, [Write("u1", T2, UPSERT, "old", record("u1", "older"))])
    assert (repair.op, repair.at, repair.record) == (UPSERT, T3, orjson.loads(record("u1", "newer")))
    stored = state.get("u1")
    assert stored is not None and stored[0] == UNCERTAIN and stored[1]["userName"] == "newer"
    assert state.last_changes(["u1"]) == {"u1": T3}  # the newer time stands


def test_a_write_older_than_a_committed_delete_repairs_with_a_delete(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T3, DELETE)])
    [repair] = settle_writes(state, [Write("u1", T2, UPSERT, "old", record("u1", "older"))])
    assert (repair.op, repair.at, repair.record) == (DELETE, T3, None)
    stored = state.get("u1")  # CVC may hold what the older write sent: the state must not forget it
    assert stored is not None and stored[0] == UNCERTAIN and stored[1]["userName"] == "older"


def test_a_newer_snapshot_that_lacks_the_user_means_gone(state: ShadowState) -> None:
    record_snapshot(state, T3)
    assert last_changes(state, ["u9"]) == {"u9": T3}
    [repair] = settle_writes(state, [Write("u9", T2, UPSERT, "h", record("u9", "late"))])
    assert (repair.op, repair.at) == (DELETE, T3)
    record_snapshot(state, T1)  # an older snapshot never moves the time back
    assert last_changes(state, ["u9"]) == {"u9": T3}


def test_an_older_change_found_in_place_is_neither_recorded_nor_repaired(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T3, UPSERT, "h", record("u1", "a"))])
    assert settle_writes(state, [Write("u1", T2, UPSERT, "h", record("u1", "a"), changed=False)]) == []
    assert state.get("u1") == ("h", orjson.loads(record("u1", "a"))) and state.last_changes(["u1"]) == {"u1": T3}


def test_a_snapshot_repairs_users_committed_behind_its_back(state: ShadowState) -> None:
    # All recorded by generation 1, after the snapshot's plan on generation 0.
    settle_writes(
        state,
        [
            Write("listed", T1, UPSERT, "h", record("listed", "a")),  # as the snapshot lists it
            Write("changed", T1, UPSERT, "h-queue", record("changed", "queue")),  # changed behind its back
            Write("late-older", T1, UPSERT, "h", record("late-older", "b")),  # created behind its back
            Write("deleted-behind", T1, DELETE),  # deleted behind its back
            Write("late-newer", T3, UPSERT, "h", record("late-newer", "c")),  # a change after the snapshot
            Write("invalid-row", T1, UPSERT, "h", record("invalid-row", "d")),
        ],
    )
    state.mark_uncertain([("in-flight", None)])  # a running run's user: no change of its own yet
    asked: list[str] = []
    snapshot = {
        "listed": ("h", record("listed", "a")),
        "changed": ("h-hr", record("changed", "hr")),
        "deleted-behind": ("h-hr", record("deleted-behind", "hr")),
        "invalid-row": None,
    }

    def listed(ids: list[str]) -> dict[str, tuple[str, str] | None]:  # what the snapshot's plan names
        asked.extend(ids)
        return {uid: snapshot[uid] for uid in ids if uid in snapshot}

    assert snapshot_repairs(state, listed, T2, base_generation=1) == []  # nothing committed after generation 1
    repairs = {r.user_id: (r.op, r.at, r.record) for r in snapshot_repairs(state, listed, T2, base_generation=0)}
    assert repairs == {
        "changed": (UPSERT, T2, orjson.loads(record("changed", "hr"))),
        "late-older": (DELETE, T2, None),
        "deleted-behind": (UPSERT, T2, orjson.loads(record("deleted-behind", "hr"))),
    }
    assert "in-flight" not in asked and "late-newer" not in asked
    assert all(state.get(uid)[0] == UNCERTAIN for uid in repairs)  # type: ignore[index]


def test_a_newer_write_after_an_older_one_committed_behind_its_back_is_repaired_too(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T1, UPSERT, "old", record("u1", "older"))])  # generation 1, after ours (0)
    [repair] = settle_writes(state, [Write("u1", T2, UPSERT, "new", record("u1", "newer"))], base_generation=0)
    # Both writes reached CVC in an order nobody knows: ours is recorded, uncertain, and sent again.
    assert (repair.op, repair.at, repair.record) == (UPSERT, T2, orjson.loads(record("u1", "newer")))
    stored = state.get("u1")
    assert stored is not None and stored[0] == UNCERTAIN and stored[1]["userName"] == "newer"
    assert state.last_changes(["u1"]) == {"u1": T2}
    assert settle_writes(state, [Write("u1", T3, UPSERT, "x", record("u1", "x"))], base_generation=1) == []


def test_repairs_become_letters_the_redrive_reads_as_changes(state: ShadowState) -> None:
    settle_writes(state, [Write("u1", T3, UPSERT, "new", record("u1", "newer"))])
    repairs = settle_writes(state, [Write("u1", T2, UPSERT, "old", record("u1", "older"))])
    [letter] = repair_letters(repairs, run_id="run-1", source={"kind": "repair"})
    assert letter.error_code == LOST_RACE and letter.retryable and letter.kind == "record"
    assert letter.record == {
        "type": UPSERT,
        "userId": "u1",
        "eventId": None,
        "occurredAt": T3,
        "user": orjson.loads(record("u1", "newer")),
    }


def test_a_failed_write_is_the_latest_intent_and_what_loses_to_it_is_repaired_to_it(state: ShadowState) -> None:
    """A snapshot at T2 meant to delete u1 and update u2, and both writes failed (dead-lettered). Their times and
    ops are the latest intents: an older write committing later loses to them and is repaired to them, not to
    the content CVC held before."""
    settle_writes(
        state, [Write("u1", T1, UPSERT, "h", record("u1", "old")), Write("u2", T1, UPSERT, "h", record("u2", "old"))]
    )
    failed = [Write("u1", T2, DELETE, landed=False), Write("u2", T2, UPSERT, "h2", record("u2", "new"), landed=False)]
    assert settle_writes(state, failed) == []
    assert state.get("u1")[0] == UNCERTAIN and state.get("u2") == (UNCERTAIN, orjson.loads(record("u2", "new")))  # type: ignore[index]
    assert state.last_changes(["u1", "u2"]) == {"u1": T2, "u2": T2}
    late = [Write("u1", T1, UPSERT, "h3", record("u1", "late")), Write("u2", T1, UPSERT, "h3", record("u2", "late"))]
    repairs = {r.user_id: (r.op, r.at, r.record) for r in settle_writes(state, late)}
    assert repairs == {"u1": (DELETE, T2, None), "u2": (UPSERT, T2, orjson.loads(record("u2", "new")))}
