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
    missed_deletions,
    record_snapshot,
    repair_letters,
    settle_writes,
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


def test_missed_deletions_are_users_committed_behind_a_snapshots_back(state: ShadowState) -> None:
    settle_writes(
        state,
        [
            Write("listed", T1, UPSERT, "h", record("listed", "a")),
            Write("late-older", T1, UPSERT, "h", record("late-older", "b")),  # committed while the plan applied
            Write("late-newer", T3, UPSERT, "h", record("late-newer", "c")),  # a change after the snapshot
        ],
    )
    state.mark_uncertain([("in-flight", None)])  # a running run's user: its own commit settles it
    asked: list[str] = []

    def listed(ids: list[str]) -> set[str]:  # what the snapshot's plan names
        asked.extend(ids)
        return {"listed"} & set(ids)

    assert [(r.user_id, r.op, r.at) for r in missed_deletions(state, listed, T2)] == [("late-older", DELETE, T2)]
    assert "in-flight" not in asked and "late-newer" not in asked


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
