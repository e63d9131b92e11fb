"""SCIM Users against the emulator (CVC) and moto (S3): every write reaches CVC through the one run lifecycle,
the IdP reads back what it wrote, ``active: false`` removes the user from CVC and keeps the resource, uniqueness,
versions, the deletion limit, CVC's refusals and outages, and concurrent writers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cvcsync.http_api.app import HttpApi
from cvcsync.platform import services
from support.http_api import call
from support.scim_api import ENTERPRISE, SCIM_ENV, SCIM_TOKEN, STATE_BUCKET, patch, scim, user


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> Iterator[dict[str, str]]:
    moto.s3_client().create_bucket(Bucket=STATE_BUCKET)
    yield {**function_env, **SCIM_ENV}
    services.clear_cache()


@pytest.fixture
def api(env: dict[str, str]) -> HttpApi:
    return HttpApi(env)


def cvc_users(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["userId"]: u for u in emulator.users()}


def objects(moto: Any, prefix: str) -> list[str]:
    listing = moto.s3_client().list_objects_v2(Bucket=STATE_BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def report(moto: Any, run_id: str) -> dict[str, Any]:
    key = f"cvc-sync/runs/{run_id}/report.json"
    return dict(orjson.loads(moto.s3_client().get_object(Bucket=STATE_BUCKET, Key=key)["Body"].read()))


# -- create, read, what CVC holds ----------------------------------------------------------------------------------


def test_a_created_user_is_in_cvc_and_reads_back_as_written(api: HttpApi, emulator: Any, moto: Any) -> None:
    sent = user(
        "zhang.san@example.com",
        display="张三",
        externalId="e-1001",
        emails=[{"value": "zhang.san@example.com", "type": "work", "primary": True}],
        phoneNumbers=[{"value": "13800000001", "type": "mobile"}, {"value": "+86 10 5555 0100", "type": "work"}],
        title="工程师",  # CVC has no title: cvc-sync keeps it
        **{ENTERPRISE: {"department": "研发部", "employeeNumber": "1001"}},
    )
    created = scim(api, "POST", "/Users", sent)
    assert created.status == 201, created.body
    assert created.headers["Content-Type"] == "application/scim+json"
    body = created.json()
    assert created.headers["Location"] == f"https://cvcsync.test/scim/v2/Users/{body['id']}"
    assert created.headers["ETag"] == body["meta"]["version"] == 'W/"1"'
    assert body["meta"]["resourceType"] == "User" and body["meta"]["location"] == created.headers["Location"]
    for name in ("userName", "externalId", "emails", "phoneNumbers", "title", ENTERPRISE):
        assert body[name] == sent[name]
    assert body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]
    read = scim(api, "GET", f"/Users/{body['id']}")
    assert read.status == 200 and read.json() == body
    held = cvc_users(emulator)["zhang.san@example.com"]
    assert held["userName"] == "张三" and held["departName"] == "研发部"
    assert held["groupId"] == "88" and held["userMobile"] == "13800000001"
    assert objects(moto, f"cvc-sync/scim/users/{body['id']}.json")
    assert not objects(moto, "cvc-sync/scim/locks/")  # released


def test_the_probe_before_create_finds_the_user_by_username_ignoring_case(api: HttpApi) -> None:
    created = scim(api, "POST", "/Users", user("Li.Si@Example.com", display="李四")).json()
    found = scim(api, "GET", "/Users", query="filter=userName%20eq%20%22li.si%40example.com%22")
    assert found.status == 200
    listing = found.json()
    assert listing["totalResults"] == 1 and listing["Resources"][0]["id"] == created["id"]
    missing = scim(api, "GET", "/Users", query='filter=userName+eq+"nobody"').json()
    assert missing["totalResults"] == 0 and missing["Resources"] == []
    duplicate = scim(api, "POST", "/Users", user("li.si@example.com", display="李四"))
    assert duplicate.status == 409 and duplicate.json()["scimType"] == "uniqueness"


# -- active: false, versions, the run report ------------------------------------------------------------------------


def test_deactivation_removes_from_cvc_and_reactivation_creates_again(api: HttpApi, emulator: Any, moto: Any) -> None:
    made = scim(api, "POST", "/Users", user("wang.wu@example.com", display="王五")).json()
    off = scim(api, "PATCH", f"/Users/{made['id']}", patch({"op": "replace", "path": "active", "value": False}))
    assert off.status == 200 and off.json()["active"] is False and off.json()["meta"]["version"] == 'W/"2"'
    assert "wang.wu@example.com" not in cvc_users(emulator)
    listed = scim(api, "GET", "/Users", query="filter=active+eq+false").json()
    assert [r["id"] for r in listed["Resources"]] == [made["id"]]  # a scan filter: still answerable
    # An inactive user's change touches only the document: CVC holds nothing of it.
    renamed = scim(
        api, "PATCH", f"/Users/{made['id']}", patch({"op": "replace", "path": "displayName", "value": "王五五"})
    )
    assert renamed.status == 200 and "wang.wu@example.com" not in cvc_users(emulator)
    on = scim(api, "PATCH", f"/Users/{made['id']}", patch({"op": "replace", "path": "active", "value": True}))
    assert on.status == 200 and cvc_users(emulator)["wang.wu@example.com"]["userName"] == "王五五"
    keys = objects(moto, "cvc-sync/reports/changes/scim/")
    assert len(keys) == 3  # create, deactivate, reactivate: one run each
    run_ids = [key.rsplit("/", 1)[-1].removesuffix(".json") for key in keys]
    outcomes = sorted(next(k for k, v in report(moto, r)["outcomes"].items() if v) for r in run_ids)
    assert outcomes == ["created", "created", "deleted"]
    assert {report(moto, r)["source"]["kind"] for r in run_ids} == {"scim"}


def test_if_match_and_if_none_match(api: HttpApi) -> None:
    made = scim(api, "POST", "/Users", user("zhao.liu@example.com", display="赵六")).json()
    path = f"/Users/{made['id']}"
    unchanged = scim(api, "GET", path, headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status == 304 and unchanged.body == b"" and unchanged.headers["ETag"] == 'W/"1"'
    step = patch({"op": "replace", "path": "title", "value": "经理"})
    assert scim(api, "PATCH", path, step, headers={"If-Match": 'W/"1"'}).headers["ETag"] == 'W/"2"'
    stale = scim(api, "PATCH", path, step, headers={"If-Match": 'W/"1"'})
    assert stale.status == 412 and 'W/"2"' in stale.json()["detail"]
    assert scim(api, "DELETE", path, headers={"If-Match": 'W/"1"'}).status == 412
    assert scim(api, "DELETE", path, headers={"If-Match": 'W/"2"'}).status == 204


# -- refusals -------------------------------------------------------------------------------------------------------


def test_bad_values_are_named_by_their_scim_attribute_and_masked(api: HttpApi, emulator: Any) -> None:
    bad = user("sun.qi@example.com", display="孙七", phoneNumbers=[{"type": "mobile", "value": "13800000001x"}])
    answer = scim(api, "POST", "/Users", bad)
    error = answer.json()
    assert answer.status == 400 and error["scimType"] == "invalidValue"
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and error["status"] == "400"
    assert 'phoneNumbers[type eq "mobile"].value' in error["detail"] and "masked" in error["detail"]
    assert "13800000001" not in error["detail"]
    assert emulator.users() == []
    assert scim(api, "GET", "/Users", query='filter=userName+eq+"sun.qi@example.com"').json()["totalResults"] == 0
    broken = scim(api, "GET", "/Users", query="filter=userName+eq")
    assert broken.status == 400 and broken.json()["scimType"] == "invalidFilter"
    assert "character" in broken.json()["detail"]


def test_cvc_refusal_is_a_502_and_a_dead_letter_and_the_document_is_not_written(
    api: HttpApi, emulator: Any, moto: Any
) -> None:
    emulator.set_capacity(1)
    assert scim(api, "POST", "/Users", user("a@example.com", display="甲")).status == 201
    refused = scim(api, "POST", "/Users", user("b@example.com", display="乙"))
    extra = refused.json()["urn:cvcsync:scim:error"]
    assert refused.status == 502 and extra["deadLettered"] is True
    assert "redrive" in refused.json()["detail"]
    letters = objects(moto, "cvc-sync/dead-letters/")
    assert letters, "a refused change is a dead letter"
    assert report(moto, extra["runId"])["outcomes"]["deadLettered"] == 1
    assert scim(api, "GET", "/Users", query='filter=userName+eq+"b@example.com"').json()["totalResults"] == 0
    assert scim(api, "POST", "/Users", user("b@example.com", display="乙")).status == 502  # the claim was let go


def test_a_cvc_outage_is_a_503_with_retry_after_and_nothing_is_stored(api: HttpApi, emulator: Any) -> None:
    emulator.set_faults(error_rate=1.0, seed=3)
    answer = scim(api, "POST", "/Users", user("c@example.com", display="丙"))
    assert answer.status == 503 and int(answer.headers["Retry-After"]) >= 1
    emulator.set_faults()
    assert scim(api, "GET", "/Users", query='filter=userName+eq+"c@example.com"').json()["totalResults"] == 0
    assert scim(api, "POST", "/Users", user("c@example.com", display="丙")).status == 201  # the IdP's retry


def test_the_deletion_limit_refuses_with_403_an_alert_and_a_report(
    env: dict[str, str], emulator: Any, moto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api = HttpApi({**env, "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR": "2"})
    ids = [scim(api, "POST", "/Users", user(f"d{n}@example.com", display=f"丁{n}")).json()["id"] for n in range(3)]
    off = patch({"op": "replace", "path": "active", "value": False})
    assert scim(api, "PATCH", f"/Users/{ids[0]}", off).status == 200
    assert scim(api, "DELETE", f"/Users/{ids[1]}").status == 204
    with caplog.at_level("ERROR"):
        refused = scim(api, "PATCH", f"/Users/{ids[2]}", off)
    assert refused.status == 403 and "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR" in refused.json()["detail"]
    assert "d2@example.com" in cvc_users(emulator)  # nothing was sent
    assert scim(api, "GET", f"/Users/{ids[2]}").json()["active"] is True  # nor stored
    alert = [r for r in caplog.records if r.getMessage() == "sync refused by a safety gate"]
    assert alert and alert[0].guard == "scimDeletionLimit"  # type: ignore[attr-defined]
    refusal = report(moto, refused.json()["urn:cvcsync:scim:error"]["runId"])
    # The refused removal is one record the gate skipped, as in an upload a gate stops: the run is refused.
    assert refusal["status"] == "refused" and refusal["outcomes"]["skippedByGuard"] == 1
    assert [(g["name"], g["passed"]) for g in refusal["guards"]] == [("scimDeletionLimit", False)]
    # Changes that remove nobody still go through.
    assert scim(api, "PATCH", f"/Users/{ids[2]}", patch({"op": "add", "path": "title", "value": "x"})).status == 200


def test_a_filter_no_index_answers_is_refused_as_too_many_beyond_the_scan_limit(
    api: HttpApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cvcsync.http_api.scim import handlers

    monkeypatch.setattr(handlers, "MAX_SCAN", 2)
    for n in range(3):
        assert scim(api, "POST", "/Users", user(f"s{n}@example.com", title="x")).status == 201
    scan = scim(api, "GET", "/Users", query='filter=title+eq+"x"')
    assert scan.status == 400 and scan.json()["scimType"] == "tooMany" and "userName" in scan.json()["detail"]
    indexed = scim(api, "GET", "/Users", query='filter=userName+eq+"s1@example.com"+and+title+eq+"x"')
    assert indexed.status == 200 and indexed.json()["totalResults"] == 1


def test_groups_bulk_and_authentication(env: dict[str, str], api: HttpApi) -> None:
    groups = scim(api, "POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]})
    assert groups.status == 404 and "CVC has no group objects" in groups.json()["detail"]
    assert scim(api, "GET", "/ResourceTypes/Group").status == 404
    types = scim(api, "GET", "/ResourceTypes", token=None).json()
    assert [t["id"] for t in types["Resources"]] == ["User"]
    assert scim(api, "POST", "/Bulk", {"schemas": []}).status == 501
    anonymous = scim(api, "GET", "/Users", token=None)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert scim(api, "GET", "/Users", token="not-the-token-0123456789").status == 401
    unconfigured = HttpApi({k: v for k, v in env.items() if k != "CVCSYNC_SCIM_TOKENS"})
    assert scim(unconfigured, "GET", "/Users").status == 503
    assert scim(api, "DELETE", "/Users").status == 405
    assert scim(api, "GET", "/users", query='filter=userName+eq+"x"').status == 200  # endpoint names: any case
    # A SCIM token is no HTTP API token: it provisions users and nothing else.
    other = call(api, "GET", "/users/x", signed=False, headers={"Authorization": f"Bearer {SCIM_TOKEN}"})
    assert other.status in (401, 503) and "error" in other.json()
