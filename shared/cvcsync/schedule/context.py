"""What every scheduled task runs with: its settings, the sync's context (CVC, store, state, sink), alerts, a clock.

Also the two conventions the tasks share: how a task's options are checked, and how a scheduled task's own state
commit keeps the time of the last real sync visible to the heartbeat (``carry_last_sync``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cvcsync import clock
from cvcsync.config import (
    ENV_ALERT_QUEUE_URL,
    ENV_DEADLETTER_BACKLOG_LIMIT,
    ENV_HEARTBEAT_MAX_AGE_HOURS,
    ENV_RECONCILE_MODE,
    ENV_RECONCILE_SAMPLE,
    ENV_REDRIVE_BACKOFF,
    ENV_REDRIVE_BACKOFF_MAX,
    ENV_REDRIVE_MAX_ATTEMPTS,
    _float,
    _int,
)
from cvcsync.engine.state import ShadowState
from cvcsync.errors import ConfigurationError, InvalidInputError
from cvcsync.platform.context import SyncContext
from cvcsync.schedule.alerts import Alerter

REPORT, HEAL_STATE, HEAL_CVC = "report", "heal-state", "heal-cvc"
RECONCILE_MODES = (REPORT, HEAL_STATE, HEAL_CVC)
# Run ids of the scheduled tasks' own state commits start so: the heartbeat does not count them as syncs.
SCHEDULED_RUN_PREFIXES = ("redrive-", "reconcile-")
LAST_SYNC_META = "last_sync_at"


@dataclass(frozen=True)
class ScheduleSettings:
    redrive_max_attempts: int = 5
    redrive_backoff: float = 300.0
    redrive_backoff_max: float = 6 * 3600.0
    reconcile_mode: str = REPORT
    reconcile_sample: int = 50
    heartbeat_max_age_hours: float = 26.0
    backlog_limit: int = 100
    alert_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScheduleSettings:
        env = os.environ if env is None else env
        mode = env.get(ENV_RECONCILE_MODE, "").strip().lower() or REPORT
        if mode not in RECONCILE_MODES:
            raise ConfigurationError(f"{ENV_RECONCILE_MODE} must be one of {', '.join(RECONCILE_MODES)}, got {mode!r}")
        backoff = _float(env, ENV_REDRIVE_BACKOFF, 300.0)
        return cls(
            redrive_max_attempts=_int(env, ENV_REDRIVE_MAX_ATTEMPTS, 5),
            redrive_backoff=backoff,
            redrive_backoff_max=max(backoff, _float(env, ENV_REDRIVE_BACKOFF_MAX, 6 * 3600.0)),
            reconcile_mode=mode,
            reconcile_sample=_int(env, ENV_RECONCILE_SAMPLE, 50),
            heartbeat_max_age_hours=_float(env, ENV_HEARTBEAT_MAX_AGE_HOURS, 26.0),
            backlog_limit=_int(env, ENV_DEADLETTER_BACKLOG_LIMIT, 100, minimum=0),
            alert_queue_url=env.get(ENV_ALERT_QUEUE_URL, "").strip() or None,
        )


@dataclass
class ScheduleContext:
    """A scheduled run's world. ``sync`` is the same ``SyncContext`` the other functions use (its bucket is the
    state bucket); ``now`` and ``rng`` are injectable so tests can move time and fix the reconcile sample."""

    sync: SyncContext
    settings: ScheduleSettings = field(default_factory=ScheduleSettings)
    alerter: Alerter = field(default_factory=Alerter)
    now: Callable[[], datetime] = clock.now
    rng: random.Random = field(default_factory=random.Random)

    @property
    def bucket(self) -> str:
        return self.sync.output_bucket

    @property
    def output_prefix(self) -> str:
        return self.sync.settings.output_prefix

    def key(self, *parts: str) -> str:
        return self.sync.settings.key(*parts)

    def remaining(self) -> float | None:
        return self.sync.invocation.remaining()


# -- options ------------------------------------------------------------------------------------------------------


def read_options(task: str, options: Mapping[str, Any], spec: Mapping[str, type]) -> dict[str, Any]:
    """``options`` checked against ``spec`` (name -> int, bool or str): an unknown name or a wrong type is an
    ``InvalidInputError`` naming the option, so a typo in a timer payload fails loudly instead of being ignored."""
    checked: dict[str, Any] = {}
    for name, value in options.items():
        expected = spec.get(name)
        if expected is None:
            known = ", ".join(sorted(spec)) or "none"
            raise InvalidInputError(f"unknown option {str(name)[:64]!r} for task {task} (options: {known})")
        if expected is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidInputError(f"option {name} of task {task} must be a whole number of at least 1")
        if expected is not int and not isinstance(value, expected):
            raise InvalidInputError(f"option {name} of task {task} must be a {expected.__name__}")
        checked[name] = value
    return checked


# -- time ---------------------------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A time for a task's report and answer: milliseconds, ``Z`` (ordering times are ``clock.stamp``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the last real sync ---------------------------------------------------------------------------------------------


def is_scheduled_run(run_id: Any) -> bool:
    return isinstance(run_id, str) and run_id.startswith(SCHEDULED_RUN_PREFIXES)


def carry_last_sync(state: ShadowState) -> None:
    """Call first inside a scheduled task's ``StateStore.commit`` changes: remembers in the state when the last
    sync (not a scheduled task) committed, which the manifest, showing only the newest commit, would lose."""
    previous_run, previous_at = state.meta("run_id"), state.meta("committed_at")
    if previous_run is None or previous_at is None:
        return
    if not is_scheduled_run(previous_run):
        state.set_meta(LAST_SYNC_META, previous_at)
