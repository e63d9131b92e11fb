"""The redrive on the memory store and the in-process CVC: one test per rule of ``schedule/redrive.py``."""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from cvcsync import clock
from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import CvcSettings
from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events.queue import parse_queue_event
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink
from cvcsync.outputs.parked import ParkedLetters
from cvcsync.runs.changes import ChangeSyncResult, sync_changes
from cvcsync.runs.export import sync_source
from cvcsync.schedule import alerts
from cvcsync.schedule.context import LAST_SYNC_META, ScheduleSettings
from cvcsync.schedule.redrive import Redrive, run_redrive
from support.inprocess_cvc import ENDPOINT, KEY, Gateway, WsgiAdapter
from support.schedule import START, World, change_letter, delete_letter, upload_letter, user, world

SETTINGS = ScheduleSettings(redrive_max_attempts=3, redrive_backoff=60, redrive_backoff_max=600)


def redrive(w: World, **options: Any) -> dict[str, Any]:
    return Redrive(w.ctx, options).run().to_dict()


def letters(w: World) -> list[DeadLetter]:
    return [s.letter for page in w.sink.pages() for s in page]


def parked(w: World) -> ParkedLetters:
    return ParkedLetters(w.store, "state", "cvc-sync/parked/")


class RefuseDeletes:
    """CVC refusing every DeleteUser for a business reason (Success false), while ``refusing``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.refusing = True

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.refusing and "Action=DeleteUser" in environ.get("QUERY_STRING", ""):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [orjson.dumps({"RequestId": "r-biz", "Success": False, "ErrorCode": 10001, "Message": "refused"})]
        return self.gateway(environ, start_response)

    def client(self) -> CvcClient:
        session = requests.Session()
        session.mount(ENDPOINT, WsgiAdapter(self))
        settings = CvcSettings(endpoint=ENDPOINT, max_attempts=1)
        return CvcClient(Credentials(KEY.id, KEY.secret), settings=settings, session=session, sleep=lambda s: None)


def upsert_change(uid: str, name: str, at: str) -> dict[str, Any]:
    user_ = {"userId": uid, "userName": name, "groupId": "88", "groupName": "示例科技"}
    return {"type": "upsert", "eventId": f"u-{uid}-{at}", "occurredAt": at, "user": user_}


def changes(w: World, change: dict[str, Any]) -> ChangeSyncResult:
    """One queue message carrying ``change``, through the queue path the queue function runs."""
    record = {"messageId": str(change["eventId"]), "body": orjson.dumps(change).decode(), "eventSource": "aws:sqs"}
    return sync_changes(parse_queue_event({"Records": [record]}), w.ctx.sync)


def users_in_state(w: World, tmp_path: Path) -> dict[str, dict[str, Any]]:
    state = w.ctx.sync.state.checkout(tmp_path)
    try:
        return {uid: orjson.loads(record) for uid, _, record in state.users()}
    finally:
        state.close()


def test_due_letters_are_applied_remembered_and_removed(tmp_path: Path) -> None:
    w = world(settings=SETTINGS)
    w.sink.put([upload_letter("u-1"), upload_letter("u-2"), delete_letter("u-3")])
    w.cvc.client.create_batch([user("u-3")])  # a user the failed delete should have removed
    w.clock.advance(minutes=1)
    result = redrive(w)
    assert result["outcomes"]["applied"] == 3 and result["read"] == 3 and result["status"] == "done"
    assert set(w.cvc.users()) == {"u-1", "u-2"}
    assert letters(w) == [] and parked(w).count() == 0
    assert set(users_in_state(w, tmp_path)) == {"u-1", "u-2"}
    report = orjson.loads(w.store.get_bytes("state", f"cvc-sync/reports/redrive/{result['runId']}.json") or b"")
    assert report["outcomes"]["applied"] == 3


def test_backoff_is_respected_per_letter() -> None:
    w = world(settings=SETTINGS)
    w.sink.put([upload_letter("u-1")])
    w.clock.advance(seconds=59)
    assert redrive(w)["outcomes"]["notDue"] == 1 and w.cvc.users() == {}
    assert w.cvc.app.stats.snapshot(0)["calls"] == {}  # not even a call
    w.clock.advance(seconds=1)
    assert redrive(w)["outcomes"]["applied"] == 1


def test_a_failure_is_rescheduled_with_its_history_and_a_doubled_wait() -> None:
    w = world(settings=SETTINGS)
    w.cvc.refuse.add("u-1")
    w.sink.put([upload_letter("u-1")])
    w.clock.advance(minutes=1)
    result = redrive(w)
    assert result["outcomes"]["rescheduled"] == 1 and result["failed"][0]["code"] == "10001"
    [again] = letters(w)
    assert again.redrives == 1 and again.history[0]["errorCode"] == "ServiceUnavailable"
    assert again.error_code == "10001" and again.request_id == "r-biz" and again.failed_at == "2024-05-01T02:01:00.000Z"
    w.clock.advance(seconds=119)  # the second wait is 2 x 60 s
    assert redrive(w)["outcomes"]["notDue"] == 1
    w.clock.advance(seconds=1)
    assert redrive(w)["outcomes"]["rescheduled"] == 1
    assert letters(w)[0].redrives == 2


def test_after_the_last_attempt_the_letter_is_parked_with_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    w = world(settings=SETTINGS)
    w.cvc.refuse.add("u-1")
    w.sink.put([upload_letter("u-1")])
    outcomes = []
    for _ in range(SETTINGS.redrive_max_attempts):
        w.clock.advance(seconds=SETTINGS.redrive_backoff_max)
        outcomes.append(redrive(w)["outcomes"])
    assert [o["rescheduled"] for o in outcomes] == [1, 1, 0] and outcomes[-1]["parked"] == 1
    assert letters(w) == []
    [key] = list(parked(w).keys())
    body = orjson.loads(w.store.get_bytes("state", key) or b"")
    assert body["reason"] == "MaxAttempts" and len(body["failures"]) == SETTINGS.redrive_max_attempts + 1
    assert [f["errorCode"] for f in body["failures"]] == ["ServiceUnavailable", "10001", "10001", "10001"]
    assert all(f["failedAt"] and f["requestId"] for f in body["failures"])
    assert [a.code for a in w.alerter.raised] == [alerts.LETTERS_PARKED]


def test_malformed_messages_and_non_users_are_parked_at_once() -> None:
    w = world(settings=SETTINGS)
    message = DeadLetter(
        record={"body": "{not json", "attributes": {}},
        source={"kind": "sqs", "messageId": "m-9"},
        error_code="MalformedMessage",
        error_message="not JSON",
        kind="message",
    )
    not_a_user = upload_letter("u-2", record={"userId": "u-2", "userName": ""})
    w.sink.put([message, not_a_user, change_letter("u-3", occurred_at=START, op="rename")])
    result = redrive(w)
    assert result["outcomes"]["parked"] == 3 and letters(w) == []
    reasons = sorted(p["reason"].split(":")[0] for p in result["parked"])
    assert reasons == ["InvalidLetter", "InvalidLetter", "NeverRetryable"]
    assert w.cvc.users() == {}


def test_a_newer_letter_of_the_same_user_wins_and_the_older_is_a_duplicate() -> None:
    w = world(settings=SETTINGS)
    w.sink.put(
        [upload_letter("u-1", name="old"), upload_letter("u-1", name="new", failed_at=START + timedelta(seconds=5))]
    )
    w.clock.advance(minutes=2)
    result = redrive(w)
    assert result["outcomes"]["applied"] == 1 and result["outcomes"]["duplicate"] == 1
    assert w.cvc.users()["u-1"]["userName"] == "new" and letters(w) == []


def test_order_across_pages_the_newest_write_of_a_user_stands() -> None:
    """Page 1 applies an older letter, page 2's newer one must still apply; the other way round it is stale."""
    older = change_letter("u-1", occurred_at=START - timedelta(hours=2), name="older")
    newer = change_letter("u-1", occurred_at=START - timedelta(hours=1), name="newer")
    for first, second, expected in ((older, newer, (2, 0)), (newer, older, (1, 1))):
        w = world(settings=SETTINGS)
        w.sink.put([replace(first, run_id="a-first")])  # object keys sort by run id: "a-..." is page 1
        w.sink.put([replace(second, run_id="b-second")])
        w.clock.advance(minutes=2)
        result = redrive(w, pageSize=1)
        assert result["pages"] == 2 and letters(w) == []
        assert (result["outcomes"]["applied"], result["outcomes"]["stale"]) == expected
        assert w.cvc.users()["u-1"]["userName"] == "newer"


def test_a_change_older_than_the_users_last_change_is_stale(tmp_path: Path) -> None:
    w = world(settings=SETTINGS)

    def changes(state: Any) -> None:
        state.record_changes([("u-1", "2024-05-01T01:30:00.000000Z", "delete")])

    w.ctx.sync.state.commit(changes, run_id="queue-run")
    w.sink.put([change_letter("u-1", occurred_at=START - timedelta(hours=1))])  # 01:00, before the delete
    w.clock.advance(minutes=2)
    result = redrive(w)
    assert result["outcomes"]["stale"] == 1 and w.cvc.users() == {} and letters(w) == []


def test_a_letter_older_than_a_queue_change_is_stale_before_its_backoff_without_the_snapshot() -> None:
    """The queue's change is in the journal, not in a generation: the redrive reads the page's users one by one
    (``engine.views``), sees it, and removes the stale letter at once, never downloading the snapshot."""
    w = world(settings=SETTINGS)
    export = b"userId,userName,groupId,groupName\nu-0,from an upload,88,G\n"
    sync_source(io.BytesIO(export), name="a.csv", source={"key": "a.csv"}, mode="delta", ctx=w.ctx.sync)
    newer = upsert_change("u-1", "newer", (START + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert changes(w, newer).report.outcomes["created"] == 1
    w.sink.put([change_letter("u-1", occurred_at=START, failed_at=START + timedelta(minutes=10), name="older")])
    opened: list[str] = []
    original = w.store.open
    w.store.open = lambda bucket, key: opened.append(key) or original(bucket, key)  # type: ignore[method-assign]
    result = redrive(w)  # the letter's backoff has not passed: stale all the same
    assert result["outcomes"]["stale"] == 1 and letters(w) == []
    assert w.cvc.users()["u-1"]["userName"] == "newer" and opened == []


def test_the_redrive_folds_a_long_journal_into_a_generation_after_its_pass() -> None:
    """Change runs on a large directory never compact inline (no request waits for a whole generation): the timer's
    redrive does, once the journal is past ``compact_pending``; a short journal is left alone."""
    w = world(settings=SETTINGS)
    states = w.ctx.sync.state
    states.compact_pending = 1000  # the change runs' own compaction: not reached
    for n in range(2):
        changes(w, upsert_change(f"u-{n}", "甲", "2024-05-01T08:00:00Z"))  # an intent and a write entry each
    assert len(list(w.store.list_keys("state", states.prefix + "journal/"))) == 4
    states.compact_pending = 4
    assert run_redrive(w.ctx, {})["compactedGeneration"] is None  # four: not past the limit
    states.compact_pending = 1000
    changes(w, upsert_change("u-2", "乙", "2024-05-01T08:00:00Z"))
    states.compact_pending = 4
    done = run_redrive(w.ctx, {})
    assert done["compactedGeneration"] == 1 and list(w.store.list_keys("state", states.prefix + "journal/")) == []
    assert sorted(users_in_state(w, Path(tempfile.mkdtemp()))) == ["u-0", "u-1", "u-2"]


def test_an_upload_letter_older_than_a_later_sync_of_the_user_is_stale() -> None:
    w = world(settings=SETTINGS)
    export = b"userId,userName,groupId,groupName\nu-1,from a later upload,88,G\n"
    # A real upload sync records its changes at the run's start: now, after the letter's failure a day ago.
    report = sync_source(
        io.BytesIO(export), name="later.csv", source={"key": "later.csv"}, mode="delta", ctx=w.ctx.sync
    )
    assert report.outcomes["created"] == 1
    w.sink.put([upload_letter("u-1", failed_at=START - timedelta(days=1))])
    w.clock.advance(days=1)
    assert redrive(w)["outcomes"]["stale"] == 1 and w.cvc.users()["u-1"]["userName"] == "from a later upload"


def test_only_event_times_decide_not_when_a_change_was_committed(tmp_path: Path) -> None:
    """A delete of 10:00 is refused and dead-lettered; an upsert of 09:00 arrives later. The failed delete is the
    user's latest intent all the same (engine.settle records it), so the late upsert is stale and never re-creates
    the departed employee; the redrive then deletes (issue 11, defect 1)."""
    w = world(settings=SETTINGS)
    refusing = RefuseDeletes(w.cvc.gateway)
    w.ctx.sync.cvc = refusing.client()
    assert changes(w, upsert_change("u-1", "甲", "2024-05-01T08:00:00Z")).report.outcomes["created"] == 1
    refused = changes(w, {"type": "delete", "eventId": "d", "occurredAt": "2024-05-01T10:00:00Z", "userId": "u-1"})
    assert refused.report.outcomes["deadLettered"] == 1 and len(letters(w)) == 1
    refusing.refusing = False
    late = changes(w, upsert_change("u-1", "甲 (late)", "2024-05-01T09:00:00Z"))
    assert late.report.outcomes["stale"] == 1 and w.cvc.users()["u-1"]["userName"] == "甲"
    w.clock.now = clock.now() + timedelta(minutes=1)  # the letter's backoff has passed
    result = redrive(w)
    assert (result["outcomes"]["applied"], result["outcomes"]["stale"]) == (1, 0)
    assert w.cvc.users() == {} and letters(w) == []
    state = w.ctx.sync.state.checkout(tmp_path)
    try:
        assert state.last_changes(["u-1"]) == {"u-1": "2024-05-01T10:00:00.000000Z"}  # the delete's event time
    finally:
        state.close()


def test_change_letters_record_their_time_and_event_id(tmp_path: Path) -> None:
    w = world(settings=SETTINGS)
    letter = change_letter("u-1", occurred_at=START - timedelta(minutes=30))
    w.sink.put([letter])
    w.clock.advance(minutes=2)
    assert redrive(w)["outcomes"]["applied"] == 1
    state = w.ctx.sync.state.checkout(tmp_path)
    try:
        assert state.last_changes(["u-1"]) == {"u-1": "2024-05-01T01:30:00.000000Z"}
        assert state.seen_events([letter.record["eventId"]]) == {letter.record["eventId"]}
        # When it was processed is a different field, never the change's time (only event times order changes).
        synced_at = state.db.execute("SELECT synced_at FROM users").fetchone()[0]
        assert clock.parse(synced_at) is not None and synced_at != "2024-05-01T01:30:00.000000Z"
    finally:
        state.close()


def test_a_redrive_commit_keeps_the_last_real_sync_time_visible(tmp_path: Path) -> None:
    w = world(settings=SETTINGS)
    w.ctx.sync.state.commit(lambda state: None, run_id="upload-run")
    w.sink.put([upload_letter("u-1")])
    w.clock.advance(minutes=2)
    redrive(w)
    manifest = orjson.loads(w.store.get_bytes("state", "cvc-sync/state/manifest.json") or b"")
    assert manifest["runId"].startswith("redrive-")
    state = w.ctx.sync.state.checkout(tmp_path)
    try:
        assert state.meta(LAST_SYNC_META) is not None and state.meta("run_id") == manifest["runId"]
    finally:
        state.close()


class CrashingSink(ObjectDeadLetterSink):
    """Crashes (like a killed invocation) on the first ``remove``: everything before it happened."""

    crash = True

    def remove(self, handles: Any) -> int:
        if self.crash:
            self.crash = False
            raise RuntimeError("invocation killed")
        return super().remove(handles)


@pytest.mark.parametrize("refuse", [False, True])
def test_a_crash_before_removal_duplicates_at_worst_a_harmless_retry(refuse: bool, tmp_path: Path) -> None:
    w = world(settings=SETTINGS)
    sink = CrashingSink(w.store, "state", "cvc-sync/dead-letters/")
    w.ctx.sync.sink = sink
    if refuse:
        w.cvc.refuse.add("u-1")
    sink.put([upload_letter("u-1"), upload_letter("u-2")])
    w.clock.advance(minutes=1)
    with pytest.raises(RuntimeError):
        redrive(w)
    creates_after_crash = w.cvc.app.stats.snapshot(0)["calls"].get("CreateUser", 0)
    result = redrive(w, ignoreBackoff=True)
    remaining = letters(w)
    if refuse:  # u-1 failed and was re-put before the crash: the copy and the original are one letter again
        assert [letter.record["userId"] for letter in remaining] == ["u-1"]
        assert remaining[0].redrives == 2  # the copy (1) was retried once more, never both
        assert result["outcomes"]["duplicate"] == 1 and result["outcomes"]["alreadyApplied"] == 1
    else:
        assert remaining == [] and result["outcomes"]["alreadyApplied"] == 2
        assert w.cvc.app.stats.snapshot(0)["calls"].get("CreateUser", 0) == creates_after_crash  # no call at all
    assert set(w.cvc.users()) == ({"u-2"} if refuse else {"u-1", "u-2"})


def test_the_deadline_leaves_the_sink_untouched_for_the_next_timer() -> None:
    w = world(settings=SETTINGS, deadline_in=5.0)  # under twice the 10 s margin: no page is taken
    w.sink.put([upload_letter("u-1")])
    w.clock.advance(minutes=1)
    result = redrive(w)
    assert result["status"] == "deadline" and result["read"] == 0 and len(letters(w)) == 1


def test_max_letters_bounds_a_pass_and_the_next_pass_resumes() -> None:
    w = world(settings=SETTINGS)
    w.sink.put([upload_letter(f"u-{n}") for n in range(5)])
    w.clock.advance(minutes=1)
    first = redrive(w, maxLetters=2, pageSize=2)
    assert first["status"] == "max-letters" and first["outcomes"]["applied"] == 2 and len(letters(w)) == 3
    assert redrive(w)["outcomes"]["applied"] == 3 and len(w.cvc.users()) == 5


def test_an_open_circuit_stops_the_pass_leaves_the_rest_and_marks_it(caplog: pytest.LogCaptureFixture) -> None:
    w = world(settings=SETTINGS, batch_size=1)
    w.cvc.set_faults(error_rate=1.0)
    w.sink.put([upload_letter(f"u-{n}") for n in range(8)])
    w.clock.advance(minutes=1)
    caplog.set_level(logging.ERROR)
    result = redrive(w, pageSize=8)
    assert result["status"] == "circuit-open"
    assert result["outcomes"]["pending"] == 8 - result["outcomes"]["rescheduled"] > 0
    assert len(letters(w)) == 8  # every letter still there: retried ones rescheduled, the rest untouched
    marker = alerts.read_circuit_marker(w.store, "state", "cvc-sync/")
    assert marker is not None and marker["source"] == "redrive" and marker["requestId"] == "req-test"


def test_unknown_options_are_refused() -> None:
    w = world()
    with pytest.raises(InvalidInputError, match="unknown option 'dryrun' for task redrive"):
        redrive(w, dryrun=True)
    with pytest.raises(InvalidInputError, match="pageSize"):
        redrive(w, pageSize=0)


def test_an_upload_letter_orders_by_its_runs_start_when_it_carries_it() -> None:
    """Run A started 01:00 and failed u-1 at 02:00; run B started 01:30 and wrote u-1: B's intent is newer."""
    w = world(settings=SETTINGS)

    def run_b(state: Any) -> None:
        state.upsert([("u-1", "h", orjson.dumps(user("u-1", "from run B")).decode())])
        state.record_changes([("u-1", "2024-05-01T01:30:00.000000Z", "upsert")])

    w.ctx.sync.state.commit(run_b, run_id="run-b")
    source = {"key": "users.csv", "line": 2, "userId": "u-1", "operation": "upsert"}
    w.sink.put([upload_letter("u-1", source={**source, "occurredAt": "2024-05-01T01:00:00.000000Z"})])
    w.clock.advance(minutes=2)
    assert redrive(w)["outcomes"]["stale"] == 1 and w.cvc.users() == {}
