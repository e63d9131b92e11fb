"""The scheduled trigger: an FC timer or an EventBridge (CloudWatch Events) schedule runs one task.

The task comes from the timer's payload or the rule's input (``events.timer``); it runs under its lease, so
overlapping timers never run it twice at once (the second answers ``lease-held`` and does nothing). Everything
lives in ``CVCSYNC_STATE_BUCKET``: dead letters, parked letters, state, reports, leases, alert markers.

An unknown task or option raises: a misconfigured schedule should fail visibly in the platform's metrics, not
succeed quietly every night.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from cvcsync.config import ENV_STATE_BUCKET, SyncSettings
from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.inputs.events.timer import parse_scheduled_event
from cvcsync.platform import services
from cvcsync.platform.runtime import Invocation
from cvcsync.platform.triggers.common import decode_event, invocation_of, shape_answer
from cvcsync.schedule.alerts import Alerter
from cvcsync.schedule.context import ScheduleContext, ScheduleSettings
from cvcsync.schedule.runner import run_task

log = logging.getLogger(__name__)


def schedule_context(invocation: Invocation, env: Mapping[str, str]) -> ScheduleContext:
    """The clients and settings of a scheduled run, from the environment (kept per warm container)."""
    bucket = SyncSettings.from_env(env).state_bucket
    if not bucket:
        raise ConfigurationError(
            f"the scheduled function needs {ENV_STATE_BUCKET}: its dead letters and state are there"
        )
    settings = ScheduleSettings.from_env(env)
    alerter = Alerter(settings.alert_queue_url, lambda: services.sqs_client(env))
    sync = services.build_context(invocation, bucket, inline=None, env=env, reads_files=False)
    return ScheduleContext(sync, settings, alerter)


def handle(event: Any, context: Any, *, env: Mapping[str, str] | None = None) -> Any:
    env = os.environ if env is None else env
    with invocation_of(context, env) as invocation:
        try:
            task = parse_scheduled_event(decode_event(event))
            result = run_task(task, schedule_context(invocation, env))
        except InvalidInputError as exc:  # an unknown task or option: the schedule's configuration is wrong
            log.error("scheduled run refused", extra={"code": exc.code, "detail": exc.message})
            raise
        return shape_answer(result, invocation)
