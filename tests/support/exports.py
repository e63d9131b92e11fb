"""The one way tests reach the sample HR exports in ``events/exports/``: ``export_path("wecom-members.csv")``."""

from __future__ import annotations

from pathlib import Path

EXPORTS_DIR = Path(__file__).resolve().parents[2] / "events" / "exports"


def export_path(name: str) -> Path:
    """The sample export's path; refuses names outside ``events/exports/`` and samples that do not exist."""
    path = (EXPORTS_DIR / name).resolve()
    if path.parent != EXPORTS_DIR:
        raise ValueError(f"{name!r} is not a file directly under events/exports/")
    if not path.is_file():
        raise FileNotFoundError(f"no sample export {name!r} in events/exports/")
    return path


def export_names() -> list[str]:
    """Every sample export, so a test can prove each one is used."""
    return sorted(path.name for path in EXPORTS_DIR.iterdir() if path.is_file())
