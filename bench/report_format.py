"""The cells and tables every section of ``bench/RESULTS.md`` is built from, so the sections read alike: numbers
with separators, ratios, the target verdicts, Markdown tables, the "Measured ..." line under each heading.

Kept apart from the sections (``report_overhead``, ``report_sync``, ``report_changes``) and from ``report.py``, which
assembles them, so each section module imports only these and never the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

MET, NOT_MET, NO_TARGET = "met ✅", "not met ❌", "—"

Results = Mapping[str, Any]
Section = Callable[[Results], list[str]]


def number(value: float, decimals: int | None = None) -> str:
    """Thousands separators; fewer decimals as numbers grow (``decimals`` forces a count)."""
    if decimals is None:
        decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{decimals}f}"


def ratio(value: float) -> str:
    return f"{value:,.2f}×" if value < 100 else f"{value:,.0f}×"


def verdict(met: bool | None) -> str:
    return NO_TARGET if met is None else MET if met else NOT_MET


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def figure_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def key_values(mapping: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={figure_text(v)}" for k, v in (mapping or {}).items()) or "—"


def measured(data: Results) -> str:
    python = f", Python {data['python']}" if data.get("python") else ""
    return f"_Measured {data.get('generatedAt', 'at an unknown time')}{python}._"
