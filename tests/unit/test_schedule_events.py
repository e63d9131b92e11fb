"""Scheduled triggers: every sample in events/schedule/ read into the task it names, and the refusals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cvcsync.errors import ConfigurationError
from cvcsync.inputs.events.timer import DIRECT, EVENTBRIDGE, FC_TIMER, ScheduledTask, UnknownTask, parse_scheduled_event
from cvcsync.inputs.events.types import UnsupportedEvent
from cvcsync.platform.triggers.common import decode_event
from cvcsync.platform.triggers.schedule import handle
from support.events import load_event, sample_paths

# sample -> the task it must become (None: refused with UnknownTask)
EXPECTED: dict[str, ScheduledTask | None] = {
    "schedule/fc-timer-redrive.json": ScheduledTask(
        "redrive", {}, FC_TIMER, "cvc-sync-redrive", "2024-05-01T02:00:00Z"
    ),
    "schedule/fc-timer-redrive-options.json": ScheduledTask(
        "redrive", {"maxLetters": 500, "pageSize": 50}, FC_TIMER, "cvc-sync-redrive", "2024-05-01T02:00:00Z"
    ),
    "schedule/fc-timer-reconcile.json": ScheduledTask(
        "reconcile", {}, FC_TIMER, "cvc-sync-reconcile", "2024-05-01T02:00:00Z"
    ),
    "schedule/fc-timer-reconcile-heal-state.json": ScheduledTask(
        "reconcile", {"mode": "heal-state"}, FC_TIMER, "cvc-sync-reconcile-nightly", "2024-05-01T02:00:00Z"
    ),
    "schedule/fc-timer-heartbeat.json": ScheduledTask(
        "heartbeat", {"maxAgeHours": 26}, FC_TIMER, "cvc-sync-heartbeat", "2024-05-01T02:00:00Z"
    ),
    "schedule/fc-timer-no-task.json": None,
    "schedule/aws-rule-input-redrive.json": ScheduledTask("redrive", {}, DIRECT),
    "schedule/aws-scheduled-event-detail-heartbeat.json": ScheduledTask(
        "heartbeat", {}, EVENTBRIDGE, "cvc-sync-hourly", "2024-05-01T02:00:00Z"
    ),
    "schedule/aws-scheduled-event-rule-name.json": ScheduledTask(
        "reconcile", {}, EVENTBRIDGE, "cvc-sync-reconcile", "2024-05-01T02:00:00Z"
    ),
    "schedule/aws-scheduled-event-unknown-task.json": None,
}


def test_every_schedule_sample_is_listed_here() -> None:
    assert sample_paths("schedule") == sorted(EXPECTED)


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_each_sample_becomes_its_task_as_fc_bytes_and_as_a_lambda_dict(sample: str) -> None:
    expected = EXPECTED[sample]
    for event in (decode_event(load_event(sample, raw=True)), load_event(sample)):
        if expected is None:
            with pytest.raises(UnknownTask) as caught:
                parse_scheduled_event(event)
            assert "redrive, reconcile, heartbeat" in caught.value.message
        else:
            assert parse_scheduled_event(event) == expected


@pytest.mark.parametrize(
    ("payload", "task", "options"),
    [
        ("redrive", "redrive", {}),
        ("  Heartbeat \n", "heartbeat", {}),
        ('"reconcile"', "reconcile", {}),
        ('{"task": "reconcile", "mode": "heal-cvc", "sample": 10}', "reconcile", {"mode": "heal-cvc", "sample": 10}),
    ],
)
def test_fc_timer_payload_is_a_name_or_json(payload: str, task: str, options: dict[str, Any]) -> None:
    event = {"triggerTime": "2024-05-01T02:00:00Z", "triggerName": "t", "payload": payload}
    parsed = parse_scheduled_event(orjson.loads(orjson.dumps(event)))
    assert (parsed.name, parsed.options, parsed.trigger) == (task, options, FC_TIMER)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("", "names no task"),
        ("cleanup", "unknown task 'cleanup'"),
        ('{"task": 7}', "names no task"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON list"),
    ],
)
def test_bad_timer_payloads_are_refused_clearly(payload: str, why: str) -> None:
    event = {"triggerTime": "2024-05-01T02:00:00Z", "triggerName": "t", "payload": payload}
    with pytest.raises(UnknownTask, match=why.replace("[", r"\[")):
        parse_scheduled_event(event)


def test_a_non_string_fc_payload_and_foreign_events_are_refused() -> None:
    with pytest.raises(UnknownTask, match="must be a string"):
        parse_scheduled_event({"triggerTime": "x", "triggerName": "t", "payload": {"task": "redrive"}})
    with pytest.raises(UnsupportedEvent, match="keys: Records"):
        parse_scheduled_event({"Records": []})
    with pytest.raises(UnsupportedEvent):
        parse_scheduled_event([1, 2])


def test_an_unknown_task_name_is_shown_truncated() -> None:
    with pytest.raises(UnknownTask) as caught:
        parse_scheduled_event({"task": "x" * 500})
    assert len(caught.value.message) < 200


def test_eventbridge_top_level_task_and_plain_direct_invocation() -> None:
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "task": "heartbeat"}
    assert parse_scheduled_event(event).name == "heartbeat"
    assert parse_scheduled_event("reconcile") == ScheduledTask("reconcile")
    direct = parse_scheduled_event({"task": "redrive", "ignoreBackoff": True})
    assert direct.options == {"ignoreBackoff": True} and direct.trigger == DIRECT


def test_the_trigger_needs_the_state_bucket() -> None:
    with pytest.raises(ConfigurationError, match="CVCSYNC_STATE_BUCKET"):
        handle(load_event("schedule/fc-timer-heartbeat.json", raw=True), None, env={"CVCSYNC_LOG_LEVEL": "ERROR"})
