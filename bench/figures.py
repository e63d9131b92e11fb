"""Where every benchmark leaves its figures: ``bench/results/<script>.json``, read by ``bench/report.py``."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_figures(script: str, figures: dict[str, Any], *, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``figures`` (plus when and under which Python) as ``<results_dir>/<script>.json``; atomic."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{script}.json"
    data = {
        "script": script,
        "generatedAt": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "python": platform.python_version(),
        **figures,
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    partial.replace(path)
    return path
