"""What the ``cvcsync`` command shows: JSON results, progress on stderr, a run's summary table, exit codes.

Progress goes to stderr, on a terminal (rewritten in place) or when asked with ``--progress`` (one line per
update, for logs); stdout carries only the result, so ``cvcsync … --json | jq`` keeps working.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import orjson

from cvcsync.cli_problems import group_problems, grouped_lines

# The README's exit codes (its table, "The `cvcsync` command"); one per run status family (``RunStatus``).
EXIT_OK, EXIT_CVC, EXIT_USAGE, EXIT_INVALID, EXIT_REFUSED, EXIT_DRIFT = 0, 1, 2, 3, 4, 5
# Containers whose bytes hold no lines to count: gzip, and zip (an .xlsx workbook).
PACKED_MAGIC = (b"\x1f\x8b", b"PK\x03\x04")
PROGRESS_INTERVAL = 0.5  # seconds between two progress lines, at most one in between


def emit(value: Any, stream: IO[str] | None = None) -> None:
    """A result as JSON on stdout: indented for a person at a terminal, one line for a pipe."""
    out = stream or sys.stdout
    option = orjson.OPT_INDENT_2 if out.isatty() else 0
    out.write(orjson.dumps(value, option=option).decode() + "\n")
    out.flush()


class _StatusLine:
    """One line of progress on ``stream``: rewritten in place on a terminal, a new line each time elsewhere."""

    def __init__(self, stream: IO[str], enabled: bool | None) -> None:
        self.stream = stream
        self.in_place = stream.isatty()
        self.enabled = self.in_place if enabled is None else enabled
        self._width = 0

    def show(self, text: str, *, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.in_place:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write(f"\r{text}{pad}" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Progress:
    """``upserted 300/1000`` while applying, on stderr when it is a terminal or when asked (``--progress``)."""

    def __init__(self, label: str, total: int, stream: IO[str], enabled: bool | None = None) -> None:
        self.label, self.total = label, total
        self._line = _StatusLine(stream, enabled)
        self.enabled = self._line.enabled
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        self._line.show(f"{self.label} {self.done}/{self.total}", final=self.done >= self.total)


def human_size(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


class ReadProgress(io.RawIOBase):
    """A file object that counts what is read through it and says how far planning got.

    Wrapping the input (rather than hooking the planner or the readers) shows progress for any path that reads a
    file: ``planning: 41% (11.2 of 27.3 MB, 120,000 lines)``, at most every PROGRESS_INTERVAL seconds, and once
    more, complete, at the end of the file. A gzip file is counted in compressed bytes (what the file's size is
    measured in) and without lines, which only the decompressed text has; so is a zip (an .xlsx workbook). Seeking
    is passed through (a workbook is read in place, not copied first); a byte read twice counts twice, so what is
    shown is capped at the file's size. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        raw: IO[bytes],
        *,
        total: int | None,
        stream: IO[str],
        enabled: bool | None = None,
        label: str = "planning",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._raw = raw
        self.total = total
        self.label = label
        self.read_bytes = 0
        self.lines = 0
        self.packed: bool | None = None  # gzip or zip: known after the first bytes
        self._head = b""
        self._line = _StatusLine(stream, enabled)
        self._clock = clock
        self._last = clock()
        self._finished = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        seekable = getattr(self._raw, "seekable", None)
        return bool(seekable()) if seekable is not None else False

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._count(data)
        return n

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(size if size is not None else -1)
        self._count(data)
        return data

    def _count(self, data: bytes) -> None:
        if not data:
            self.finish()
            return
        if self.packed is None:  # the readers sniff with tiny reads: decide on the first four bytes
            self._head = (self._head + data)[:4]
            if len(self._head) == 4 or self._head.startswith(PACKED_MAGIC[0]):
                self.packed = self._head.startswith(PACKED_MAGIC)
        self.read_bytes += len(data)
        if not self.packed:
            self.lines += data.count(b"\n")
        if self._line.enabled and not self._finished:
            now = self._clock()
            if now - self._last >= PROGRESS_INTERVAL:
                self._last = now
                self._line.show(self.describe())

    def describe(self) -> str:
        lines = "" if self.packed else f", {self.lines:,} lines"
        if self.total:
            read = min(self.read_bytes, self.total)  # a workbook's bytes may be read twice (seeking): never past 100%
            percent = int(read * 100 / self.total)
            done, total = human_size(read), human_size(self.total)
            if done.split()[1:] == total.split()[1:]:  # "11.2 of 27.3 MB"
                done = done.split()[0]
            size = f"{done} of {total}"
            compressed = " compressed" if self.packed else ""
            return f"{self.label}: {percent}% ({size}{compressed}{lines})"
        return f"{self.label}: {human_size(self.read_bytes)} read{lines}"

    def finish(self) -> None:
        """The complete line, once (at the end of the file, or when the run moves on to applying)."""
        if not self._finished and self._line.enabled and self.read_bytes:
            self._finished = True
            self._line.show(self.describe(), final=True)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def summary_table(
    report: Mapping[str, Any],
    stream: IO[str],
    problems: Iterable[Mapping[str, Any]] | None = None,
    problems_at: str | None = None,
) -> None:
    """The run at a glance, for a person at a terminal; rejected rows grouped by reason (``cli_problems``).

    ``problems``: every problem of the run (default: the ones the report holds); ``problems_at``: where the
    run's full list is, named when the console shows less than all of it.
    """
    source = report["source"].get("file") or f"{report['source'].get('bucket')}/{report['source'].get('key')}"
    lines = [
        f"run {report['runId']}  {report['status'].upper()}  mode {report['mode']}  {source}",
        f"received {report['received']} "
        f"({report['rowsRead']} rows read, {report['impliedDeletions']} implied deletions)",
    ]
    planned_or_done = report["planned"] if report["status"] == "dry-run" else report["outcomes"]
    width = max(len(k) for k in planned_or_done)
    lines += [f"  {name:<{width}}  {count:>8}" for name, count in planned_or_done.items() if count]
    for guard in report["guards"]:
        mark = "ok" if guard["passed"] else ("OVERRIDDEN" if guard["overridden"] else "REFUSED")
        lines.append(f"  gate {guard['name']}: {mark} — {guard['detail']}")
    lines += [f"  ! {message}" for message in report["messages"]]
    if report["problemCount"]:
        groups = group_problems(report["problems"] if problems is None else problems)
        shown = sum(g.count for g in groups)
        lines += [f"  problem: {text}" for text in grouped_lines(groups, more_at=problems_at)]
        if shown < report["problemCount"] and not problems_at:
            lines.append(f"  … {report['problemCount'] - shown} more problems in the report")
    calls = ", ".join(f"{k} {v}" for k, v in report["calls"].items()) or "none"
    lines.append(f"CVC calls: {calls}; dead letters: {report['deadLetters']}")
    stream.write("\n".join(lines) + "\n")


__all__ = [
    "EXIT_CVC",
    "EXIT_DRIFT",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "Progress",
    "ReadProgress",
    "emit",
    "human_size",
    "summary_table",
]
