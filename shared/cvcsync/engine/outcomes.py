"""The outcomes a record can end in, and the run report that counts them (and checks the count)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from cvcsync.errors import CvcSyncError


class Outcome(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    REJECTED = "rejected"
    DEAD_LETTERED = "deadLettered"
    SKIPPED_BY_GUARD = "skippedByGuard"
    SUPERSEDED = "superseded"  # change events only: a later change of the same user in the same batch won
    STALE = "stale"  # older than the last change already applied for that user
    # A copy, never sent: in a file, a row of the same user id and person as a later row (which wins); in a batch
    # of changes, an event id already applied (a redelivery).
    DUPLICATE = "duplicate"
    RETRIED = "retried"  # handed back to the platform (throttling, 5xx, open circuit, deadline) to deliver again


class RunStatus(str, enum.Enum):
    """One status vocabulary for every run, whoever wrote (upload, continuation, queue, redrive, HTTP)."""

    APPLIED = "applied"  # every record that needed a write got it (or needed none: unchanged, duplicate, stale)
    PARTIAL = "partial"  # some writes went through, some records were rejected or dead-lettered
    FAILED = "failed"  # records failed (dead-lettered, rejected, handed back) and none was written nor in place
    REFUSED = "refused"  # a safety gate refused (nothing destructive sent), or a saved plan is stale
    REJECTED = "rejected"  # the input as a whole could not be read (binary, damaged, no header): nothing planned
    DRY_RUN = "dry-run"  # planned only
    CHECKPOINTED = "checkpointed"  # saved at the deadline; a new invocation continues it
    FANNED_OUT = "fanned-out"  # split into chunks applied by other invocations; the last one finishes it


FINAL_STATUSES = frozenset(
    {RunStatus.APPLIED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.REFUSED, RunStatus.REJECTED}
)
# The record is in CVC as intended, or needed no write (a copy, an older or superseded change).
_FINE = ("created", "updated", "deleted", "unchanged", "duplicate", "stale", "superseded")
_BAD = ("deadLettered", "rejected", "retried")  # not done: failed, invalid, or handed back to be tried again


def final_status(outcomes: dict[str, int], *, refused: bool) -> RunStatus:
    """The status a finished run reports: refused beats everything; else what its records ended in says."""
    if refused:
        return RunStatus.REFUSED
    fine = sum(outcomes.get(name, 0) for name in _FINE)
    bad = sum(outcomes.get(name, 0) for name in _BAD)
    if bad and not fine:
        return RunStatus.FAILED
    return RunStatus.PARTIAL if bad else RunStatus.APPLIED


class AccountingError(CvcSyncError):
    """received != Σ outcomes: a record was lost or counted twice. Always a bug; never papered over."""

    code = "AccountingMismatch"


@dataclass
class Problem:
    """One rejected or failed record, as the report shows it (no personal data beyond the user id)."""

    code: str
    message: str
    line: int | None = None
    user_id: str | None = None
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.user_id:
            out["userId"] = self.user_id
        if self.request_id:
            out["requestId"] = self.request_id
        return out


@dataclass
class GuardResult:
    name: str
    passed: bool
    detail: str
    overridden: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "overridden": self.overridden, "detail": self.detail}


def check_accounting(received: int, outcomes: dict[str, int]) -> None:
    total = sum(outcomes.values())
    if total != received:
        raise AccountingError(f"received {received} records but counted {total} outcomes: {outcomes}")


@dataclass
class RunReport:
    """What one run did, for the object store, the log and the CLI. ``finish`` checks the accounting."""

    run_id: str
    mode: str
    status: str = "planned"
    source: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""
    event_time: str = ""  # when the input's changes happened (``clock.stamp``); orders them against other writers
    rows_read: int = 0
    implied_deletions: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    planned: dict[str, int] = field(default_factory=dict)
    guards: list[GuardResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    durations_ms: dict[str, float] = field(default_factory=dict)
    dead_letters: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    approval: dict[str, Any] | None = None  # the approval marker this run met (``approvals``), used or not
    concurrency: dict[str, Any] = field(default_factory=dict)  # how the calls in flight moved (engine.concurrency)

    @property
    def received(self) -> int:
        return self.rows_read + self.implied_deletions

    @property
    def refused(self) -> bool:
        return any(not g.passed and not g.overridden for g in self.guards)

    def check(self) -> None:
        check_accounting(self.received, self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "status": self.status,
            "mode": self.mode,
            "refused": self.refused,
            "source": self.source,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "eventTime": self.event_time,
            "received": self.received,
            "rowsRead": self.rows_read,
            "impliedDeletions": self.implied_deletions,
            "outcomes": dict(self.outcomes),
            "planned": dict(self.planned),
            "guards": [g.to_dict() for g in self.guards],
            "approval": self.approval,
            "calls": dict(self.calls),
            "durationsMs": {k: round(v, 1) for k, v in self.durations_ms.items()},
            "deadLetters": self.dead_letters,
            "state": self.state,
            "messages": list(self.messages),
            "problemCount": self.problem_count,
            "concurrency": dict(self.concurrency),
            "problems": [p.to_dict() for p in self.problems],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        report = cls(run_id=data["runId"], mode=data["mode"], status=data["status"])
        report.source = data.get("source", {})
        report.started_at = data.get("startedAt", "")
        report.finished_at = data.get("finishedAt", "")
        report.event_time = data.get("eventTime", "")
        report.rows_read = data.get("rowsRead", 0)
        report.implied_deletions = data.get("impliedDeletions", 0)
        report.outcomes = dict(data.get("outcomes", {}))
        report.planned = dict(data.get("planned", {}))
        report.guards = [
            GuardResult(g["name"], g["passed"], g["detail"], g.get("overridden", False)) for g in data.get("guards", [])
        ]
        report.calls = dict(data.get("calls", {}))
        report.durations_ms = dict(data.get("durationsMs", {}))
        report.dead_letters = data.get("deadLetters", 0)
        report.approval = data.get("approval")
        report.state = data.get("state", {})
        report.messages = list(data.get("messages", []))
        report.concurrency = dict(data.get("concurrency", {}))
        report.problem_count = data.get("problemCount", 0)
        report.problems = [
            Problem(p["code"], p["message"], p.get("line"), p.get("userId"), p.get("requestId"))
            for p in data.get("problems", [])
        ]
        return report
