"""Exports that must never delete anyone: truncated, empty, of another group; and hostile cells that must reach the
problem list as text, never as a spreadsheet formula."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import orjson
import pytest

from cvcsync.platform.runtime import local_fc_context
from cvcsync.platform.triggers import upload
from support.chaos import USERS, Results, cvc_directory, export_csv, hashes, keys, person, snapshot
from support.events import load_event

from .conftest import STATE, UPLOADS

KEY = "users/2024-05-01/users.csv"  # the key of events/fc/oss-putobject.json
CREDENTIALS = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}


def sync(moto: Any, env: dict[str, str], body: bytes, key: str = KEY) -> dict[str, Any]:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=key, Body=body)
    event = load_event("fc/oss-putobject.json")
    event["events"][0]["oss"]["object"].update(key=key, size=len(body))
    context = local_fc_context("chaos", timeout=600, credentials=CREDENTIALS)
    [run] = orjson.loads(upload.handle(orjson.dumps(event), context, env=env))["runs"]
    assert run["received"] == sum(run["outcomes"].values())
    return dict(run)


def truncated(body: bytes) -> bytes:
    """Cut mid-line at a third, as an interrupted export or upload leaves it."""
    return body[: len(body) // 3 + 7]


def other_group(n: int) -> bytes:
    return export_csv({u["userId"]: u for u in (person(i, group="99") for i in range(n))})


def gzip_cut(body: bytes) -> bytes:
    packed = gzip.compress(body)
    return packed[: len(packed) // 2]


BAD = {
    "truncated": (truncated, "completeness"),
    "empty": (lambda body: b"", "completeness"),
    "header only": (lambda body: body.split(b"\n", 1)[0] + b"\n", "completeness"),
    "another group": (None, "group"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_export_deletes_no_one_and_says_so_loudly(
    chaos_env: dict[str, str], moto: Any, emulator: Any, chaos_results: Results, kind: str
) -> None:
    n = min(USERS, 2000)
    scenario = chaos_results.start(f"bad export: {kind}", n)
    good = snapshot(range(n))
    body = export_csv(good)
    assert sync(moto, chaos_env, body)["outcomes"]["created"] == n
    make, gate = BAD[kind]
    bad = other_group(n) if make is None else make(body)
    # Even where a refusal lets creates and updates through, another group's users are never created.
    run = sync(moto, {**chaos_env, "CVCSYNC_UPSERTS_WHEN_REFUSED": "true"} if make is None else chaos_env, bad)

    assert run["status"] == "refused" and run["refused"]
    assert run["outcomes"]["deleted"] == 0 and run["outcomes"]["created"] == 0
    s3 = moto.s3_client()
    [report_key] = [k for k in keys(s3, STATE, f"cvc-sync/reports/{KEY}/") if run["runId"] in k and k.endswith(".json")]
    report = orjson.loads(s3.get_object(Bucket=STATE, Key=report_key)["Body"].read())
    refused = [g["name"] for g in report["guards"] if not g["passed"]]
    assert gate in refused
    assert any(m.startswith("REFUSED by the") for m in report["messages"])
    assert cvc_directory(chaos_env) == hashes(good)  # not one user deleted, nor a stranger created
    scenario.succeeded({"refusedBy": ",".join(refused), "deleted": 0, "cvcUnchanged": True})


def test_a_cut_gzip_export_fails_the_run_and_changes_nothing(
    chaos_env: dict[str, str], moto: Any, emulator: Any
) -> None:
    good = snapshot(range(300))
    sync(moto, chaos_env, export_csv(good))
    # A file that cannot be read as a whole is a run all the same (issue 12): status rejected, its report says why,
    # and nothing is planned or sent; the platform is not asked to retry a file that cannot pass.
    run = sync(moto, chaos_env, gzip_cut(export_csv(good)), key="users/2024-05-01/users.csv.gz")
    assert run["status"] == "rejected" and run["received"] == 0
    s3 = moto.s3_client()
    report_key = f"cvc-sync/reports/users/2024-05-01/users.csv.gz/{run['runId']}.json"
    [problem] = orjson.loads(s3.get_object(Bucket=STATE, Key=report_key)["Body"].read())["problems"]
    assert problem["code"] == "BadGzip" and "truncated" in problem["message"]
    assert cvc_directory(chaos_env) == hashes(good)


HOSTILE = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1,1)", "\t=1", ' =HYPERLINK("http://x")']


def test_formula_cells_reach_the_problem_list_as_text(chaos_env: dict[str, str], moto: Any, emulator: Any) -> None:
    rows = [person(i) for i in range(5)]
    for i, value in enumerate(HOSTILE):
        rows.append({**person(100 + i), "userId": value, "userEmail": "not an email " + value})
    run = sync(moto, chaos_env, export_csv({str(k): row for k, row in enumerate(rows)}))
    assert run["outcomes"]["created"] == 5 and run["outcomes"]["rejected"] == len(HOSTILE)
    s3 = moto.s3_client()
    [csv_key] = [k for k in keys(s3, STATE, f"cvc-sync/reports/{KEY}/") if k.endswith(".problems.csv")]
    text = s3.get_object(Bucket=STATE, Key=csv_key)["Body"].read().decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["line", "userId", "code", "message", "requestId"] and len(table) == 1 + len(HOSTILE)
    for row in table[1:]:
        for cell in row:
            assert not cell or (cell[0] not in "=+-@\t\r" and not cell.lstrip().startswith(("=", "+", "@")))
    assert sorted(row[1].removeprefix("'") for row in table[1:]) == sorted(v.strip() for v in HOSTILE)
