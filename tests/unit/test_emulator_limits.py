"""The emulator's flow control: a concurrency and a rate limit beyond which it answers the gateway's
``Throttling.User`` (HTTP 400), as the real gateway throttles an account that asks too much."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from cvcsync_dev.emulator import EmulatorApp, FaultSettings, FlowControl, LimitSettings
from cvcsync_dev.emulator.codes import GatewayError
from cvcsync_dev.emulator.keys import AccessKey
from cvcsync_dev.emulator.server import build_parser, main
from support.signing import signed_parts

KEY = AccessKey("key", "secret")
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def refusal(flow: FlowControl) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        flow.enter()
    return refused.value


def test_beyond_the_concurrency_limit_calls_are_throttled_until_one_ends() -> None:
    flow = FlowControl(LimitSettings(max_concurrency=2))
    first = flow.enter()
    flow.enter()
    error = refusal(flow)
    assert (error.status, error.code) == (400, "Throttling.User")
    assert error.message == "Request was denied due to user flow control."
    assert error.headers == ()  # when a place frees is not known: no x-acs-retry-after
    flow.leave(first)
    flow.enter()
    assert flow.snapshot() == {
        "maxConcurrency": 2,
        "maxQps": None,
        "admitted": 3,
        "refused": 1,
        "inFlight": 2,
        "peakInFlight": 2,
    }


def test_beyond_the_rate_limit_calls_are_throttled_with_the_time_to_the_next_token() -> None:
    clock = Clock()
    flow = FlowControl(LimitSettings(max_qps=4), clock=clock)
    for _ in range(4):  # one second's calls may come at once
        flow.leave(flow.enter())
    assert refusal(flow).headers == (("x-acs-retry-after", "250"),)
    clock.now += 0.1
    assert refusal(flow).headers == (("x-acs-retry-after", "150"),)
    clock.now += 0.15
    flow.enter()  # a token came
    assert flow.snapshot()["admitted"] == 5 and flow.snapshot()["refused"] == 2


def test_no_limits_by_default() -> None:
    flow = FlowControl()
    for _ in range(1000):
        flow.enter()
    assert flow.snapshot()["refused"] == 0 and flow.snapshot()["peakInFlight"] == 1000


def test_configure_replaces_the_limits_and_forgets_everything_counted() -> None:
    flow = FlowControl(LimitSettings(max_concurrency=1))
    before = flow.enter()
    refusal(flow)
    flow.configure(LimitSettings(max_concurrency=1))
    flow.enter()  # the call still under way from before does not hold a place in the new limit
    flow.leave(before)  # and its end does not free the new call's
    refusal(flow)
    snapshot = flow.snapshot()
    assert (snapshot["maxConcurrency"], snapshot["refused"], snapshot["admitted"], snapshot["inFlight"]) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"maxConcurrency": 0}, "maxConcurrency must be at least 1"),
        ({"maxConcurrency": 2.5}, "maxConcurrency must be a whole number"),
        ({"maxConcurrency": True}, "maxConcurrency must be a whole number"),
        ({"maxQps": -1}, "maxQps must be positive"),
        ({"maxQps": "10"}, "maxQps must be a number"),
        ({"maxQpz": 10}, "unknown limit settings: maxQpz"),
    ],
)
def test_settings_are_checked(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LimitSettings.from_json(payload)


def test_settings_round_trip() -> None:
    settings = LimitSettings.from_json({"maxConcurrency": 8, "maxQps": 50})
    assert settings == LimitSettings(8, 50.0)
    assert LimitSettings.from_json(settings.to_json()) == settings
    assert LimitSettings.from_json({}) == LimitSettings()


# --- in the app ---------------------------------------------------------------------------------------------------


def call(app: EmulatorApp, clock: Clock, path: str = "/", method: str = "POST", admin: Any = None) -> Any:
    if admin is not None or path != "/":
        body = orjson.dumps(admin) if admin is not None else b""
        query = ""
    else:
        now = datetime.fromtimestamp(clock.now, timezone.utc)
        params, form = signed_parts("GetAccountInfo", key_id=KEY.id, secret=KEY.secret, now=now)
        body, query = urlencode(form).encode(), urlencode(params)
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": "application/x-www-form-urlencoded" if path == "/" else "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)
        return lambda data: None

    answer = orjson.loads(b"".join(app(environ, start_response)))
    return seen["status"], seen["headers"], answer


def test_the_app_throttles_beyond_its_rate_and_says_so_like_the_gateway() -> None:
    clock = Clock()
    app = EmulatorApp([KEY], clock=clock, sleep=clock.sleep, limits=LimitSettings(max_qps=1))
    assert call(app, clock)[0] == 200
    status, headers, body = call(app, clock)
    assert (status, body["Code"], headers["x-acs-retry-after"]) == (400, "Throttling.User", "1000")
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert app.stats.snapshot(0)["calls"] == {"GetAccountInfo": 2}  # refused calls are calls too
    assert app.stats.snapshot(0)["faults"]["throttled"] == 0  # a limit is not an injected fault
    clock.now += 1.0
    assert call(app, clock)[0] == 200


def test_a_call_holds_its_place_while_its_latency_is_slept() -> None:
    clock = Clock()
    seen: list[int] = []
    apps: list[EmulatorApp] = []
    app = EmulatorApp(
        [KEY],
        clock=clock,
        sleep=lambda seconds: seen.append(apps[0].limits.snapshot()["inFlight"]),
        faults=FaultSettings(latency_ms=10),
        limits=LimitSettings(max_concurrency=1),
    )
    apps.append(app)
    assert call(app, clock)[0] == 200
    assert seen == [1] and app.limits.snapshot()["inFlight"] == 0


def test_admin_limits_and_reset_back_to_the_limits_started_with() -> None:
    clock = Clock()
    app = EmulatorApp([KEY], clock=clock, admin=True, limits=LimitSettings(max_concurrency=5))
    status, _, body = call(app, clock, "/_emulator/limits", "GET")
    assert (status, body["maxConcurrency"], body["maxQps"]) == (200, 5, None)
    status, _, body = call(app, clock, "/_emulator/limits", "PUT", {"maxQps": 1})
    assert (status, body["maxConcurrency"], body["maxQps"]) == (200, None, 1.0)  # absent: no limit
    assert call(app, clock, "/_emulator/limits", "PUT", {"maxQps": 0})[0] == 400
    assert call(app, clock, "/_emulator/limits", "DELETE")[0] == 405
    call(app, clock)
    call(app, clock)
    assert call(app, clock, "/_emulator/limits", "GET")[2]["refused"] == 1
    call(app, clock, "/_emulator/reset", "POST", {})
    body = call(app, clock, "/_emulator/limits", "GET")[2]
    assert (body["maxConcurrency"], body["maxQps"], body["refused"], body["admitted"]) == (5, None, 0, 0)


def test_the_command_line_takes_both_limits() -> None:
    args = build_parser().parse_args(["--max-concurrency", "12", "--max-qps", "7.5"])
    assert (args.max_concurrency, args.max_qps) == (12, 7.5)
    args = build_parser().parse_args([])
    assert (args.max_concurrency, args.max_qps) == (None, None)


@pytest.mark.parametrize("flag", [["--max-concurrency", "0"], ["--max-qps", "0"], ["--max-qps", "-2"]])
def test_the_command_line_refuses_a_limit_that_is_not_positive(flag: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--access-key", "a:b", *flag], env={})
    assert caught.value.code == 2
