"""deploy/audit.py: pip-audit's verdict is never a silent pass."""

from __future__ import annotations

from pathlib import Path

from deploy.audit import requirements, verdict

SKIP = "Dependency not found on PyPI and could not be audited: requests (2.33.0)"


def test_an_unreachable_database_is_a_loud_skip_not_a_pass() -> None:
    status, lines = verdict({"dependencies": [{"name": "requests", "version": "2.33.0", "skip_reason": SKIP}]})
    assert status == 0 and lines[0].startswith("pip-audit: SKIPPED") and "not a pass" in lines[0]


def test_a_known_vulnerability_fails_with_its_advisory_and_fix() -> None:
    report = {
        "dependencies": [
            {"name": "urllib3", "version": "1.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["2.2.2"]}]},
            {"name": "orjson", "version": "3.10.0", "vulns": []},
            {"name": "odd", "version": "1", "skip_reason": SKIP},
        ]
    }
    status, lines = verdict(report)
    assert status == 1
    assert "VULNERABLE urllib3 1.0: GHSA-x (fixed in 2.2.2)" in lines
    assert any(line.startswith("not audited: odd") for line in lines)
    assert (
        lines[-1]
        == "pip-audit: 2 of 3 locked dependencies audited, 1 known vulnerabilities, 1 not audited (listed above)"
    )


def test_clean_dependencies_pass() -> None:
    status, lines = verdict({"dependencies": [{"name": "orjson", "version": "3.10.0", "vulns": []}]})
    assert status == 0 and lines == ["pip-audit: 1 of 1 locked dependencies audited, 0 known vulnerabilities"]


def test_only_pinned_lines_are_audited(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\n\norjson==3.10.0\n-e file:///x\nrequests==2.33.0\n", encoding="utf-8")
    assert requirements(constraints) == "orjson==3.10.0\nrequests==2.33.0\n"
