"""SCIM User -> CVC user (docs/scim.md's table, one test per row) and the document cvc-sync keeps."""

from __future__ import annotations

from typing import Any

import pytest

from cvcsync.errors import ConfigurationError
from cvcsync.http_api.scim.errors import ScimError
from cvcsync.http_api.scim.filters import CORE_USER, ENTERPRISE_USER
from cvcsync.http_api.scim.mapping import index_key, is_active, normalise, to_cvc
from cvcsync.http_api.scim.settings import ScimSettings

DEFAULTS = {"groupId": "88", "groupName": "示例科技"}
SETTINGS = ScimSettings()


def cvc(resource: dict[str, Any], settings: ScimSettings = SETTINGS) -> dict[str, str]:
    return to_cvc(normalise({"userName": "u@example.com", **resource}), settings, DEFAULTS).to_cvc()


def test_user_id_from_user_name_or_external_id() -> None:
    assert cvc({})["userId"] == "u@example.com"
    by_object_id = ScimSettings(user_id_source="externalId")
    assert cvc({"externalId": "7fce0092"}, by_object_id)["userId"] == "7fce0092"
    with pytest.raises(ScimError) as caught:
        cvc({}, by_object_id)
    assert caught.value.scim_type == "invalidValue" and "externalId is required" in caught.value.detail


def test_user_name_from_display_name_formatted_given_family_or_the_scim_user_name() -> None:
    assert cvc({"displayName": "张三", "name": {"formatted": "x"}})["userName"] == "张三"
    assert cvc({"name": {"formatted": "Jane Doe", "givenName": "J"}})["userName"] == "Jane Doe"
    assert cvc({"name": {"givenName": "小明", "familyName": "王"}})["userName"] == "王小明"  # join_name: CJK
    assert cvc({"name": {"givenName": "Jane", "familyName": "Doe"}})["userName"] == "Jane Doe"
    family_first = ScimSettings(name_order="family-given")
    assert cvc({"name": {"givenName": "Jane", "familyName": "Doe"}}, family_first)["userName"] == "Doe Jane"
    assert cvc({})["userName"] == "u@example.com"


def test_email_the_primary_work_one_first() -> None:
    emails = [
        {"type": "home", "value": "home@example.com", "primary": True},
        {"type": "work", "value": "w1@example.com"},
        {"type": "work", "value": "w2@example.com", "primary": True},
    ]
    assert cvc({"emails": emails})["userEmail"] == "w2@example.com"
    assert cvc({"emails": emails[:1]})["userEmail"] == "home@example.com"


def test_mobile_and_work_phone_by_type() -> None:
    phones = [
        {"type": "work", "value": "tel:+86-10-5555-0100"},
        {"type": "mobile", "value": "13800000001"},
        {"type": "home", "value": "010-1234567"},
    ]
    record = cvc({"phoneNumbers": phones})
    assert record["userMobile"] == "13800000001" and record["userTel"] == "+86-10-5555-0100"


def test_department_avatar_and_group() -> None:
    record = cvc(
        {
            ENTERPRISE_USER: {"department": "研发部"},
            "photos": [
                {"type": "thumbnail", "value": "https://p/t.png"},
                {"type": "photo", "value": "https://p/p.png"},
            ],
        }
    )
    assert record["departName"] == "研发部" and record["userAvatarUrl"] == "https://p/p.png"
    assert (record["groupId"], record["groupName"]) == ("88", "示例科技")
    with pytest.raises(ConfigurationError):
        to_cvc(normalise({"userName": "u"}), SETTINGS, {})


def test_values_are_cleaned_as_on_every_path_and_problems_name_the_scim_attribute() -> None:
    assert cvc({"displayName": "  张  三  "})["userName"] == "张三"  # tidy_name, as for files
    assert cvc({"displayName": " Jane   Doe "})["userName"] == "Jane Doe"
    assert cvc({"userName": "ｕ１@example.com"})["userId"] == "u1@example.com"  # NFKC, as for ids
    with pytest.raises(ScimError) as caught:
        cvc({"emails": [{"type": "work", "value": "not-an-address"}]})
    detail = caught.value.detail
    assert 'emails[type eq "work"].value' in detail and "masked" in detail and "not-an-address" not in detail


def test_the_kept_document_drops_password_read_only_and_nulls_and_keeps_the_rest() -> None:
    body = {
        "schemas": [CORE_USER],
        "id": "client-chosen",
        "meta": {"resourceType": "User"},
        "groups": [],
        "password": "1mz050nq",
        "UserName": "u",  # attribute names in any case: stored in the schema's spelling
        "nickName": None,
        "locale": "en-US",
        "urn:example:custom:2.0:User": {"badge": 7},
        f"{CORE_USER}:title": "Guide",
        "active": "True",
    }
    assert normalise(body) == {
        "userName": "u",
        "locale": "en-US",
        "urn:example:custom:2.0:User": {"badge": 7},
        "title": "Guide",
        "active": True,
    }
    assert is_active({"userName": "u"}) and not is_active({"active": False})


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"schemas": ["urn:other"], "userName": "u"}, "schemas must list"),
        ({"userName": ""}, "userName is required"),
        ({"userName": "u", "emails": {"value": "x"}}, "emails must be a list"),
        ({"userName": "u", "name": "Jane"}, "name must be of type complex"),
        ({"userName": "u", "active": 1}, "active must be true or false"),
        ([], "must be a JSON object"),
    ],
)
def test_malformed_bodies(body: Any, words: str) -> None:
    with pytest.raises(ScimError) as caught:
        normalise(body)
    assert caught.value.status == 400 and words in caught.value.detail


def test_unique_values_compare_as_the_rfc_says() -> None:
    assert index_key("userName", "Alice@Example.com") == index_key("userName", "alice@example.com")
    assert index_key("userName", "ａｌｉｃｅ") == index_key("userName", "alice")
    assert index_key("externalId", "Abc") != index_key("externalId", "abc")
