"""The security checks' summary for bench/RESULTS.md: each check run for real, its verdict and figures.

- bandit over shared/, functions/ and deploy/ (the configuration of ``make lint``);
- pip-audit over constraints.txt through deploy/audit.py (SKIPPED, never passed, when its database is unreachable);
- the DEBUG-log leak test over a demo-sized upload, queue and HTTP run (no secret, token, signature, HTTP-auth key,
  full mobile or e-mail in logs or reports);
- the emulator's and the HTTP API's refusal of tampered, replayed and expired requests (the tests that say so).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from figures import write_figures

ROOT = Path(__file__).resolve().parents[1]
PYTEST_CHECKS = {
    "no secret or personal data in DEBUG logs and reports": ["tests/integration/test_security_logs.py"],
    "emulator refuses tampered, replayed and expired requests": [
        "tests/integration/test_emulator.py",
        "tests/unit/test_emulator_nonces.py",
        "-k",
        "signature or forged or tamper or replay or nonce or expired or stale or timestamp",
    ],
    "HTTP API refuses tampered, replayed and expired requests": [
        "tests/unit/test_http_signing.py",
        "tests/unit/test_http_auth.py",
    ],
}


def run(command: list[str], *, stderr: bool = True) -> tuple[int, str, float]:
    """Exit status, output (stdout, then stderr unless ``stderr=False``) and seconds of one command."""
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + (done.stderr if stderr else ""), time.monotonic() - started


def bandit() -> dict[str, Any]:
    command = [sys.executable, "-m", "bandit", "-q", "-c", "pyproject.toml", "-r", "shared", "functions", "deploy"]
    code, output, seconds = run([*command, "-f", "json"], stderr=False)
    try:
        report = json.loads(output)
        issues = len(report.get("results", []))
        skipped = int(report.get("metrics", {}).get("_totals", {}).get("skipped_tests", 0))
    except (ValueError, KeyError):
        issues, skipped = -1, 0
    return {
        "name": "bandit",
        "passed": code == 0,
        "seconds": round(seconds, 1),
        "figures": {"issues": issues, "reviewedNosec": skipped},
    }


def pip_audit() -> dict[str, Any]:
    code, output, seconds = run([sys.executable, "deploy/audit.py"])
    verdict = output.strip().splitlines()[-1] if output.strip() else "no output"
    return {
        "name": "pip-audit",
        "passed": code == 0 and "SKIPPED" not in verdict,
        "seconds": round(seconds, 1),
        "figures": {"verdict": verdict[:160]},
    }


def pytest_check(name: str, args: list[str]) -> dict[str, Any]:
    code, output, seconds = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args])
    summary = next((line for line in reversed(output.splitlines()) if " passed" in line or "failed" in line), "")
    return {"name": name, "passed": code == 0, "seconds": round(seconds, 1), "figures": {"tests": summary.strip()}}


def main() -> int:
    scenarios = [bandit(), pip_audit(), *(pytest_check(name, args) for name, args in PYTEST_CHECKS.items())]
    for scenario in scenarios:
        verdict = "passed" if scenario["passed"] else "NOT PASSED"
        print(f"{scenario['name']:<60} {verdict:<11} {scenario['figures']}")
    write_figures("security", {"scenarios": scenarios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
