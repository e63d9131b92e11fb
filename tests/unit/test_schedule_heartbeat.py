"""The heartbeat's three alerts, each on its own, and silence when all is well; the alert queue; the settings."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from cvcsync import clock
from cvcsync.errors import ConfigurationError
from cvcsync.schedule import alerts
from cvcsync.schedule.context import ScheduleSettings, carry_last_sync
from cvcsync.schedule.heartbeat import run_heartbeat
from support.schedule import World, upload_letter, world

SETTINGS = ScheduleSettings(heartbeat_max_age_hours=24, backlog_limit=3)


def synced(w: World, *, run_id: str = "upload-run") -> None:
    """A sync commits the state now (the clock of the manifest is the real one: move the test clock to it)."""
    w.ctx.sync.state.commit(lambda state: None, run_id=run_id)
    manifest = orjson.loads(w.store.get_bytes("state", "cvc-sync/state/manifest.json") or b"")
    committed = clock.parse(manifest["committedAt"])
    assert committed is not None
    w.clock.now = committed + timedelta(minutes=5)


def codes(result: dict[str, Any]) -> list[str]:
    return [a["code"] for a in result["alerts"]]


def test_silence_when_healthy(caplog: pytest.LogCaptureFixture) -> None:
    w = world(settings=SETTINGS)
    synced(w)
    w.sink.put([upload_letter("u-1")])
    caplog.set_level(logging.INFO)
    result = run_heartbeat(w.ctx, {})
    assert result["status"] == "ok" and result["alerts"] == [] and w.alerter.raised == []
    assert result["checks"]["deadLetters"] == 1 and result["checks"]["lastSyncAgeHours"] == 0.08
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    memory = orjson.loads(w.store.get_bytes("state", "cvc-sync/alerts/heartbeat.json") or b"")
    assert memory["alerts"] == [] and memory["ranAt"]


def test_no_sync_within_the_maximum_age(caplog: pytest.LogCaptureFixture) -> None:
    w = world(settings=SETTINGS)
    synced(w)
    w.clock.advance(hours=25)
    caplog.set_level(logging.ERROR)
    result = run_heartbeat(w.ctx, {})
    assert codes(result) == [alerts.STALE_SYNC]
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.code == alerts.STALE_SYNC  # type: ignore[attr-defined]  # the stable code alarms match on
    assert codes(run_heartbeat(w.ctx, {"maxAgeHours": 48})) == []


def test_a_state_that_never_synced_is_stale() -> None:
    w = world(settings=SETTINGS)
    result = run_heartbeat(w.ctx, {})
    assert codes(result) == [alerts.STALE_SYNC] and "ever" in result["alerts"][0]["message"]


def test_a_redrive_commit_does_not_hide_a_stale_sync() -> None:
    w = world(settings=SETTINGS)
    synced(w)
    w.ctx.sync.state.commit(carry_last_sync, run_id="redrive-later")  # newest commit: the redrive's
    w.clock.advance(hours=25)
    result = run_heartbeat(w.ctx, {})
    assert codes(result) == [alerts.STALE_SYNC]
    assert result["checks"]["lastSyncAgeHours"] == pytest.approx(25.08, abs=0.01)


def test_a_dead_letter_backlog_past_the_limit() -> None:
    w = world(settings=SETTINGS)
    synced(w)
    w.sink.put([upload_letter(f"u-{n}") for n in range(4)])
    result = run_heartbeat(w.ctx, {})
    assert codes(result) == [alerts.DEADLETTER_BACKLOG] and result["alerts"][0]["details"]["limit"] == 3
    assert codes(run_heartbeat(w.ctx, {"backlogLimit": 10})) == []


def test_a_circuit_opening_is_alerted_once() -> None:
    w = world(settings=SETTINGS)
    synced(w)
    assert codes(run_heartbeat(w.ctx, {})) == []
    w.clock.advance(minutes=10)
    opened = w.clock.now - timedelta(minutes=1)
    alerts.mark_circuit_open(w.store, "state", "cvc-sync/", reason="InternalError x5", source="queue", now=opened)
    first = run_heartbeat(w.ctx, {})
    assert codes(first) == [alerts.CIRCUIT_OPEN] and first["alerts"][0]["details"]["source"] == "queue"
    w.clock.advance(minutes=10)
    assert codes(run_heartbeat(w.ctx, {})) == []  # the same opening is not alerted again


def test_an_old_opening_before_the_first_heartbeat_window_is_not_alerted() -> None:
    w = world(settings=SETTINGS)
    synced(w)
    old = w.clock.now - timedelta(hours=30)
    alerts.mark_circuit_open(w.store, "state", "cvc-sync/", reason="x", source="redrive", now=old)
    assert codes(run_heartbeat(w.ctx, {})) == []


class RecordingSqs:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessage")
        self.sent.append(kwargs)
        return {"MessageId": "m-1"}


def test_alerts_also_go_to_the_alert_queue() -> None:
    w = world(settings=SETTINGS)
    sqs = RecordingSqs()
    w.ctx.alerter = alerts.Alerter("https://sqs.example/alerts", lambda: sqs)
    run_heartbeat(w.ctx, {})
    [message] = sqs.sent
    body = orjson.loads(message["MessageBody"])
    assert message["QueueUrl"] == "https://sqs.example/alerts"
    assert body["code"] == alerts.STALE_SYNC and body["source"] == "heartbeat" and body["requestId"] == "req-test"


def test_an_undeliverable_alert_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    w = world(settings=SETTINGS)
    w.ctx.alerter = alerts.Alerter("https://sqs.example/alerts", lambda: RecordingSqs(fail=True))
    caplog.set_level(logging.ERROR)
    run_heartbeat(w.ctx, {})
    assert [r.code for r in caplog.records] == [alerts.STALE_SYNC, alerts.UNDELIVERED]  # type: ignore[attr-defined]


def test_settings_from_the_environment() -> None:
    settings = ScheduleSettings.from_env(
        {
            "CVCSYNC_REDRIVE_MAX_ATTEMPTS": "7",
            "CVCSYNC_REDRIVE_BACKOFF_SECONDS": "30",
            "CVCSYNC_RECONCILE_MODE": "Heal-CVC",
            "CVCSYNC_DEADLETTER_BACKLOG_LIMIT": "0",
            "CVCSYNC_ALERT_QUEUE_URL": " https://sqs.example/a ",
        }
    )
    assert (settings.redrive_max_attempts, settings.redrive_backoff, settings.redrive_backoff_max) == (7, 30.0, 21600)
    assert (settings.reconcile_mode, settings.backlog_limit, settings.alert_queue_url) == (
        "heal-cvc",
        0,
        "https://sqs.example/a",
    )
    assert ScheduleSettings.from_env({}) == ScheduleSettings()
    with pytest.raises(ConfigurationError, match="CVCSYNC_RECONCILE_MODE"):
        ScheduleSettings.from_env({"CVCSYNC_RECONCILE_MODE": "fix"})
    with pytest.raises(ConfigurationError, match="CVCSYNC_HEARTBEAT_MAX_AGE_HOURS"):
        ScheduleSettings.from_env({"CVCSYNC_HEARTBEAT_MAX_AGE_HOURS": "0"})
