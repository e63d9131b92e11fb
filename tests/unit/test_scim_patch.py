"""PATCH (RFC 7644 3.5.2) on a stored resource, with the shapes Entra ID and Okta send, pages cited:
https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility
https://developer.okta.com/docs/reference/scim/scim-20/"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cvcsync.http_api.scim.errors import ScimError
from cvcsync.http_api.scim.filters import ENTERPRISE_USER
from cvcsync.http_api.scim.mapping import normalise
from cvcsync.http_api.scim.patch import apply_patch, operations_of

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
STORED: dict[str, Any] = {
    "userName": "Test_User_00aa00aa",
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "Test_User_11bb11bb@testuser.com"}],
}


def patched(*operations: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return normalise(apply_patch(resource or STORED, operations_of(body)))


def test_entra_update_multi_valued_properties() -> None:
    out = patched(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
    )
    assert out["emails"] == [{"primary": True, "type": "work", "value": "updatedEmail@microsoft.com"}]
    assert out["name"]["familyName"] == "updatedFamilyName" and out["name"]["givenName"] == "givenName"


def test_entra_disable_user_with_the_string_false() -> None:
    assert patched({"op": "Replace", "path": "active", "value": "False"})["active"] is False
    assert patched({"op": "replace", "path": "active", "value": False})["active"] is False


def test_entra_pathless_replace_with_attribute_paths_as_keys() -> None:
    out = patched(
        {
            "op": "replace",
            "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                "name.familyName": "Unua",
                f"{ENTERPRISE_USER}:employeeNumber": "Aklq",
            },
        }
    )
    assert out["displayName"] == "Bjfe" and out["name"]["givenName"] == "Kkom" and out["name"]["familyName"] == "Unua"
    assert out[ENTERPRISE_USER] == {"employeeNumber": "Aklq"}


def test_entra_add_of_a_work_email_the_user_lacks_creates_it() -> None:
    bare = {k: v for k, v in STORED.items() if k != "emails"}
    for op in ("Add", "Replace"):
        out = patched({"op": op, "path": 'emails[type eq "work"].value', "value": "new@example.com"}, resource=bare)
        assert out["emails"] == [{"type": "work", "value": "new@example.com"}]


def test_enterprise_extension_paths() -> None:
    out = patched({"op": "Add", "path": f"{ENTERPRISE_USER}:department", "value": "Sales"})
    assert out[ENTERPRISE_USER] == {"department": "Sales"}
    out = patched({"op": "Replace", "path": ENTERPRISE_USER, "value": {"department": "HR"}}, resource=out)
    assert out[ENTERPRISE_USER] == {"department": "HR"}
    out = patched({"op": "Remove", "path": f"{ENTERPRISE_USER}:department"}, resource=out)
    assert ENTERPRISE_USER not in out


def test_okta_deactivation_is_a_pathless_replace() -> None:
    assert patched({"op": "replace", "value": {"active": False}})["active"] is False


def test_add_appends_to_multi_valued_and_remove_takes_matching_values() -> None:
    out = patched({"op": "add", "path": "emails", "value": [{"type": "home", "value": "home@example.com"}]})
    assert [e["type"] for e in out["emails"]] == ["work", "home"]
    out = patched({"op": "remove", "path": 'emails[type eq "home"]'}, resource=out)
    assert [e["type"] for e in out["emails"]] == ["work"]
    out = patched({"op": "remove", "path": "emails"}, resource=out)
    assert "emails" not in out


def test_a_failing_operation_changes_nothing() -> None:
    before = copy.deepcopy(STORED)
    with pytest.raises(ScimError) as caught:
        patched(
            {"op": "replace", "path": "title", "value": "kept?"},
            {"op": "replace", "path": 'emails[type eq "home" or value co "x"].value', "value": "v"},
        )
    assert caught.value.scim_type == "noTarget"
    assert before == STORED


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "remove"}, "noTarget"),
        ({"op": "replace", "path": "id", "value": "other"}, "mutability"),
        ({"op": "replace", "path": "meta.version", "value": "W/1"}, "mutability"),
        ({"op": "move", "path": "title", "value": "x"}, "invalidSyntax"),
        ({"op": "add", "path": "title"}, "invalidValue"),
        ({"op": "replace", "value": "not an object"}, "invalidValue"),
        ({"op": "replace", "path": "emails[type eq", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": "active", "value": "maybe"}, "invalidValue"),
        ({"op": "remove", "path": "userName"}, "invalidValue"),
    ],
)
def test_refusals(operation: dict[str, Any], scim_type: str) -> None:
    with pytest.raises(ScimError) as caught:
        patched(operation)
    assert caught.value.status == 400 and caught.value.scim_type == scim_type


def test_the_request_shape_is_checked() -> None:
    for body in ([], {"schemas": ["x"], "Operations": [{"op": "add"}]}, {"Operations": []}, {"Operations": [1]}):
        with pytest.raises(ScimError) as caught:
            operations_of(body)
        assert caught.value.scim_type == "invalidSyntax"
    assert operations_of({"operations": [{"OP": "Add", "path": "title", "value": "x"}]})  # names in any case
