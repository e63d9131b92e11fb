"""A SCIM conformance suite written by others, scim2-tester (RFC 7643/7644: discovery, CRUD, PATCH add, remove and
replace of every attribute the server publishes), against ``cvcsync serve`` with the emulator as CVC and moto as
S3. Every check passes, but the ones docs/scim.md lists as not applicable, with their reason: this test asserts
exactly that list, and that the docs say the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from support.scim_api import SCIM_ENV, SCIM_TOKEN, STATE_BUCKET
from support.scim_conformance import run_checks, served

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scim.md"
# (check, status): the checks that do not pass, each with its reason in docs/scim.md's "Conformance" section.
NOT_APPLICABLE = {("search_with_attributes", "SKIPPED")}


def documented_exceptions() -> set[tuple[str, str]]:
    """The rows of docs/scim.md's table of checks that do not pass: ``| `check` | STATUS | reason |``."""
    section = DOCS.read_text(encoding="utf-8").split("## Conformance", 1)[1].split("\n## ", 1)[0]
    return {(m[1], m[2]) for m in re.finditer(r"^\| `(\w+)` \| (\w+) \|", section, re.MULTILINE)}


def test_scim2_tester_passes_every_check_but_the_documented_ones(function_env: dict[str, str], moto: Any) -> None:
    moto.s3_client().create_bucket(Bucket=STATE_BUCKET)
    with served({**function_env, **SCIM_ENV}) as url:
        checks = run_checks(url, SCIM_TOKEN)
    titles = {check.title for check in checks}
    # The suite really ran: discovery, every CRUD step and PATCH add/remove/replace of User attributes.
    for expected in (
        "service_provider_config_endpoint",
        "query_all_resource_types",
        "query_all_schemas",
        "object_creation",
        "object_query",
        "object_replacement",
        "object_deletion",
        "check_add_attribute",
        "check_remove_attribute",
        "check_replace_attribute",
    ):
        assert expected in titles, expected
    assert sum(check.title == "check_replace_attribute" for check in checks) >= 20
    failing = {(check.title, check.status) for check in checks if check.status != "SUCCESS"}
    details = [f"{c.title} {c.status}: {c.reason[:300]}" for c in checks if (c.title, c.status) in failing]
    assert failing == NOT_APPLICABLE, details
    assert documented_exceptions() == NOT_APPLICABLE
