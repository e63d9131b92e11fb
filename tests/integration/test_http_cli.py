"""``cvcsync serve`` (a real process on loopback) and ``cvcsync call`` (signed requests from the environment's key)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cvcsync import cli
from support.http_api import AUTH_ENV, KEY_ID
from support.scim_conformance import ready_url as _ready_url


@pytest.fixture
def server_env(emulator: Any) -> dict[str, str]:
    return {
        **AUTH_ENV,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def serve(server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    environment = {**os.environ, **server_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "cvcsync", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=environment,
    )
    try:
        url = _ready_url(process)
        for name, value in AUTH_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CVCSYNC_HTTP_ENDPOINT", url)
        yield url
    finally:
        process.terminate()
        assert process.wait(10) == 0  # SIGTERM ends it cleanly
        if process.stdout is not None:
            process.stdout.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, orjson.loads(out) if out.strip() else None, err


def test_call_against_serve(serve: str, capsys: pytest.CaptureFixture[str], emulator: Any, tmp_path: Path) -> None:
    user = '{"userName": "张三", "groupId": "88", "groupName": "示例科技"}'
    code, answer, _ = run(capsys, "call", "PUT", "/users/u 1", "--data", user)
    assert code == 0 and answer["status"] == "upserted"
    code, answer, _ = run(capsys, "call", "get", "/users/u 1?view=full", "--key-id", KEY_ID)
    assert code == 0 and answer["user"]["userName"] == "张三"
    code, answer, err = run(capsys, "call", "GET", "/users/nobody")
    assert code == 3 and answer["error"]["code"] == "NoSuchUser" and "HTTP 404 NoSuchUser" in err
    batch = tmp_path / "batch.json"
    batch.write_text('{"users": [{"userId": "u-2", "userName": "b", "groupId": "1", "groupName": "g"}, {}]}')
    code, answer, err = run(capsys, "call", "POST", "/users", "--data", f"@{batch}", "--endpoint", serve)
    assert code == 3 and answer["summary"]["rejected"] == 1 and "HTTP 207" in err
    code, answer, _ = run(capsys, "call", "DELETE", "/users/u-2", "--bearer")
    assert code == 0 and answer["status"] == "deleted"
    assert sorted(u["userId"] for u in emulator.users()) == ["u 1"]


def test_call_refuses_bad_input_before_sending(serve: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "call", "POST", "/users", "--data", "{not json")
    assert code == 3 and "--data is not JSON" in err
    code, _, err = run(capsys, "call", "GET", "/healthz", "--key-id", "nobody")
    assert code == 2 and "no key 'nobody'" in err


def test_call_reports_a_server_error_and_an_unreachable_endpoint(
    serve: str, capsys: pytest.CaptureFixture[str], emulator: Any
) -> None:
    emulator.set_faults(error_rate=1.0, seed=3)
    code, answer, err = run(capsys, "call", "DELETE", "/users/u-9")
    assert code == 1 and answer["error"]["code"] == "CvcUnavailable" and "HTTP 503" in err
    code, _, err = run(capsys, "call", "GET", "/healthz", "--endpoint", "http://127.0.0.1:9")
    assert code == 1 and "ConnectionError" in err


def test_serve_listens_on_loopback_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "loopback addresses only" in capsys.readouterr().err


def test_call_without_a_key_says_which_variable(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.delenv("CVCSYNC_HTTP_KEYS", raising=False)
    assert cli.main(["call", "GET", "/healthz"]) == 2
    assert "CVCSYNC_HTTP_KEYS" in capsys.readouterr().err
