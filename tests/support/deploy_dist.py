"""A ``dist/`` as ``make package`` leaves it, for the deploy script's tests: zips and their manifest (real hashes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from deploy import package

ARTEFACTS = ["layer", "http_api", "object_upload", "queue_changes", "scheduled"]


def fake_dist(root: Path, target: str) -> Path:
    """``root/<fc|lambda>/`` with one small zip per artefact and the manifest ``deploy/package.py`` writes."""
    platform = "fc" if target == "fc" else "lambda"
    folder = root / platform
    folder.mkdir(parents=True, exist_ok=True)
    artefacts = []
    for name in ARTEFACTS:
        path = folder / f"{name}.zip"
        path.write_bytes(f"zip of {name}".encode())
        data = path.read_bytes()
        artefacts.append(package.Artefact(path, len(data), hashlib.sha256(data).hexdigest()))
    package.write_manifest(folder, platform, artefacts, None)
    return folder
