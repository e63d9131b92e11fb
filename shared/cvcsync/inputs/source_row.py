"""``SourceRow``: one record of a user export as the readers hand it on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceRow:
    """One record as read: its 1-based line, its raw fields, or why it could not be read."""

    line: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def position(self) -> str:
        return f"line {self.line}"
