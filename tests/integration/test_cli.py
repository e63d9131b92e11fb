"""The ``cvcsync`` command end to end: a real subprocess talking to the emulator over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events" / "users"


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
    assert "line 3: user 'u-2003': userEmail: is not an e-mail address (***)" in result.stderr
    assert "not-an-email" not in result.stderr  # personal data is masked even when it is wrong
    assert "line 4: is not valid JSON" in result.stderr
    assert "line 5: unknown field 'nickname' ignored" in result.stderr
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
        (("create", "/no/such/file.csv"), {}, 3, "invalid input: /no/such/file.csv: no such file"),
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
    assert "no CVC credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID" in result.stderr


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
