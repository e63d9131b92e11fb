"""The heartbeat: is cvc-sync still doing its job? Three checks, each an alert when it fails, silence otherwise.

* Stale sync (``CVCSYNC_ALERT_STALE_SYNC``): the newest commit of the shadow state by a sync (upload or queue) is
  older than ``CVCSYNC_HEARTBEAT_MAX_AGE_HOURS``, or there is none. Read from the state's ``manifest.json``
  (``committedAt``); when the newest commit is a scheduled task's own (a redrive or a heal), from the state's
  ``last_sync_at``, which those commits carry forward, so a redrive never hides a dead HR feed.
* Dead-letter backlog (``CVCSYNC_ALERT_DEADLETTER_BACKLOG``): more than ``CVCSYNC_DEADLETTER_BACKLOG_LIMIT``
  letters wait in the sink (SQS's approximate count for a queue sink).
* Circuit open (``CVCSYNC_ALERT_CIRCUIT_OPEN``): the marker ``<output prefix>alerts/circuit-open`` says a circuit
  breaker opened since the previous heartbeat (on the first heartbeat: within the maximum age), so each opening
  is alerted once.

The heartbeat remembers when it ran and what it raised in ``<output prefix>alerts/heartbeat.json``.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from cvcsync import clock
from cvcsync.outputs.parked import PARKED_DIR, ParkedLetters
from cvcsync.schedule import alerts
from cvcsync.schedule.context import LAST_SYNC_META, ScheduleContext, is_scheduled_run, iso, read_options

log = logging.getLogger(__name__)

OPTIONS = {"maxAgeHours": int, "backlogLimit": int}
MEMORY = "alerts/heartbeat.json"


def last_sync_at(ctx: ScheduleContext) -> datetime | None:
    """When a sync last committed the shadow state (None: never)."""
    state_store = ctx.sync.state
    raw = ctx.sync.store.get_bytes(ctx.bucket, state_store.manifest_key)
    if raw is None:
        return None
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict):
        log.warning("the state manifest is not a JSON object: reading the state itself")
        manifest = {"runId": "redrive-unknown"}
    if not is_scheduled_run(manifest.get("runId")):
        return clock.parse(manifest.get("committedAt"))
    with tempfile.TemporaryDirectory(prefix="cvcsync-heartbeat-") as tmp:
        state = state_store.checkout(Path(tmp))
        try:
            return clock.parse(state.meta(LAST_SYNC_META))
        finally:
            state.close()


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def run_heartbeat(ctx: ScheduleContext, options: dict[str, Any]) -> dict[str, Any]:
    checked = read_options("heartbeat", options, OPTIONS)
    max_age = timedelta(hours=float(checked.get("maxAgeHours", ctx.settings.heartbeat_max_age_hours)))
    limit = int(checked.get("backlogLimit", ctx.settings.backlog_limit))
    store, bucket = ctx.sync.store, ctx.bucket
    now = ctx.now()
    memory_key = ctx.key(MEMORY)
    previous = _read_json(store.get_bytes(bucket, memory_key))
    raised: list[alerts.Alert] = []
    checks: dict[str, Any] = {}

    last = last_sync_at(ctx)
    checks["lastSyncAt"] = iso(last) if last else None
    checks["lastSyncAgeHours"] = _hours(now - last) if last else None
    if last is None or now - last > max_age:
        since = f"since {iso(last)} ({_hours(now - last)} h)" if last else "ever (the shadow state has no commit)"
        raised.append(
            alerts.Alert(
                alerts.STALE_SYNC,
                f"no successful sync {since}; the limit is {_hours(max_age)} h",
                {"lastSyncAt": checks["lastSyncAt"], "maxAgeHours": _hours(max_age)},
            )
        )

    sink = ctx.sync.sink
    backlog = sink.count(limit) if sink is not None else None
    checks["deadLetters"] = backlog
    checks["deadLetterLimit"] = limit
    checks["parked"] = ParkedLetters(store, bucket, ctx.key(PARKED_DIR)).count(1000)
    if backlog is not None and backlog > limit:
        raised.append(
            alerts.Alert(
                alerts.DEADLETTER_BACKLOG,
                f"more than {limit} dead letters wait ({backlog} counted); see the redrive's reports",
                {"deadLetters": backlog, "limit": limit, "parked": checks["parked"]},
            )
        )

    marker = alerts.read_circuit_marker(store, bucket, ctx.output_prefix)
    opened = clock.parse(marker.get("openedAt")) if marker else None
    since_previous = clock.parse(previous.get("ranAt")) if previous else None
    window_start = since_previous or now - max_age
    checks["circuitOpenedAt"] = iso(opened) if opened else None
    if marker and opened and opened > window_start:
        raised.append(
            alerts.Alert(
                alerts.CIRCUIT_OPEN,
                f"a circuit breaker opened at {iso(opened)} ({marker.get('source')}): CVC was failing systemically",
                {"openedAt": iso(opened), "reason": marker.get("reason"), "source": marker.get("source")},
            )
        )

    for alert in raised:
        ctx.alerter.raise_alert(alert, source="heartbeat", request_id=ctx.sync.invocation.request_id)
    memory = {"ranAt": iso(now), "alerts": [a.code for a in raised]}
    store.put_bytes(bucket, memory_key, orjson.dumps(memory), content_type="application/json")
    if not raised:
        log.info("heartbeat: healthy", extra={"checks": checks})
    return {
        "task": "heartbeat",
        "status": "alerted" if raised else "ok",
        "alerts": [a.to_dict() for a in raised],
        "checks": checks,
    }


def _read_json(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
