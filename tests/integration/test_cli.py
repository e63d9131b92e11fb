"""The ``cvcsync`` command end to end: a real subprocess talking to the emulator over loopback."""

from __future__ import annotations

import csv
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "users"
EXPORTS = ROOT / "events" / "exports"


def run(emulator: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "CVC_"))}
    base.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=emulator.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=emulator.access_key_secret,
        CVC_ENDPOINT=emulator.url,
    )
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cvcsync", *args], capture_output=True, text=True, env=base, timeout=60, check=False
    )


def test_create_get_list_delete_account(emulator: Any) -> None:
    created = run(emulator, "create", str(EVENTS / "demo-users.csv"))
    assert created.returncode == 0, created.stderr
    report = orjson.loads(created.stdout)
    assert (report["received"], report["upserted"], report["rejected"], report["failed"]) == (6, 6, 0, 0)

    got = run(emulator, "get", "u-1001")
    assert got.returncode == 0
    assert orjson.loads(got.stdout)["userName"] == "张伟"

    listed = orjson.loads(run(emulator, "list", "--page-size", "4").stdout)
    assert sorted(u["userId"] for u in listed) == [f"u-100{i}" for i in range(1, 7)]

    dry = run(emulator, "delete", "u-1005", "u-1006", "--dry-run")
    assert orjson.loads(dry.stdout) == {"dryRun": True, "wouldDelete": ["u-1005", "u-1006"]}
    assert len(emulator.users()) == 6

    deleted = run(emulator, "delete", "u-1005", "u-1006")
    assert deleted.returncode == 0 and orjson.loads(deleted.stdout)["deleted"] == ["u-1005", "u-1006"]
    assert orjson.loads(run(emulator, "account").stdout)["AccountApplicationNumber"] == 4


def test_the_documents_json_example(emulator: Any) -> None:
    result = run(emulator, "create", str(EVENTS / "document-example.json"))
    assert result.returncode == 0, result.stderr
    assert {u["userId"] for u in emulator.users()} == {"123", "456"}


def test_invalid_rows_are_named_and_the_rest_are_created(emulator: Any) -> None:
    result = run(emulator, "create", str(EVENTS / "demo-users-with-errors.ndjson"))
    assert result.returncode == 3
    report = orjson.loads(result.stdout)
    assert (report["received"], report["upserted"], report["rejected"]) == (5, 2, 3)
    assert "line 2: user 'u-2002': userName: is required and empty" in result.stderr
    assert "line 3: user 'u-2003': userEmail: is not an e-mail address (masked: ***)" in result.stderr
    assert "not-an-email" not in result.stderr  # personal data is masked even when it is wrong
    assert "line 4: is not valid JSON" in result.stderr
    assert "columns not used: 'nickname'" in result.stderr  # the column mapping's notice, as sync reports it
    assert {u["userId"] for u in emulator.users()} == {"u-2001", "u-2004"}


def test_dry_run_calls_nothing(emulator: Any) -> None:
    result = run(emulator, "create", "--dry-run", str(EVENTS / "demo-users.csv"))
    assert result.returncode == 0
    assert orjson.loads(result.stdout)["valid"] == 6
    assert emulator.stats()["calls"].get("CreateUser", 0) == 0


def test_progress_is_shown_on_stderr_when_asked(emulator: Any) -> None:
    result = run(emulator, "create", "--progress", str(EVENTS / "demo-users.csv"), env={"CVC_BATCH_SIZE": "2"})
    assert "upserted 2/6" in result.stderr and "upserted 6/6" in result.stderr


def test_group_defaults_fill_missing_enterprise(emulator: Any, tmp_path: Path) -> None:
    export = tmp_path / "hr.csv"
    export.write_text("userId,userName\nh-1,吴昊\n", encoding="gbk")
    result = run(emulator, "create", str(export), "--group-id", "88", "--group-name", "示例科技")
    assert result.returncode == 0, result.stderr
    assert emulator.users()[0]["groupName"] == "示例科技"


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("get", "nobody"), {}, 1, "cvcsync: error: GetUser failed:"),
        (("account",), {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"}, 1, "SignatureDoesNotMatch"),
        (("account",), {"CVC_ENDPOINT": "ftp://nowhere"}, 2, "configuration error: CVC_ENDPOINT must be a full URL"),
        (("account",), {"CVC_BATCH_SIZE": "many"}, 2, "CVC_BATCH_SIZE must be a whole number"),
        (("create", "/no/such/file.csv"), {}, 2, "cvcsync: error: /no/such/file.csv: no such file"),
    ],
)
def test_errors_are_one_clear_line_and_an_exit_code(
    emulator: Any, args: tuple[str, ...], env: dict[str, str], code: int, message: str
) -> None:
    result = run(emulator, *args, env=env)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_credentials_is_explained(emulator: Any) -> None:
    result = run(emulator, "account", env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""})
    assert result.returncode == 2
    assert "no CVC credentials" in result.stderr and "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.stderr


def test_the_secret_never_reaches_the_verbose_log(emulator: Any) -> None:
    result = run(emulator, "-v", "create", str(EVENTS / "demo-users.csv"))
    assert '"action":"CreateUser"' in result.stderr
    assert emulator.access_key_secret not in result.stderr + result.stdout
    assert "13800000001" not in result.stderr


def test_the_emulator_subcommand_takes_its_own_options() -> None:
    """``cvcsync emulator --host ... --port 0 --access-key ...`` as ``make emulator`` runs it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cvcsync", "emulator", "--host", "127.0.0.1", "--port", "0", "--access-key", "k:s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the readiness line comes first, or the process ends
        assert line.startswith("cvcsync emulator listening on http://127.0.0.1:"), (
            process.stderr.read() if process.stderr else ""
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_create_reads_a_wecom_export_as_sync_does(emulator: Any, tmp_path: Path) -> None:
    """The same readers, presets and validation: create's users are exactly the creates a sync dry run plans."""
    export = EXPORTS / "wecom-members.csv"  # GBK, Chinese headers (帐号, 姓名, 部门, 手机, 企业邮箱, …)
    created = run(emulator, "create", str(export), "--group-id", "88", "--group-name", "示例科技")
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["upserted"] == 6
    assert "column preset 'wecom'" in created.stderr  # the mapping's notes, as sync reports them

    plan_file = tmp_path / "plan.json"
    env = {"CVCSYNC_GROUP_ID": "88", "CVCSYNC_GROUP_NAME": "示例科技"}
    planned = run(emulator, "sync", str(export), "--state", str(tmp_path / "s"), "--plan-out", str(plan_file), env=env)
    assert planned.returncode == 0, planned.stderr
    creates = [op["new"] for op in orjson.loads(plan_file.read_bytes())["operations"] if op["op"] == "create"]
    in_cvc = [{k: v for k, v in user.items() if k != "createTime"} for user in emulator.users()]
    assert sorted(in_cvc, key=lambda u: u["userId"]) == sorted(creates, key=lambda u: u["userId"])
    assert {u["userId"] for u in in_cvc} == {"zhangwei", "wangfang", "lina", "liuyang", "chenjing", "yanglei"}


def test_create_skips_leavers_and_never_deletes(emulator: Any) -> None:
    result = run(emulator, "create", str(EXPORTS / "hr-delta.csv"), "--group-id", "88", "--group-name", "示例科技")
    report = orjson.loads(result.stdout)
    assert report["notCreated"] == 2 and "create never deletes" in result.stderr
    assert report["received"] == report["upserted"] + report["rejected"] + report["duplicates"] + 2
    assert {"E1003", "E1005"}.isdisjoint(u["userId"] for u in emulator.users())  # the two 离职 rows


def test_group_flags_win_over_the_variables(emulator: Any, tmp_path: Path) -> None:
    export = tmp_path / "hr.csv"
    export.write_text("userId,userName\nh-1,吴昊\n", encoding="utf-8")
    env = {"CVCSYNC_GROUP_ID": "77", "CVCSYNC_GROUP_NAME": "变量科技"}
    result = run(emulator, "create", str(export), "--group-id", "88", env=env)
    assert result.returncode == 0, result.stderr
    [user] = emulator.users()
    assert (user["groupId"], user["groupName"]) == ("88", "变量科技")  # the flag, else the variable


def _export_without_group(path: Path, rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "userName", "userEmail"])
        for i in range(rows):
            writer.writerow([f"g{i:05d}", f"员工{i}", f"g{i}@corp.example.com"])
    return path


def test_rows_failing_for_one_reason_are_one_line_with_the_fix(emulator: Any, tmp_path: Path) -> None:
    export = _export_without_group(tmp_path / "no-group.csv", 3000)
    result = run(emulator, "create", "--dry-run", str(export))
    assert result.returncode == 3
    rejected = [line for line in result.stderr.splitlines() if line.startswith("cvcsync: rejected:")]
    assert rejected == [
        "cvcsync: rejected: 3,000 rows (lines 2–3001): groupId: is required; groupName: is required — "
        "set CVCSYNC_GROUP_ID and CVCSYNC_GROUP_NAME (or --group-id and --group-name)"
    ]
    report = orjson.loads(result.stdout)
    assert (report["rejected"], report["problemCount"], len(report["problems"])) == (3000, 3000, 50)


def test_grouping_ignores_masked_values_and_names_a_missing_id_column(emulator: Any, tmp_path: Path) -> None:
    export = tmp_path / "emails.csv"
    export.write_text(
        "userId,userName,userEmail\nm1,甲,not-an-email\nok1,乙,yi@corp.example.com\nm2,丙,also-wrong\n",
        encoding="utf-8",
    )
    result = run(emulator, "create", "--dry-run", str(export), "--group-id", "88", "--group-name", "示例科技")
    assert "cvcsync: rejected: 2 rows (lines 2–4, e.g. 2, 4): userEmail: is not an e-mail address" in result.stderr
    assert "not-an-email" not in result.stderr and "also-wrong" not in result.stderr

    unnamed = tmp_path / "ids.csv"
    unnamed.write_text("人员编码,姓名\nP-1,丁\nP-2,戊\n", encoding="utf-8")
    result = run(emulator, "create", "--dry-run", str(unnamed), "--group-id", "88", "--group-name", "示例科技")
    assert "2 rows (lines 2–3): userId: is required — no column was recognised as userId: name yours in " in (
        result.stderr
    )
    assert """CVCSYNC_COLUMN_MAP='{"人员编码": "userId"}'""" in result.stderr
    mapped = run(
        emulator,
        "create",
        str(unnamed),
        "--group-id",
        "88",
        "--group-name",
        "示例科技",
        env={"CVCSYNC_COLUMN_MAP": '{"人员编码": "userId"}'},
    )
    assert mapped.returncode == 0 and {u["userId"] for u in emulator.users()} == {"P-1", "P-2"}


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- exit-codes -->\n((?:\|.*\n)+)", text)
    assert table, "README.md has no exit code table"
    rows = [row.split("|")[1:-1] for row in table.group(1).splitlines()[2:]]
    return {int(cells[0].strip().strip("`")): cells[1].strip() for cells in rows}


def test_every_exit_code_the_readme_documents(emulator: Any, tmp_path: Path) -> None:
    """One real situation per code of the README's table; each ends in its code and (but 0) one stderr line."""
    state = str(tmp_path / "state")
    small = tmp_path / "three.csv"
    small.write_text("userId,userName,groupId,groupName\nx1,甲,88,示\nx2,乙,88,示\nx3,丙,88,示\n", encoding="utf-8")
    seen: dict[int, list[str]] = {}

    def check(code: int, *args: str, env: dict[str, str] | None = None, lines: int | None = 1) -> None:
        result = run(emulator, *args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if lines is not None:
            assert len(result.stderr.strip().splitlines()) == lines, (args, result.stderr)
        seen.setdefault(code, []).append(" ".join(args))

    check(0, "account", lines=0)
    check(1, "get", "nobody")  # CVC refused the call
    emulator.set_capacity(2)
    check(1, "create", str(small), lines=None)  # a batch CVC refused: one line per failed batch
    emulator.set_capacity(100000)
    check(2, "sync", "--mode", "sideways", str(small), lines=None)  # argparse: usage and the error
    check(2, "create", str(tmp_path / "missing.csv"))
    check(2, "sync", "--state", state, str(tmp_path / "missing.csv"))
    check(2, "sync", "--state", state, "--apply-plan", str(tmp_path / "missing-plan.json"))
    check(2, "sync", "--state", state)  # neither a file nor --apply-plan nor --reconcile
    check(2, "account", env={"CVC_BATCH_SIZE": "many"})
    check(3, "create", str(EVENTS / "demo-users-with-errors.ndjson"), lines=None)
    check(3, "create", str(EXPORTS / "excel-unicode-text.txt"), "--encoding", "ascii")  # cannot be read at all
    emulator.set_capacity(2)
    check(4, "sync", "--state", state, "--json", str(small), lines=None)  # the capacity gate
    emulator.set_capacity(100000)
    check(0, "sync", "--state", state, "--json", str(small), lines=None)
    check(0, "create", str(EVENTS / "demo-users.csv"), lines=0)  # users the shadow state never saw
    check(5, "sync", "--state", state, "--reconcile", "--json", lines=0)
    assert set(seen) == set(_readme_exit_codes()), seen


def _read_until(process: subprocess.Popen[bytes], prefix: str, timeout: float = 30.0) -> list[str]:
    """The process's stdout lines up to the first complete one starting with ``prefix``, with a deadline."""
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not any(line.startswith(prefix) for line in buffer[: buffer.rfind(b"\n") + 1].decode().splitlines()):
            remaining = deadline - time.monotonic()
            assert remaining > 0, buffer
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"exited with {process.wait()}: {buffer!r}"
                buffer += chunk
    return buffer.decode().splitlines()


def test_the_emulator_prints_the_lines_to_paste() -> None:
    """``cvcsync emulator`` (what ``make emulator`` runs) says how to use it; its lines work as printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cvcsync", "emulator", "--port", "0", "--access-key", "k-1:s3cret", "--admin"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        lines = _read_until(process, ".venv/bin/cvcsync ")
        url = lines[0].removeprefix("cvcsync emulator listening on ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert f"export CVC_ENDPOINT={url}" in lines
        assert "export ALIBABA_CLOUD_ACCESS_KEY_ID=k-1" in lines
        assert "export ALIBABA_CLOUD_ACCESS_KEY_SECRET=s3cret" in lines
        assert any("demo key" in line and line.startswith("#") for line in lines)  # why showing it is fine
        pasted = "\n".join(line for line in lines[1:])  # everything after the readiness line, as a person pastes it
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "CVC_", "CVCSYNC_"))}
        result = subprocess.run(
            ["bash", "-c", "set -eu\n" + pasted], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        users = requests.get(f"{url}/_emulator/users", timeout=10).json()
        assert sorted(u["userId"] for u in users) == [f"u-100{i}" for i in range(1, 7)]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_paste_lines_quote_and_reach_the_emulator() -> None:
    from cvcsync_dev.emulator.keys import AccessKey
    from cvcsync_dev.emulator.server import paste_lines

    lines = paste_lines("http://0.0.0.0:8765", [AccessKey("off", "x", disabled=True), AccessKey("STS.k", "s", "a b")])
    assert "export CVC_ENDPOINT=http://127.0.0.1:8765" in lines  # a wildcard address is not one to call
    assert "export ALIBABA_CLOUD_ACCESS_KEY_ID=STS.k" in lines and "export ALIBABA_CLOUD_SECURITY_TOKEN='a b'" in lines
