"""Every route of the HTTP API against the emulator (CVC) and moto (S3): successes, failures, CVC errors, circuit."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from cvcsync.http_api.app import HttpApi
from cvcsync.platform import services
from support.http_api import AUTH_ENV as HTTP_AUTH
from support.http_api import TOKEN, Answer, call, served, signed_session

UPLOADS = "hr-uploads"
STATE = "cvc-sync-state"


def user(user_id: str, **fields: str) -> dict[str, str]:
    return {"userId": user_id, "userName": f"员工 {user_id}", "groupId": "88", "groupName": "示例科技", **fields}


def export(ids: range) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["userId", "userName", "groupId", "groupName", "userMobile"])
    for i in ids:
        writer.writerow([f"e{i:04d}", f"员工{i}", "88", "示例科技", f"138{i:08d}"])
    return out.getvalue().encode()


@pytest.fixture
def env(emulator: Any, moto: Any) -> Iterator[dict[str, str]]:
    services.clear_cache()
    for bucket in (UPLOADS, STATE):
        moto.s3_client().create_bucket(Bucket=bucket)
    yield {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_SQS_ENDPOINT": moto.url,
        "CVCSYNC_HTTP_SYNC_BUCKET": UPLOADS,
        "CVCSYNC_STATE_BUCKET": STATE,
        "CVCSYNC_LOG_LEVEL": "WARNING",
        **HTTP_AUTH,
    }
    services.clear_cache()


@pytest.fixture
def api(env: dict[str, str]) -> HttpApi:
    return HttpApi(env)


def put_user(api: HttpApi, user_id: str, **fields: str) -> Answer:
    body = {k: v for k, v in user(user_id, **fields).items() if k != "userId"}
    return call(api, "PUT", f"/users/{user_id}", body=body)


# -- users ------------------------------------------------------------------------------------------------------


def test_put_then_get_a_user_in_camel_case(api: HttpApi, emulator: Any) -> None:
    answer = put_user(api, "u-1001", userEmail="zhang.san@example.com", userMobile="13800001001")
    assert answer.status == 200 and answer.json()["status"] == "upserted" and answer.json()["outcome"] == "created"
    run = call(api, "GET", f"/runs/{answer.json()['runId']}").json()["report"]  # a write is a run, with its report
    assert run["mode"] == "changes" and run["outcomes"]["created"] == 1 and run["source"]["route"] == "PUT /users/{id}"
    got = call(api, "GET", "/users/u-1001")
    assert got.status == 200
    shown = got.json()["user"]
    assert shown["userId"] == "u-1001" and shown["userEmail"] == "zhang.san@example.com"
    assert shown["groupName"] == "示例科技" and isinstance(shown["createTime"], int)
    assert [u["userId"] for u in emulator.users()] == ["u-1001"]


def test_put_reports_unknown_fields_and_uses_the_group_defaults(env: dict[str, str], emulator: Any) -> None:
    api = HttpApi({**env, "CVCSYNC_GROUP_ID": "88", "CVCSYNC_GROUP_NAME": "示例科技"})
    answer = call(api, "PUT", "/users/u-7", body={"userId": "u-7", "userName": "Seven", "badge": "x"})
    assert answer.status == 200 and answer.json()["notices"] == ["unknown field 'badge' ignored"]
    assert emulator.users()[0]["groupId"] == "88"


def test_get_an_absent_user_is_404_with_cvcs_request_id(api: HttpApi) -> None:
    answer = call(api, "GET", "/users/nobody")
    assert answer.status == 404 and answer.error["code"] == "NoSuchUser"
    assert answer.error["cvc"]["requestId"] and answer.error["cvc"]["action"] == "GetUser"


def test_delete_a_user(api: HttpApi, emulator: Any) -> None:
    put_user(api, "u-1")
    answer = call(api, "DELETE", "/users/u-1")
    assert answer.status == 200 and answer.json()["status"] == "deleted" and emulator.users() == []
    assert call(api, "DELETE", "/users/u-1").status == 200  # deleting an absent user succeeds, as in CVC


def test_a_batch_upsert_with_rejections_duplicates_and_several_cvc_batches(env: dict[str, str], emulator: Any) -> None:
    api = HttpApi({**env, "CVC_BATCH_SIZE": "2"})
    users = [
        user("a"),
        user("b", userEmail="bad"),
        user("c"),
        user("a", userName="A again"),
        {"userName": "x"},
        user("d"),
    ]
    answer = call(api, "POST", "/users", body={"users": users})
    assert answer.status == 207
    body = answer.json()
    assert body["summary"] == {"received": 6, "upserted": 3, "rejected": 2, "superseded": 1, "failed": 0}
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [(0, "superseded"), (1, "rejected"), (2, "upserted"), (3, "upserted"), (4, "rejected"),
                        (5, "upserted")]  # fmt: skip
    assert body["results"][0]["supersededBy"] == 3
    assert body["results"][1]["errors"][0]["field"] == "userEmail" and body["results"][1]["userId"] == "b"
    assert body["results"][4]["errors"][0] == {"field": "userId", "reason": "is required"}
    assert [r.get("outcome") for r in body["results"]] == ["superseded", None, "created", "created", None, "created"]
    held = {u["userId"]: u for u in emulator.users()}
    assert sorted(held) == ["a", "c", "d"] and held["a"]["userName"] == "A again"
    assert sorted(emulator.stats()["createBatchSizes"]) == [1, 2]  # the batches go out concurrently
    run = call(api, "GET", f"/runs/{body['runId']}").json()["report"]
    assert run["received"] == 6 and run["outcomes"]["rejected"] == 2 and run["outcomes"]["superseded"] == 1


def test_a_clean_batch_is_200(api: HttpApi) -> None:
    answer = call(api, "POST", "/users", body=[user("x"), user("y")])
    assert answer.status == 200 and answer.json()["summary"] == {
        "received": 2,
        "upserted": 2,
        "rejected": 0,
        "failed": 0,
    }


def test_batch_delete(api: HttpApi, emulator: Any) -> None:
    call(api, "POST", "/users", body=[user("x"), user("y"), user("z")])
    answer = call(api, "POST", "/users:delete", body={"userIds": ["x", "y", "x", "", 7]})
    assert answer.status == 207
    assert [r["status"] for r in answer.json()["results"]] == [
        "superseded",
        "deleted",
        "deleted",
        "rejected",
        "rejected",
    ]
    assert answer.json()["results"][3]["errors"][0]["field"] == "userIds[3]"
    assert [u["userId"] for u in emulator.users()] == ["z"]
    assert call(api, "POST", "/users:delete", body=["z"]).status == 200


# -- CVC failures and the circuit --------------------------------------------------------------------------------


def test_cvc_unavailable_is_503_with_its_request_id(api: HttpApi, emulator: Any) -> None:
    emulator.set_faults(error_rate=1.0, seed=1)
    answer = call(api, "GET", "/users/u-1")
    assert answer.status == 503 and answer.error["code"] == "CvcUnavailable"
    assert answer.error["cvc"]["code"] in ("InternalError", "ServiceUnavailable") and answer.error["cvc"]["requestId"]


def test_a_batch_whose_cvc_calls_fail_is_207_with_each_failure(env: dict[str, str], emulator: Any) -> None:
    api = HttpApi({**env, "CVC_BATCH_SIZE": "1"})
    emulator.set_faults(error_rate=1.0, seed=1)
    answer = call(api, "POST", "/users", body=[user("a"), user("b")])
    assert answer.status == 207 and answer.json()["summary"]["failed"] == 2
    assert answer.json()["results"][0]["error"]["retryable"] is True


def test_a_refusal_is_502_and_an_auth_refusal_opens_the_circuit(api: HttpApi, emulator: Any) -> None:
    emulator.set_key(emulator.access_key_id, disabled=True)
    refused = call(api, "PUT", "/users/u-1", body={"userName": "x", "groupId": "1", "groupName": "g"})
    assert refused.status == 502 and refused.error["code"] == "CvcRefused"
    assert refused.error["cvc"]["code"] == "InvalidAccessKeyId.Inactive" and refused.error["cvc"]["requestId"]
    calls = emulator.stats()["calls"]
    emulator.set_key(emulator.access_key_id, disabled=False)
    answer = call(api, "GET", "/users/u-1")
    assert answer.status == 429 and answer.error["code"] == "CircuitOpen" and int(answer.headers["Retry-After"]) > 0
    assert call(api, "POST", "/sync", body={"key": "uploads/full/x.csv"}).status == 429
    assert emulator.stats()["calls"] == calls  # an open circuit calls nothing


def test_consecutive_failures_open_the_circuit_mid_batch(env: dict[str, str], emulator: Any) -> None:
    api = HttpApi({**env, "CVC_BATCH_SIZE": "1", "CVCSYNC_CONCURRENCY": "1"})
    emulator.set_faults(error_rate=1.0, seed=1)
    answer = call(api, "POST", "/users", body=[user(f"u{i}") for i in range(8)])
    results = answer.json()["results"]
    # Four failed calls, the fifth opens the circuit (its batch stays unsettled, like the three never sent).
    assert [r["error"]["code"] == "CircuitOpen" for r in results] == [False] * 4 + [True] * 4
    assert all(r["status"] == "failed" and r["error"]["retryable"] for r in results)
    assert sum(emulator.stats()["calls"].values()) == 5
    assert call(api, "DELETE", "/users/u0").status == 429


# -- sync and runs ----------------------------------------------------------------------------------------------


def test_sync_an_object_then_read_its_run(api: HttpApi, moto: Any, emulator: Any) -> None:
    moto.s3_client().put_object(Bucket=UPLOADS, Key="uploads/full/hr.csv", Body=export(range(12)))
    answer = call(api, "POST", "/sync", body={"key": "uploads/full/hr.csv"})
    assert answer.status == 200
    report = answer.json()["report"]
    assert report["status"] == "applied" and report["outcomes"]["created"] == 12 and report["mode"] == "full"
    assert len(emulator.users()) == 12
    run = call(api, "GET", f"/runs/{report['runId']}")
    assert run.status == 200 and run.json()["report"] == report


def test_a_dry_run_sends_nothing_and_stores_its_plan(api: HttpApi, moto: Any, emulator: Any) -> None:
    moto.s3_client().put_object(Bucket=UPLOADS, Key="uploads/delta/d.csv", Body=export(range(3)))
    answer = call(api, "POST", "/sync", body={"key": "uploads/delta/d.csv", "bucket": UPLOADS, "dryRun": True})
    assert answer.status == 200
    body = answer.json()
    assert body["report"]["status"] == "dry-run" and body["report"]["planned"]["create"] == 3
    plan = moto.s3_client().get_object(Bucket=body["plan"]["bucket"], Key=body["plan"]["key"])["Body"].read()
    assert orjson.loads(plan)["planId"] == body["report"]["runId"]
    assert emulator.users() == [] and "CreateUser" not in emulator.stats()["calls"]


def test_sync_failures(api: HttpApi, moto: Any) -> None:
    absent = call(api, "POST", "/sync", body={"key": "uploads/full/absent.csv"})
    assert absent.status == 404 and absent.error["code"] == "NoSuchObject"
    moto.s3_client().put_object(Bucket=STATE, Key="uploads/full/state-side.csv", Body=export(range(1)))
    other = call(api, "POST", "/sync", body={"key": "uploads/full/state-side.csv", "bucket": STATE})
    assert other.status == 200  # the state bucket is allowed too
    assert call(api, "POST", "/sync", body={"key": "uploads/full/x.csv", "bucket": "elsewhere"}).status == 403
    assert call(api, "GET", "/runs/00000000-0000-0000-0000-000000000000").status == 404


def test_health_deep_checks_cvc_and_the_store(api: HttpApi, env: dict[str, str]) -> None:
    answer = call(api, "GET", "/healthz", query="deep=1", signed=False)
    assert answer.status == 200 and answer.json()["checks"] == {
        "cvc": {"ok": True, "latencyMs": answer.json()["checks"]["cvc"]["latencyMs"]},
        "objectStore": {"ok": True},
    }
    broken = HttpApi({**env, "CVC_ENDPOINT": "http://127.0.0.1:9", "CVCSYNC_HTTP_SYNC_BUCKET": "no-such-bucket"})
    failing = call(broken, "GET", "/healthz", query="deep=true", signed=False)
    assert failing.status == 503 and failing.json()["status"] == "failing"
    assert failing.json()["checks"]["cvc"]["code"] == "ConnectionError"


# -- over real HTTP ---------------------------------------------------------------------------------------------


def test_over_loopback_signed_replayed_and_bearer(api: HttpApi, emulator: Any) -> None:
    with served(api) as url:
        session = signed_session()
        answer = session.put(f"{url}/users/张 三", json={"userName": "张三", "groupId": "88", "groupName": "示例科技"})
        assert answer.status_code == 200, answer.text
        got = session.get(f"{url}/users/张 三", params={"view": "full", "a": "x y"})
        assert got.status_code == 200 and got.json()["user"]["userName"] == "张三"
        prepared = session.prepare_request(requests.Request("GET", f"{url}/users/张 三"))
        plain = requests.Session()
        plain.trust_env = False
        assert plain.send(prepared).status_code == 200
        replayed = plain.send(prepared)
        assert replayed.status_code == 401 and replayed.json()["error"]["code"] == "ReplayedRequest"
        bearer = plain.get(f"{url}/users/张 三", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        rotated = signed_session("tests-next", "tests-next-secret-0123456789").delete(f"{url}/users/张 三")
        assert rotated.status_code == 200 and emulator.users() == []
        big = session.post(f"{url}/users", data=b"[" + b" " * (1024 * 1024) + b"]",
                           headers={"Content-Type": "application/json"})  # fmt: skip
        assert big.status_code == 413
