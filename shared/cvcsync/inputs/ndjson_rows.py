"""The records of an NDJSON export: one JSON object per physical line; a line that is not one is an error row."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from cvcsync.inputs.lines import Lines
from cvcsync.inputs.source_row import SourceRow


def read_ndjson(lines: Lines) -> Iterator[SourceRow]:
    flagged = lines.flagged
    for number, line in enumerate(lines, start=1):
        if flagged and number in flagged:
            yield SourceRow(number, error=flagged.pop(number))
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if line.strip():
                yield SourceRow(number, error=f"is not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield SourceRow(number, error=f"must be a JSON object, got {type(value).__name__}")
            continue
        yield SourceRow(number, value)
