"""The WSGI app driven directly (no network), with an injected clock and sleep: time-dependent behaviour."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from cvcsync_dev.emulator import EmulatorApp, FaultSettings
from cvcsync_dev.emulator.keys import AccessKey, parse_access_key, parse_access_keys
from cvcsync_dev.emulator.server import main
from support.signing import signed_parts

KEY = AccessKey("key", "secret")
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


def wsgi(app: EmulatorApp, params: dict[str, str], form: dict[str, str] | None = None, method: str = "POST") -> Answer:
    body = urlencode(form or {}).encode()
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/",
        "QUERY_STRING": urlencode(params),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    chunks = b"".join(app(environ, start_response))
    return Answer(seen["status"], seen["headers"], chunks)


def signed(clock: Clock, action: str = "GetAccountInfo", **options: Any) -> tuple[dict[str, str], dict[str, str]]:
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    return signed_parts(action, key_id=KEY.id, secret=KEY.secret, now=now, **options)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> EmulatorApp:
    return EmulatorApp([KEY], clock=clock, sleep=clock.sleep)


def test_replay_within_the_window_is_refused_and_after_it_is_expired(app: EmulatorApp, clock: Clock) -> None:
    params, form = signed(clock, nonce="fixed")
    assert wsgi(app, params, form).status == 200
    clock.now += 14 * 60
    assert wsgi(app, params, form).json()["Code"] == "SignatureNonceUsed"
    clock.now += 2 * 60
    assert wsgi(app, params, form).json()["Code"] == "InvalidTimeStamp.Expired"
    assert wsgi(app, *signed(clock)).status == 200
    assert len(app.nonces) == 1  # the old nonce was forgotten when the new one was recorded


def test_a_nonce_with_a_future_timestamp_is_remembered_until_that_timestamp_expires(
    app: EmulatorApp, clock: Clock
) -> None:
    future = datetime.fromtimestamp(clock.now + 14 * 60, timezone.utc)
    params, form = signed_parts("GetAccountInfo", key_id=KEY.id, secret=KEY.secret, now=future, nonce="ahead")
    assert wsgi(app, params, form).status == 200
    clock.now += 25 * 60  # past a window from receipt, but the timestamp is still valid
    assert wsgi(app, params, form).json()["Code"] == "SignatureNonceUsed"


def test_create_time_comes_from_the_server_clock_and_survives_updates(app: EmulatorApp, clock: Clock) -> None:
    users = orjson.dumps([{"userId": "u", "userName": "n", "groupId": "g", "groupName": "G"}]).decode()
    assert wsgi(app, *signed(clock, "CreateUser", body={"UserInfo": users, "Count": "1"})).json()["Success"]
    clock.now += 60
    assert wsgi(app, *signed(clock, "CreateUser", body={"UserInfo": users, "Count": "1"})).json()["Success"]
    info = wsgi(app, *signed(clock, "GetUser", query={"UserId": "u"})).json()["UserInfo"]
    assert info["CreateTime"] == int(START * 1000)


def test_latency_is_slept_only_for_authenticated_calls(app: EmulatorApp, clock: Clock) -> None:
    app.faults.configure(FaultSettings(latency_ms=250))
    wsgi(app, *signed(clock))
    params, form = signed(clock)
    params["Signature"] = "forged"
    assert wsgi(app, params, form).json()["Code"] == "SignatureDoesNotMatch"
    assert clock.slept == [0.25]


def test_a_drop_sends_half_of_the_announced_body_after_doing_the_work(app: EmulatorApp, clock: Clock) -> None:
    app.faults.configure(FaultSettings(drop_rate=1.0))
    users = orjson.dumps([{"userId": "u", "userName": "n", "groupId": "g", "groupName": "G"}]).decode()
    answer = wsgi(app, *signed(clock, "CreateUser", body={"UserInfo": users, "Count": "1"}))
    assert 0 < len(answer.body) < int(answer.headers["Content-Length"])
    assert app.store.get("u") is not None
    assert app.stats.snapshot(1)["faults"]["dropped"] == 1


def test_unknown_method_is_refused(app: EmulatorApp, clock: Clock) -> None:
    answer = wsgi(app, *signed(clock), method="DELETE")
    assert (answer.status, answer.json()["Code"]) == (405, "UnsupportedHTTPMethod")


def test_access_key_parsing() -> None:
    assert parse_access_key("id:secret") == AccessKey("id", "secret")
    assert parse_access_key("STS.id:secret:tok:en") == AccessKey("STS.id", "secret", "tok:en")
    assert [k.id for k in parse_access_keys("a:1, b:2,,")] == ["a", "b"]
    with pytest.raises(ValueError) as caught:
        parse_access_key("id-only")
    assert "id-only" in str(caught.value)
    with pytest.raises(ValueError) as hidden:
        parse_access_key("id:topsecret:")
    assert "topsecret" not in str(hidden.value)
    assert "topsecret" not in repr(parse_access_key("id:topsecret:token"))


def test_main_refuses_to_start_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0"], env={}) == 2
    assert "CVC_EMULATOR_ACCESS_KEYS" in capsys.readouterr().err


def test_main_refuses_an_unknown_disabled_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--access-key", "a:b", "--disabled-key", "zz"], env={}) == 2
    assert "zz" in capsys.readouterr().err


def test_main_rejects_a_rate_above_one() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--access-key", "a:b", "--throttle-rate", "2"], env={})
    assert caught.value.code == 2


def test_the_journal_records_each_write_with_its_user_ids_and_ending_only_while_on(
    app: EmulatorApp, clock: Clock
) -> None:
    def create(*ids: str) -> None:
        users = [{"userId": i, "userName": "n", "groupId": "g", "groupName": "G"} for i in ids]
        wsgi(app, *signed(clock, "CreateUser", body={"UserInfo": orjson.dumps(users).decode(), "Count": str(len(ids))}))

    create("before")
    app.journal.switch(True)
    create("a", "b")
    app.faults.configure(FaultSettings(drop_rate=1.0))
    create("c")
    app.faults.configure(FaultSettings(error_rate=1.0))
    create("d")
    app.faults.configure(FaultSettings())
    wsgi(app, *signed(clock, "DeleteUser", body={"UserInfo": orjson.dumps([{"userId": "a"}]).decode(), "Count": "1"}))
    wsgi(app, *signed(clock))  # reads are not journalled
    assert [(e["action"], e["userIds"], e["result"]) for e in app.journal.entries()] == [
        ("CreateUser", ["a", "b"], "ok"),
        ("CreateUser", ["c"], "dropped"),
        ("CreateUser", ["d"], "error"),
        ("DeleteUser", ["a"], "ok"),
    ]
    app.reset()
    assert app.journal.entries() == [] and not app.journal.enabled
