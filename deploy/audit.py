"""pip-audit over the locked dependencies (``constraints.txt``): part of ``make lint``.

Offline-safe and never silent. pip-audit asks PyPI's JSON API about each pinned version; where that service cannot
be reached, pip-audit itself only lists every package as "could not be audited" and still prints "No known
vulnerabilities found". This script reads its JSON instead and says what really happened:

- vulnerabilities found in an audited package: exit 1, listing package, version, advisory and fixed versions;
- not one package could be audited (the database is unreachable): exit 0 with a loud SKIPPED line saying so;
- some packages could not be audited: their names and reasons are printed, the others are checked.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def requirements(constraints: Path) -> str:
    """The pinned lines of ``constraints.txt`` (comments, blanks and editable installs dropped)."""
    kept = []
    for line in constraints.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text and not text.startswith(("#", "-e", "--")):
            kept.append(text)
    return "\n".join(kept) + "\n"


def run_pip_audit(requirement_text: str) -> dict[str, Any] | str:
    """pip-audit's JSON report, or the reason it could not produce one."""
    with tempfile.TemporaryDirectory(prefix="cvcsync-audit-") as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_text(requirement_text, encoding="utf-8")
        command = [
            sys.executable, "-m", "pip_audit", "-r", str(path), "--no-deps", "--disable-pip",
            "--progress-spinner", "off", "--format", "json", "--cache-dir", str(Path(tmp) / "cache"),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)  # noqa: S603
        except subprocess.TimeoutExpired:
            return f"pip-audit did not answer within {TIMEOUT_S} s"
    try:
        return dict(json.loads(done.stdout))
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip-audit failed (exit {done.returncode}): {last[:300]}"


def verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """(exit status, lines to print) for pip-audit's JSON report."""
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    lines: list[str] = []
    if not audited:
        reasons = sorted({str(d["skip_reason"]).split(":")[0] for d in skipped}) or ["no dependencies listed"]
        lines.append(
            f"pip-audit: SKIPPED - none of {len(dependencies)} locked dependencies could be audited "
            f"(vulnerability database unreachable? {'; '.join(reasons)}). This is not a pass: run it where PyPI's "
            "JSON API answers."
        )
        return 0, lines
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            lines.append(f"VULNERABLE {dep['name']} {dep['version']}: {vuln.get('id')} (fixed in {fixed})")
    for dep in skipped:
        lines.append(f"not audited: {dep['name']} {dep.get('version', '')}: {dep['skip_reason']}")
    lines.append(
        f"pip-audit: {len(audited)} of {len(dependencies)} locked dependencies audited, "
        f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities"
        + (f", {len(skipped)} not audited (listed above)" if skipped else "")
    )
    return (1 if vulnerable else 0), lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args(argv)
    report = run_pip_audit(requirements(args.constraints))
    if isinstance(report, str):
        print(f"pip-audit: SKIPPED - {report}. This is not a pass.")
        return 0
    status, lines = verdict(report)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
