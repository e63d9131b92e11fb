"""The identity providers' own request sequences, as their public documentation shows them, against the SCIM
endpoint with the emulator as CVC and moto as S3. Each test cites the page its requests come from.

Microsoft Entra ID:
  https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
  (the userName probe, Create User, Update User [Multi-valued] / [Single-valued properties], Disable User, Delete)
  https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility
  ("False" as a string, path-less replace with attribute paths as keys, the aadOptscim062020 flag in the URL)
Okta:
  https://developer.okta.com/docs/reference/scim/scim-20/
  (the probe with startIndex/count, Create with password and groups, PUT of the full resource, PATCH for active,
  import page by page)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cvcsync.http_api.app import HttpApi
from cvcsync.platform import services
from support.scim_api import CORE, ENTERPRISE, PATCH_OP, SCIM_ENV, STATE_BUCKET, scim

ENTRA_PAGE = "https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups"
OKTA_PAGE = "https://developer.okta.com/docs/reference/scim/scim-20/"


@pytest.fixture
def env(function_env: dict[str, str], moto: Any) -> Iterator[dict[str, str]]:
    moto.s3_client().create_bucket(Bucket=STATE_BUCKET)
    yield {**function_env, **SCIM_ENV}
    services.clear_cache()


@pytest.fixture
def api(env: dict[str, str]) -> HttpApi:
    return HttpApi(env)


def cvc(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["userId"]: u for u in emulator.users()}


def deletion_slots(moto: Any) -> int:
    listing = moto.s3_client().list_objects_v2(Bucket=STATE_BUCKET, Prefix="cvc-sync/scim/deletions/")
    return len(listing.get("Contents", []))


def probe(api: HttpApi, user_name: str, extra: str = "") -> dict[str, Any]:
    answer = scim(api, "GET", "/Users", query=f'filter=userName+eq+"{user_name}"{extra}')
    assert answer.status == 200, answer.body
    return dict(answer.json())


def test_entra_id_lifecycle(api: HttpApi, emulator: Any, moto: Any) -> None:
    """ENTRA_PAGE: Test Connection and the probe, Create User, both Update User shapes, Disable User (as the
    string "False", the shape without aadOptscim062020), re-enable, then the soft delete and the hard DELETE."""
    flag = "&aadOptscim062020"  # a tenant URL flag Entra ID carries on every request: ignored, not refused
    assert probe(api, "00000000-0000-0000-0000-000000000000", flag)["totalResults"] == 0  # Test Connection
    user_name = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    assert probe(api, user_name) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    created = scim(
        api,
        "POST",
        "/Users",
        {
            "schemas": [CORE, ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": user_name,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": "Test_User_11bb11bb@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
        },
    )
    assert created.status == 201, created.body
    scim_id = created.json()["id"]
    assert cvc(emulator)[user_name]["userName"] == "givenName familyName"  # name.formatted: no displayName sent
    assert probe(api, user_name)["Resources"][0]["id"] == scim_id

    multi = scim(
        api,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            ],
        },
    )
    assert multi.status == 200, multi.body
    assert multi.json()["emails"] == [{"primary": True, "type": "work", "value": "updatedEmail@microsoft.com"}]
    assert cvc(emulator)[user_name]["userEmail"] == "updatedEmail@microsoft.com"

    renamed = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    single = scim(
        api,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Replace", "path": "userName", "value": renamed}],
        },
    )
    assert single.status == 200 and single.json()["userName"] == renamed
    assert set(cvc(emulator)) == {renamed}  # userId comes from userName: the old CVC user went, the new came
    assert probe(api, user_name)["totalResults"] == 0 and probe(api, renamed)["totalResults"] == 1

    pathless = scim(
        api,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {
                    "op": "replace",
                    "value": {
                        "displayName": "Bjfe",
                        "name.givenName": "Kkom",
                        "name.familyName": "Unua",
                        f"{ENTERPRISE}:employeeNumber": "Aklq",
                    },
                },
                {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Human Resources"},
            ],
        },
    )
    assert pathless.status == 200, pathless.body
    body = pathless.json()
    assert body["name"]["givenName"] == "Kkom" and body[ENTERPRISE] == {
        "employeeNumber": "Aklq",
        "department": "Human Resources",
    }
    assert cvc(emulator)[renamed]["userName"] == "Bjfe" and cvc(emulator)[renamed]["departName"] == "Human Resources"

    disabled = scim(
        api,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
    )
    assert disabled.status == 200 and disabled.json()["active"] is False
    assert renamed not in cvc(emulator)
    read = scim(api, "GET", f"/Users/{scim_id}")
    assert read.status == 200 and read.json()["active"] is False  # answerable until the hard delete

    enabled = scim(
        api,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Replace", "path": "active", "value": "True"}],
        },
    )
    assert enabled.status == 200 and cvc(emulator)[renamed]["userName"] == "Bjfe"

    assert (
        scim(
            api,
            "PATCH",
            f"/Users/{scim_id}",
            {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        ).status
        == 200
    )
    deleted = scim(api, "DELETE", f"/Users/{scim_id}")
    assert deleted.status == 204 and deleted.body == b""
    assert scim(api, "GET", f"/Users/{scim_id}").status == 404
    assert cvc(emulator) == {} and probe(api, renamed)["totalResults"] == 0
    assert deletion_slots(moto) == 2  # the two deactivations; the hard DELETE of an inactive user removes nothing


def test_okta_lifecycle_and_import(api: HttpApi, emulator: Any, moto: Any) -> None:
    """OKTA_PAGE: the probe with startIndex and count, Create (with password and groups), PUT of the full resource
    read before, PATCH of active, and the import of every user page by page."""
    query = "filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100"
    assert scim(api, "GET", "/Users", query=query).json()["totalResults"] == 0
    created = scim(
        api,
        "POST",
        "/Users",
        {
            "schemas": [CORE],
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
            "displayName": "Test User",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": True,
        },
    )
    assert created.status == 201, created.body
    body = created.json()
    assert "password" not in body and "groups" not in body  # never kept; read-only (RFC 7644 3.5.1: ignored)
    stored = moto.s3_client().get_object(Bucket=STATE_BUCKET, Key=f"cvc-sync/scim/users/{body['id']}.json")
    assert b"1mz050nq" not in stored["Body"].read()
    assert scim(api, "GET", "/Users", query=query).json()["Resources"][0]["id"] == body["id"]

    current = scim(api, "GET", f"/Users/{body['id']}").json()
    current["name"]["middleName"] = "Excited"
    current["groups"] = []
    replaced = scim(api, "PUT", f"/Users/{body['id']}", current)
    assert replaced.status == 200 and replaced.json()["name"]["middleName"] == "Excited"
    assert replaced.json()["meta"]["version"] == 'W/"2"'

    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim(api, "PATCH", f"/Users/{body['id']}", deactivate).json()["active"] is False
    assert "test.user@okta.local" not in cvc(emulator)
    activate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert scim(api, "PATCH", f"/Users/{body['id']}", activate).json()["active"] is True
    assert cvc(emulator)["test.user@okta.local"]["userName"] == "Test User"

    for n in range(6):
        made = scim(api, "POST", "/Users", {"schemas": [CORE], "userName": f"import.{n}@okta.local"})
        assert made.status == 201, made.body
    seen: list[str] = []
    start = 1
    while True:
        page = scim(api, "GET", "/Users", query=f"startIndex={start}&count=3").json()
        assert page["totalResults"] == 7 and page["startIndex"] == start
        seen += [resource["id"] for resource in page["Resources"]]
        if start + 3 > page["totalResults"]:
            break
        start += 3
    assert len(seen) == len(set(seen)) == 7
    again = [r["id"] for r in scim(api, "GET", "/Users", query="startIndex=1&count=100").json()["Resources"]]
    assert again == seen  # the same order whatever the page size, as Okta requires
    assert set(cvc(emulator)) == {"test.user@okta.local", *(f"import.{n}@okta.local" for n in range(6))}
