"""``cvcsync sync`` end to end: a real subprocess, the emulator over loopback, the state in a local directory."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.exports import export_path

GROUP = ["88", "示例科技"]


def export(path: Path, ids: range | list[int], *, depart: str = "研发部", extra: list[list[str]] | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "userName", "groupId", "groupName", "departName", "userMobile"])
        for i in ids:
            writer.writerow([f"e{i:04d}", f"员工{i}", *GROUP, depart, f"138{i:08d}"])
        for row in extra or []:
            writer.writerow(row)
    return path


def sync(emulator: Any, state: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "CVC_", "CVCSYNC_"))}
    base.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=emulator.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=emulator.access_key_secret,
        CVC_ENDPOINT=emulator.url,
        **(env or {}),
    )
    result = subprocess.run(
        [sys.executable, "-m", "cvcsync", "sync", "--state", str(state), "--json", *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, orjson.loads(result.stdout), result.stderr


def cli_env(emulator: Any) -> dict[str, str]:
    """The environment of a ``cvcsync`` subprocess that talks to the emulator."""
    return {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
    }


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def writes(emulator: Any) -> int:
    calls = emulator.stats()["calls"]
    return int(calls.get("CreateUser", 0) + calls.get("DeleteUser", 0))


def test_first_sync_then_unchanged_reupload_makes_no_write_calls(emulator: Any, state: Path, tmp_path: Path) -> None:
    first = export(tmp_path / "full.csv", range(250), extra=[["bad", "", *GROUP, "", ""]])
    code, report, _ = sync(emulator, state, str(first))
    assert code == 3  # one row rejected
    assert report["outcomes"]["created"] == 250 and report["outcomes"]["rejected"] == 1
    assert report["received"] == 251 and report["status"] == "partial"
    assert report["problems"][0]["line"] == 252 and "userName" in report["problems"][0]["message"]
    assert len(emulator.users()) == 250
    before = writes(emulator)
    code, again, _ = sync(emulator, state, str(first))
    assert again["outcomes"]["unchanged"] == 250 and writes(emulator) == before
    assert "CreateUser" not in again["calls"] and "DeleteUser" not in again["calls"]
    assert (state / "reports").is_dir() and (state / "state" / "manifest.json").is_file()


def test_changed_snapshot_updates_creates_and_deletes(emulator: Any, state: Path, tmp_path: Path) -> None:
    sync(emulator, state, str(export(tmp_path / "a.csv", range(100))))
    changed = export(tmp_path / "b.csv", list(range(5, 100)) + list(range(100, 110)))
    with changed.open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(["e0050", "员工50", *GROUP, "财务部", "13800000050"])  # a later row wins
    _, report, _ = sync(emulator, state, str(changed))
    outcomes = report["outcomes"]
    assert (outcomes["created"], outcomes["updated"], outcomes["deleted"]) == (10, 1, 5)
    assert outcomes["rejected"] == 0 and outcomes["duplicate"] == 1  # the superseded copy of e0050: not a problem
    assert report["impliedDeletions"] == 5 and report["received"] == 106 + 5
    directory = {u["userId"]: u for u in emulator.users()}
    assert "e0000" not in directory and directory["e0050"]["departName"] == "财务部" and len(directory) == 105


def test_a_truncated_snapshot_is_refused_until_approved(emulator: Any, state: Path, tmp_path: Path) -> None:
    sync(emulator, state, str(export(tmp_path / "a.csv", range(100))))
    truncated = export(tmp_path / "t.csv", range(40))
    code, report, _ = sync(emulator, state, str(truncated))
    assert code == 4 and report["refused"] and report["status"] == "refused"
    assert report["outcomes"]["skippedByGuard"] == 60 and report["outcomes"]["deleted"] == 0
    assert {g["name"] for g in report["guards"] if not g["passed"]} == {"deletionThreshold", "completeness"}
    assert any("REFUSED" in m for m in report["messages"])
    assert len(emulator.users()) == 100
    # At a terminal (or CVCSYNC_LOG_FORMAT=text) the gate's ERROR line reads as a sentence, not JSON.
    _, _, said = sync(emulator, state, str(truncated), env={"CVCSYNC_LOG_FORMAT": "text"})
    assert said.startswith("cvcsync: error: sync refused by a safety gate (") and "{" not in said.splitlines()[0]
    code, approved, _ = sync(emulator, state, str(truncated), "--approve")
    assert code == 0 and approved["outcomes"]["deleted"] == 60 and len(emulator.users()) == 40


def test_dry_run_plan_then_apply_exactly_that_plan(emulator: Any, state: Path, tmp_path: Path) -> None:
    sync(emulator, state, str(export(tmp_path / "a.csv", range(20))))
    plan_file = tmp_path / "plan.json"
    _code, report, _ = sync(
        emulator, state, str(export(tmp_path / "b.csv", range(2, 25), depart="新部门")), "--plan-out", str(plan_file)
    )
    assert report["status"] == "dry-run" and report["planned"]["update"] == 18 and report["planned"]["delete"] == 2
    saved = orjson.loads(plan_file.read_bytes())
    update = next(op for op in saved["operations"] if op["op"] == "update")
    assert update["old"]["departName"] == "研发部" and update["new"]["departName"] == "新部门"
    assert update["changed"] == ["departName"]
    assert writes(emulator) == 1  # only the first sync's one CreateUser
    _, applied, _ = sync(emulator, state, "--apply-plan", str(plan_file))
    assert applied["outcomes"]["updated"] == 18 and applied["outcomes"]["created"] == 5
    assert applied["outcomes"]["deleted"] == 2 and len(emulator.users()) == 23
    result = subprocess.run(
        [sys.executable, "-m", "cvcsync", "sync", "--state", str(state), "--apply-plan", str(plan_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=cli_env(emulator),
    )
    assert result.returncode != 0 and "state is now at generation" in result.stderr


def test_delta_file_with_operation_column(emulator: Any, state: Path, tmp_path: Path) -> None:
    sync(emulator, state, str(export(tmp_path / "a.csv", range(10))))
    delta = tmp_path / "delta.ndjson"
    delta.write_text(
        "\n".join(
            [
                '{"op":"delete","userId":"e0001"}',
                '{"op":"upsert","userId":"n1","userName":"新人","groupId":"88","groupName":"示例科技"}',
            ]
        ),
        encoding="utf-8",
    )
    code, report, _ = sync(emulator, state, str(delta), "--mode", "delta")
    assert code == 0 and report["outcomes"]["deleted"] == 1 and report["outcomes"]["created"] == 1
    assert report["impliedDeletions"] == 0 and len(emulator.users()) == 10


def test_reconcile_reports_drift_and_rebuilds_the_state(emulator: Any, state: Path, tmp_path: Path) -> None:
    sync(emulator, state, str(export(tmp_path / "a.csv", range(10))))
    client_env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
    }
    from cvcsync.adapters.credentials import Credentials
    from cvcsync.adapters.cvc import CvcClient
    from cvcsync.config import CvcSettings

    outside = CvcClient(
        Credentials(client_env["ALIBABA_CLOUD_ACCESS_KEY_ID"], client_env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]),
        settings=CvcSettings(endpoint=emulator.url),
    )
    outside.create_users(
        [
            {"userId": "x1", "userName": "外部", "groupId": "88", "groupName": "示例科技"},
            {"userId": "e0003", "userName": "改名", "groupId": "88", "groupName": "示例科技"},
        ]
    )
    outside.delete_users(["e0007"])
    _, drift, _ = sync(emulator, state, "--reconcile")
    assert not drift["inSync"] and drift["counts"] == {"onlyInCvc": 1, "onlyInState": 1, "different": 1}
    assert (drift["onlyInCvc"], drift["onlyInState"], drift["different"]) == (["x1"], ["e0007"], ["e0003"])
    _, rebuilt, _ = sync(emulator, state, "--reconcile", "--rebuild-state")
    assert rebuilt["generationAfter"] == 2
    _, again, _ = sync(emulator, state, "--reconcile")
    assert again["inSync"] and again["stateUsers"] == 10


def test_capacity_preflight_refuses_a_plan_beyond_the_licence(emulator: Any, state: Path, tmp_path: Path) -> None:
    emulator.set_capacity(15)
    code, report, _ = sync(emulator, state, str(export(tmp_path / "a.csv", range(20))), "--approve")
    assert code == 4 and report["refused"]
    capacity = next(g for g in report["guards"] if g["name"] == "capacity")
    assert not capacity["passed"] and not capacity["overridden"] and "licence 15" in capacity["detail"]
    assert report["outcomes"]["skippedByGuard"] == 20 and writes(emulator) == 0


@pytest.mark.parametrize("name", ["wecom-members.csv", "dingtalk-contacts.csv", "excel-unicode-text.txt"])
def test_real_export_formats_sync_end_to_end(emulator: Any, state: Path, name: str) -> None:
    source = Path(__file__).resolve().parents[2] / "events" / "exports" / name
    _, report, _ = sync(emulator, state, str(source), env={"CVCSYNC_GROUP_ID": "88", "CVCSYNC_GROUP_NAME": "示例科技"})
    assert report["rowsRead"] > 0
    assert report["outcomes"]["created"] + report["outcomes"]["rejected"] == report["rowsRead"]
    assert report["outcomes"]["created"] == len(emulator.users()) > 0


def test_gzip_ndjson_and_json_exports(emulator: Any, state: Path, tmp_path: Path) -> None:
    import gzip

    users = [{"userId": f"j{i}", "userName": f"员工{i}", "groupId": "88", "groupName": "示例科技"} for i in range(5)]
    (tmp_path / "a.json").write_bytes(orjson.dumps(users))
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(b"\n".join(orjson.dumps(u) for u in users[:3])))
    _, first, _ = sync(emulator, state, str(tmp_path / "a.json"))
    assert first["outcomes"]["created"] == 5
    _, second, _ = sync(emulator, state, str(tmp_path / "b.ndjson.gz"), "--mode", "delta")
    assert second["outcomes"]["unchanged"] == 3


def test_group_flags_fill_records_and_win_over_the_variables(emulator: Any, state: Path, tmp_path: Path) -> None:
    export_file = tmp_path / "no-group.csv"
    export_file.write_text("userId,userName\nf1,甲\nf2,乙\n", encoding="utf-8")
    env = {"CVCSYNC_GROUP_ID": "77", "CVCSYNC_GROUP_NAME": "变量科技"}
    code, report, _ = sync(emulator, state, str(export_file), "--group-id", "88", env=env)
    assert code == 0 and report["outcomes"]["created"] == 2
    assert {(u["groupId"], u["groupName"]) for u in emulator.users()} == {("88", "变量科技")}


def run_cli(emulator: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvcsync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**cli_env(emulator), **(env or {})},
    )


def test_the_summary_groups_3000_rows_failing_for_one_reason(emulator: Any, state: Path, tmp_path: Path) -> None:
    export_file = tmp_path / "hr.csv"
    with export_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "userName"])
        writer.writerows([f"n{i:04d}", f"员工{i}"] for i in range(3000))
        writer.writerow(["x9999", ""])  # one more reason: a line of its own, naming its line and user
    result = run_cli(emulator, "sync", "--state", str(state), "--dry-run", str(export_file))
    assert result.returncode == 3, result.stderr
    [report_csv] = (state / "reports").rglob("*.problems.csv")
    fix = "set CVCSYNC_GROUP_ID and CVCSYNC_GROUP_NAME (or --group-id and --group-name)"
    assert [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("problem:")] == [
        f"problem: 3,000 rows (lines 2–3001): groupId: is required; groupName: is required — {fix}",
        "problem: line 3002: user 'x9999': userName: is required and empty; groupId: is required; "
        f"groupName: is required — {fix}",
        f"problem: every row: {report_csv}",
    ]
    rows = report_csv.read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + 3001  # the header, then every rejected row: the file keeps the full list


def test_planning_shows_progress_by_bytes_and_lines(emulator: Any, state: Path, tmp_path: Path) -> None:
    import gzip

    from cvcsync.cli_output import human_size

    plain = export(tmp_path / "big.csv", range(20000))
    result = run_cli(emulator, "sync", "--state", str(state), "--dry-run", "--progress", str(plain))
    size = human_size(plain.stat().st_size)  # e.g. "1.1 MB"
    final = [line for line in result.stderr.splitlines() if line.startswith("planning: 100%")]
    assert final == [f"planning: 100% ({size.split()[0]} of {size}, 20,001 lines)"], result.stderr

    packed = tmp_path / "big.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    result = run_cli(emulator, "sync", "--state", str(tmp_path / "s2"), "--dry-run", "--progress", str(packed))
    final = [line for line in result.stderr.splitlines() if line.startswith("planning: 100%")]
    assert len(final) == 1 and final[0].endswith(" compressed)") and "lines" not in final[0], result.stderr
    quiet = run_cli(emulator, "sync", "--state", str(tmp_path / "s3"), "--dry-run", str(plain))
    assert "planning:" not in quiet.stderr  # not a terminal, not asked: no progress


def test_progress_is_counted_by_a_wrapping_reader_at_most_twice_a_second() -> None:
    import io

    from cvcsync.cli_output import ReadProgress

    now = [0.0]
    out = io.StringIO()
    data = b"a,b\n" * 100_000  # 400 kB
    reader = ReadProgress(io.BytesIO(data), total=len(data), stream=out, enabled=True, clock=lambda: now[0])
    while chunk := reader.read(4096):
        assert chunk
        now[0] += 0.01  # a chunk every 10 ms: 98 chunks, about 1 s
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) - 1 <= 2  # at most one line per 0.5 s, then the final one
    assert lines[-1] == "planning: 100% (400.0 of 400.0 kB, 100,000 lines)"
    reader.finish()
    assert out.getvalue().splitlines() == lines  # the final line once

    workbook = ReadProgress(io.BytesIO(b"PK\x03\x04" + b"\n" * 96), total=100, stream=io.StringIO(), enabled=True)
    assert workbook.read(2) == b"PK" and workbook.read() and workbook.packed  # sniffed with a tiny read, as readers do
    assert workbook.describe() == "planning: 100% (100 of 100 B compressed)"  # a zip's bytes hold no lines


def test_usage_mistakes_exit_2_in_one_line(emulator: Any, state: Path, tmp_path: Path) -> None:
    for args in (
        ("sync", "--state", str(state), str(tmp_path / "nope.csv")),
        ("sync", "--state", str(state), "--apply-plan", str(tmp_path / "nope.json")),
        ("sync", "--state", str(state)),
    ):
        result = run_cli(emulator, *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("cvcsync: error: ") and "Traceback" not in result.stderr


def test_a_file_that_is_no_export_exits_3_with_its_report_and_the_advice(emulator: Any, state: Path) -> None:
    """Issue 12: an .xls workbook (and a PDF, a zip, binary data) is refused as a whole with the advice, exit 3 as
    the README documents for a file that cannot be read; the run still leaves its report and problems file."""
    code, report, _ = sync(emulator, state, str(export_path("sheet-old-excel.xls")))
    assert code == 3 and report["status"] == "rejected" and report["received"] == 0
    [problem] = report["problems"]
    assert problem["code"] == "OldExcelWorkbook" and "save" in problem["message"] and ".xlsx" in problem["message"]
    written = sorted(p.name for p in state.rglob(f"{report['runId']}*") if p.is_file())
    assert written == [f"{report['runId']}.json", f"{report['runId']}.problems.csv"]
    assert emulator.users() == []
