"""Scheduled triggers, read into the platform-neutral ``ScheduledTask``: which task to run, with which options.

Shapes accepted (samples in ``events/schedule/``):

* FC timer trigger: ``{"triggerTime", "triggerName", "payload"}``. ``payload`` is always a string: a task name
  (``"redrive"``) or JSON, ``{"task": "reconcile", "mode": "heal-state"}`` (a JSON string, ``"\\"redrive\\""``,
  is a name too).
* AWS EventBridge (CloudWatch Events) scheduled event: ``{"source": "aws.events", "detail-type": "Scheduled
  Event", "detail": {...}, "resources": [rule ARN]}``. The task is ``detail.task`` (an input transformer can put it
  there), else a top-level ``task``, else the rule's name when it ends in ``-<task>`` (``cvc-sync-redrive``).
* A rule's constant input, EventBridge Scheduler's input, or a direct invocation: ``{"task": "heartbeat", ...}``,
  or just the task name as a string.

Everything but ``task`` is the task's options; each task checks its own. An unknown task is an
``UnknownTask`` error naming the tasks there are; a shape we do not read is an ``UnsupportedEvent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cvcsync.errors import InvalidInputError
from cvcsync.inputs.events import fields
from cvcsync.inputs.events.types import UnsupportedEvent

REDRIVE, RECONCILE, HEARTBEAT = "redrive", "reconcile", "heartbeat"
TASKS = (REDRIVE, RECONCILE, HEARTBEAT)
FC_TIMER, EVENTBRIDGE, DIRECT = "fc-timer", "eventbridge-schedule", "direct"
MAX_NAME = 64


class UnknownTask(InvalidInputError):
    """The schedule names no task, or one that does not exist: fix the trigger's payload or the rule's input."""

    code = "UnknownTask"


@dataclass(frozen=True)
class ScheduledTask:
    """One scheduled run: the task, its options, and which trigger fired it (for logs and reports)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    trigger: str = DIRECT
    trigger_name: str | None = None
    fired_at: str | None = None


def _task(name: Any, options: Mapping[str, Any], where: str, **origin: Any) -> ScheduledTask:
    if not isinstance(name, str) or not name.strip():
        raise UnknownTask(
            f"the {where} names no task: give one of {', '.join(TASKS)} "
            '(a payload "redrive", or JSON {"task": "redrive", ...})'
        )
    task = name.strip().lower()
    if task not in TASKS:
        shown = task[:MAX_NAME]
        raise UnknownTask(f"unknown task {shown!r} in the {where}: the tasks are {', '.join(TASKS)}")
    return ScheduledTask(task, {k: v for k, v in options.items() if k != "task"}, **origin)


def _from_text(text: str, where: str, **origin: Any) -> ScheduledTask:
    stripped = text.strip()
    if stripped.startswith(("{", "[", '"')):
        try:
            decoded = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            raise UnknownTask(f"the {where} looks like JSON but is not valid JSON") from None
        if isinstance(decoded, str):
            return _task(decoded, {}, where, **origin)
        if isinstance(decoded, dict):
            return _task(decoded.get("task"), decoded, where, **origin)
        raise UnknownTask(f"the {where} must be a task name or a JSON object, got a JSON {type(decoded).__name__}")
    return _task(stripped, {}, where, **origin)


def _is_fc_timer(event: Mapping[str, Any]) -> bool:
    return "triggerTime" in event and "payload" in event


def _is_aws_schedule(event: Mapping[str, Any]) -> bool:
    return event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event"


def _resources(event: Mapping[str, Any]) -> list[str]:
    """The rule ARNs of ``resources`` (a list of strings; anything else there is ignored, never iterated)."""
    resources = event.get("resources")
    return [arn for arn in resources if isinstance(arn, str)] if isinstance(resources, list) else []


def _rule_task(event: Mapping[str, Any]) -> str | None:
    """``cvc-sync-redrive`` -> ``redrive``: the task a rule's name ends with, for rules sending the bare event."""
    for arn in _resources(event):
        rule = arn.rsplit("/", 1)[-1].lower()
        for task in TASKS:
            if rule == task or rule.endswith(("-" + task, "_" + task)):
                return task
    return None


def parse_scheduled_event(event: Any) -> ScheduledTask:
    """The task a scheduled trigger (or a direct invocation) asks for; see the module docstring for the shapes."""
    if isinstance(event, str):
        return _from_text(event, "invocation payload")
    if not isinstance(event, Mapping):
        raise UnsupportedEvent(f"a scheduled event must be a JSON object or a task name, got {type(event).__name__}")
    if _is_fc_timer(event):
        payload = event.get("payload")
        origin = {
            "trigger": FC_TIMER,
            "trigger_name": fields.text(event.get("triggerName")),
            "fired_at": fields.text(event.get("triggerTime")),
        }
        if not isinstance(payload, str):
            raise UnknownTask("the FC timer payload must be a string (a task name or JSON)")
        return _from_text(payload, "FC timer payload", **origin)
    if _is_aws_schedule(event):
        resources = _resources(event)
        origin = {
            "trigger": EVENTBRIDGE,
            "trigger_name": resources[0].rsplit("/", 1)[-1] if resources else None,
            "fired_at": fields.text(event.get("time")),
        }
        detail = event.get("detail")
        if isinstance(detail, Mapping) and "task" in detail:
            return _task(detail.get("task"), detail, "scheduled event's detail", **origin)
        if "task" in event:
            return _task(event.get("task"), {}, "scheduled event", **origin)
        return _task(
            _rule_task(event), {}, "scheduled event (no detail.task, and the rule's name ends in no task)", **origin
        )
    if "task" in event:
        return _task(event.get("task"), event, "event")
    keys = ", ".join(sorted(str(k) for k in event)[:10]) or "none"
    raise UnsupportedEvent(f"not a timer or scheduled event, and no task given (keys: {keys})")
