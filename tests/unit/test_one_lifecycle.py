"""The lifecycle is one object (issue 11): no writer sends to CVC, marks users in flight or commits writes to the
state except through ``runs.run.Run``. A second copy of those steps is where one gets skipped, so this test reads
the package's source and fails when a new writer calls them directly."""

from __future__ import annotations

import re
from pathlib import Path

import cvcsync

PACKAGE = Path(cvcsync.__file__).parent

# step -> the modules allowed to call it: Run itself, and the one commit that records no run's writes (heal-state
# rebuilds the state from CVC's directory and keeps the running runs' in-flight lists).
STEPS = {
    r"\bApplier\(": {"runs/run.py"},
    r"\.mark_in_flight\(": {"runs/run.py", "runs/lifecycle.py"},  # lifecycle calls run.mark_in_flight()
    r"\bsettle_writes\(": {"runs/run.py"},
    r"\.state\.commit\(": {"runs/run.py", "schedule/reconcile_task.py"},
}


def _calls(pattern: str) -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if re.search(pattern, line) and not line.lstrip().startswith(("def ", "#")):
                found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_only_run_sends_marks_and_commits() -> None:
    for pattern, allowed in STEPS.items():
        assert _calls(pattern) <= allowed, pattern


def test_heal_state_is_the_only_commit_outside_run_and_it_keeps_in_flight_lists() -> None:
    text = (PACKAGE / "schedule" / "reconcile_task.py").read_text(encoding="utf-8")
    commits = [line for line in text.splitlines() if re.search(r"\.state\.commit\(", line)]
    assert len(commits) == 1 and "settles_in_flight=False" in commits[0]


def test_lifecycle_calls_mark_in_flight_only_on_a_run() -> None:
    text = (PACKAGE / "runs" / "lifecycle.py").read_text(encoding="utf-8")
    assert all("run.mark_in_flight()" in line for line in text.splitlines() if ".mark_in_flight(" in line)
