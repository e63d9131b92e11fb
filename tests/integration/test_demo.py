"""``make demo`` must keep working: run it as a newcomer would and check what it shows."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_end_to_end_and_tells_the_story() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cvcsync_dev.demo"], capture_output=True, text=True, timeout=300, check=False
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "APPLIED  mode full" in out and "created             3000" in out
    assert "created               25" in out and "deleted               30" in out and "rejected               4" in out
    assert "REFUSED  mode full" in out and "gate deletionThreshold: REFUSED" in out
    assert "line 2997: user 'E199001': userName: is required and empty" in out
    assert "CVC now holds 2995 users" in out
    assert "Stopped the emulator and moto" in out
    assert "13854724665" not in out + result.stderr  # personal data never printed in full
