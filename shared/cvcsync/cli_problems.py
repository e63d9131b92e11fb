"""Rejected rows as a person at a terminal wants them: one line per reason, with the fix, not one line per row.

A file of 3,000 rows without the enterprise fails 3,000 times for the same reason; the console says so once::

    3,000 rows (lines 2–3001): groupId: is required — set CVCSYNC_GROUP_ID or --group-id

Rows are grouped by what is wrong with them (every field and reason of the row, the line and the user id left
out), so the counts of the groups add up to the rows rejected. A few details that differ from row to row inside
one reason are left out of the grouping key too: masked values in parentheses, a length, the line a duplicate
reappears on, a JSON parser's position. The full list, row by row, stays in the run's report files
(``reports/…/<run>.problems.csv``, ``.problems.ndjson``); only the console groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvcsync.config import ENV_COLUMN_MAP, ENV_ENCODING, ENV_GROUP_ID, ENV_GROUP_NAME

EXAMPLES = 3  # lines (or user ids) named as examples of a group
MAX_GROUPS_SHOWN = 10
_CACHE_SIZE = 10_000

# Row-to-row details inside one reason, and what the reason says instead. Masked values (``a***@x.com``,
# ``138****0000``) are in parentheses; they differ per row and are personal data besides.
_VARYING = (
    (re.compile(r" \((?:masked\b[^()]*|[^()]*\*\*\*[^()]*)\)"), ""),
    (re.compile(r"is \d+ characters long; at most (\d+) allowed"), r"is longer than the \1 characters allowed"),
    (re.compile(r"appears again on line \d+, which wins"), "appears again on a later line, which wins"),
    (re.compile(r"has \d+ cells but the header has (\d+)"), r"does not have the header's \1 cells"),
    (re.compile(r"^item \d+ "), ""),
    (re.compile(r"(is not valid JSON): .*"), r"\1"),
    (re.compile(r", request id [^)]*"), ""),
)


def _column_hint(name: str, example: str) -> str:
    return f"""no column was recognised as {name}: name yours in {ENV_COLUMN_MAP}='{{"{example}": "{name}"}}'"""


_GROUP_ID_HINT = f"set {ENV_GROUP_ID} or --group-id"
_GROUP_NAME_HINT = f"set {ENV_GROUP_NAME} or --group-name"
_GROUP_BOTH = f"set {ENV_GROUP_ID} and {ENV_GROUP_NAME} (or --group-id and --group-name)"
_HINTS = {
    "groupId: is required": _GROUP_ID_HINT,
    "groupId: is required and empty": _GROUP_ID_HINT,
    "groupName: is required": _GROUP_NAME_HINT,
    "groupName: is required and empty": _GROUP_NAME_HINT,
    # "is required" without "and empty": the row has no such column at all, so the header was not recognised.
    "userId: is required": _column_hint("userId", "人员编码"),
    "userName: is required": _column_hint("userName", "名字"),
    "contains a NUL byte (binary data, or a damaged export)": (
        f"a UTF-16 file without a byte-order mark? declare it: --encoding utf-16 (or {ENV_ENCODING})"
    ),
}


def reason_of(problem: Mapping[str, Any], cache: dict[str, str] | None = None) -> str:
    """What is wrong with the row, without where it is (line) or who it is (user id): the grouping key.

    ``cache``: reasons already worked out, by the text left once line and user are gone (a million rows failing
    alike cost one pass of the patterns, not a million)."""
    text = str(problem.get("message") or problem.get("code") or "unknown problem")
    line, user_id = problem.get("line"), problem.get("userId")
    if line is not None:
        text = text.removeprefix(f"line {line}: ")
    if user_id:
        text = text.removeprefix(f"user {user_id!r}: ").removeprefix(f"user {user_id!r} ")
    if cache is not None and text in cache:
        return cache[text]
    reason = text
    for pattern, replacement in _VARYING:
        reason = pattern.sub(replacement, reason)
    reason = reason.strip() or str(problem.get("code") or "unknown problem")
    if cache is not None:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[text] = reason
    return reason


def hint_for(reason: str) -> str | None:
    """The fix for the common reasons, or None. A row's reason may list several fields ("a: …; b: …")."""
    hints = list(dict.fromkeys(_HINTS[part] for part in (p.strip() for p in reason.split("; ")) if part in _HINTS))
    if _GROUP_ID_HINT in hints and _GROUP_NAME_HINT in hints:
        hints = [h for h in hints if h not in (_GROUP_ID_HINT, _GROUP_NAME_HINT)] + [_GROUP_BOTH]
    return "; ".join(hints) or None


@dataclass
class ProblemGroup:
    """Rows rejected (or users failed) for one reason: how many, where, and one message to show for a single row."""

    reason: str
    count: int = 0
    lines: list[int] = field(default_factory=list)  # the first EXAMPLES lines, in input order
    first_line: int | None = None
    last_line: int | None = None
    contiguous: bool = True
    users: list[str] = field(default_factory=list)  # the first EXAMPLES user ids of rows without a line
    message: str = ""
    _previous: int | None = field(default=None, repr=False)

    def add(self, problem: Mapping[str, Any]) -> None:
        self.count += 1
        if self.count == 1:
            self.message = str(problem.get("message") or self.reason)
        line = problem.get("line")
        if isinstance(line, int):
            if self._previous is not None and line != self._previous + 1:
                self.contiguous = False
            self._previous = line
            self.first_line = line if self.first_line is None else min(self.first_line, line)
            self.last_line = line if self.last_line is None else max(self.last_line, line)
            if len(self.lines) < EXAMPLES:
                self.lines.append(line)
        elif problem.get("userId") and len(self.users) < EXAMPLES:
            self.users.append(str(problem["userId"]))

    def describe(self) -> str:
        """One line: the row's own message for a single row, else the count, where, the reason; then the fix."""
        hint = hint_for(self.reason)
        suffix = f" — {hint}" if hint else ""
        if self.count == 1:
            return self.message + suffix
        if self.first_line is not None and self.last_line is not None:
            if self.contiguous:
                where = f"lines {self.first_line}–{self.last_line}"
            else:
                where = f"lines {self.first_line}–{self.last_line}, e.g. {', '.join(map(str, self.lines))}"
            return f"{self.count:,} rows ({where}): {self.reason}{suffix}"
        if self.users:
            more = ", …" if self.count > len(self.users) else ""
            return f"{self.count:,} users ({', '.join(repr(u) for u in self.users)}{more}): {self.reason}{suffix}"
        return f"{self.count:,} records: {self.reason}{suffix}"


def group_problems(problems: Iterable[Mapping[str, Any]]) -> list[ProblemGroup]:
    """Problems (``{"code", "message", "line"?, "userId"?}``, the report's shape) by reason, largest group first."""
    groups: dict[str, ProblemGroup] = {}
    cache: dict[str, str] = {}
    for problem in problems:
        reason = reason_of(problem, cache)
        group = groups.get(reason)
        if group is None:
            group = groups[reason] = ProblemGroup(reason)
        group.add(problem)
    return sorted(groups.values(), key=lambda g: (-g.count, g.first_line if g.first_line is not None else 0))


def grouped_lines(groups: list[ProblemGroup], *, more_at: str | None = None) -> list[str]:
    """At most MAX_GROUPS_SHOWN lines, then one saying what is left and where the full list is."""
    lines = [group.describe() for group in groups[:MAX_GROUPS_SHOWN]]
    rest = groups[MAX_GROUPS_SHOWN:]
    if rest:
        rows = sum(g.count for g in rest)
        lines.append(
            f"… and {len(rest)} more reasons ({rows:,} rows)" + (f": every row in {more_at}" if more_at else "")
        )
    elif more_at:
        lines.append(f"every row: {more_at}")
    return lines


__all__ = ["ProblemGroup", "group_problems", "grouped_lines", "hint_for", "reason_of"]
