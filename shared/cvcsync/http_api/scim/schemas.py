"""The discovery documents (RFC 7643 sections 5-7; RFC 7644 section 4): ServiceProviderConfig, ResourceTypes,
Schemas. Built from constants, no I/O; ``meta.location`` from the request's base URL.

Only what CVC can hold is advertised: one resource type, ``User`` (with the enterprise extension). CVC has no
group objects (a user's enterprise and department are attributes of the user), so there is no ``Group`` resource
type, and ``/Groups`` answers 404 saying so (``handlers.groups``); ``docs/scim.md`` says how to set an IdP up
without group provisioning.

The User schema lists the attributes an IdP maps to CVC and the ones it commonly sends besides; cvc-sync keeps
every attribute it is sent (but ``password``, which it never stores, and the read-only ones, which RFC 7644 says
to ignore), so an IdP reads back what it wrote even for attributes not listed here.
"""

from __future__ import annotations

from typing import Any

from cvcsync.http_api.scim.filters import CORE_USER, ENTERPRISE_USER

SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
MAX_RESULTS = 200  # a page holds at most this many resources (count is cut to it)
GROUPS_WHY = (
    "Groups are not served: CVC has no group objects (a user's enterprise and department are attributes of the "
    "user), so group provisioning has nothing to write. Turn group provisioning off in the IdP and map the "
    "department to urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department (docs/scim.md)."
)

_TYPE_VALUES = {
    "emails": ("work", "home", "other"),
    "phoneNumbers": ("work", "home", "mobile", "fax", "pager", "other"),
    "photos": ("photo", "thumbnail"),
    "addresses": ("work", "home", "other"),
}


def _attr(
    name: str,
    kind: str = "string",
    *,
    multi: bool = False,
    required: bool = False,
    exact: bool = False,
    mutability: str = "readWrite",
    returned: str = "default",
    unique: str = "none",
    subs: tuple[dict[str, Any], ...] = (),
    description: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description or name,
        "required": required,
        "mutability": mutability,
        "returned": returned,
    }
    if kind in ("string", "reference"):
        out.update(caseExact=exact, uniqueness=unique)
    if kind == "reference":
        out["referenceTypes"] = ["external"]
    if subs:
        out["subAttributes"] = list(subs)
    return out


def _multi(name: str, value_kind: str = "string", description: str = "") -> dict[str, Any]:
    """A multi-valued complex attribute of ``value``, ``type``, ``primary`` and ``display``."""
    kind = _attr("type", description="the kind of value")
    kind["canonicalValues"] = list(_TYPE_VALUES.get(name, ()))
    subs = (
        _attr("value", value_kind, exact=value_kind == "reference", description="the value"),
        kind,
        _attr("primary", "boolean", description="the value to use first"),
        _attr("display", mutability="readOnly", description="a label for the value"),
    )
    return _attr(name, "complex", multi=True, subs=subs, description=description)


_NAME = _attr(
    "name",
    "complex",
    subs=tuple(
        _attr(sub)
        for sub in ("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")
    ),
    description="the person's name; formatted (or given + family) becomes CVC's userName when displayName is empty",
)

USER_ATTRIBUTES: tuple[dict[str, Any], ...] = (
    _attr(
        "userName",
        required=True,
        unique="server",
        description="unique sign-in name (a UPN); CVC's userId by default (CVCSYNC_SCIM_USER_ID)",
    ),
    _NAME,
    _attr("displayName", description="CVC's userName"),
    _attr("nickName"),
    _attr("title"),
    _attr("userType"),
    _attr("preferredLanguage"),
    _attr("locale"),
    _attr("timezone"),
    _attr("active", "boolean", description="false removes the user from CVC; the resource stays readable"),
    _multi("emails", description="the primary (else work) e-mail becomes CVC's userEmail"),
    _multi("phoneNumbers", description="mobile becomes CVC's userMobile, work becomes userTel"),
    _multi("photos", "reference", description="the primary (else first) photo URL becomes CVC's userAvatarUrl"),
)

ENTERPRISE_ATTRIBUTES: tuple[dict[str, Any], ...] = (
    _attr("employeeNumber"),
    _attr("costCenter"),
    _attr("organization"),
    _attr("division"),
    _attr("department", description="CVC's departName"),
    _attr(
        "manager",
        "complex",
        subs=(
            _attr("value", description="the manager's id"),
            _attr("displayName", mutability="readOnly", description="the manager's name"),
        ),
    ),
)


def _meta(base: str, resource_type: str, path: str) -> dict[str, str]:
    return {"resourceType": resource_type, "location": f"{base}/{path}"}


def user_schema(base: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": CORE_USER,
        "name": "User",
        "description": "A CVC user",
        "attributes": list(USER_ATTRIBUTES),
        "meta": _meta(base, "Schema", f"Schemas/{CORE_USER}"),
    }


def enterprise_schema(base: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": ENTERPRISE_USER,
        "name": "EnterpriseUser",
        "description": "Enterprise User",
        "attributes": list(ENTERPRISE_ATTRIBUTES),
        "meta": _meta(base, "Schema", f"Schemas/{ENTERPRISE_USER}"),
    }


def schemas(base: str) -> dict[str, dict[str, Any]]:
    return {CORE_USER: user_schema(base), ENTERPRISE_USER: enterprise_schema(base)}


def user_resource_type(base: str) -> dict[str, Any]:
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A CVC user. The only resource type: " + GROUPS_WHY,
        "schema": CORE_USER,
        "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False}],
        "meta": _meta(base, "ResourceType", "ResourceTypes/User"),
    }


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "Authorization: Bearer <a token of CVCSYNC_SECRET_SCIM_TOKENS>",
                "primary": True,
            }
        ],
        "meta": _meta(base, "ServiceProviderConfig", "ServiceProviderConfig"),
    }


def list_response(resources: list[dict[str, Any]], *, total: int | None = None, start: int = 1) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(resources) if total is None else total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
