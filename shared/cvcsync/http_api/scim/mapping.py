"""SCIM User <-> CVC user: what an IdP sends, kept as sent, and the CVC record derived from it.

``normalise`` turns a request's resource into the document cvc-sync stores: known attribute names in the schema's
spelling, ``active`` a boolean (Entra ID sends the string ``"False"`` without its ``aadOptscim062020`` flag), nulls
dropped (RFC 7643: null is "unassigned"), the read-only attributes ignored and ``password`` never kept. Everything
else is kept as it came, so what the IdP reads back equals what it wrote.

``to_cvc`` derives the CVC record (the table in docs/scim.md) and validates it with ``records.parse_user``, the
rules every input path shares (``clean_field``): ids NFKC, names tidied, e-mail and phone shapes checked and masked
in messages. Its problems are named by the SCIM attribute they came from.

Written here rather than with scim2-models: importing it (pydantic, email-validator, lark) took 350-580 ms in fresh
processes (median of 7, two series, on the development machine), which the first SCIM request of every cold container
would pay, for validation that would sit beside ``parse_user``, which every path must pass anyway. The checks needed
here are the JSON types of the attributes the schema lists (``_checked``); scim2-models stays a test dependency
(scim2-tester's).

===========================  ===================================================================================
CVC                          SCIM
===========================  ===================================================================================
userId                       ``userName`` (default) or ``externalId`` (``CVCSYNC_SCIM_USER_ID``)
userName                     ``displayName``, else ``name.formatted``, else ``name.givenName`` + ``familyName``
                             (``cell_cleanup.join_name``, ``CVCSYNC_NAME_ORDER``), else the SCIM ``userName``
userEmail                    ``emails``: the primary work one, else work, else primary, else the first
userMobile / userTel         ``phoneNumbers`` of type ``mobile`` / ``work`` (a ``tel:`` prefix dropped)
departName                   enterprise extension ``department``
userAvatarUrl                ``photos``: the primary one, else of type ``photo``, else the first
groupId / groupName          ``CVCSYNC_GROUP_ID`` / ``CVCSYNC_GROUP_NAME``
===========================  ===================================================================================
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from cvcsync.errors import ConfigurationError
from cvcsync.http_api.scim.errors import INVALID_VALUE, ScimError
from cvcsync.http_api.scim.filters import CORE_USER, ENTERPRISE_USER
from cvcsync.http_api.scim.schemas import ENTERPRISE_ATTRIBUTES, USER_ATTRIBUTES
from cvcsync.http_api.scim.settings import EXTERNAL_ID, ScimSettings
from cvcsync.inputs.cell_cleanup import join_name
from cvcsync.inputs.records import RecordError, User, parse_user

# Never stored nor returned: RFC 7643 ``password`` is writeOnly/returned never, and cvc-sync has no use for it.
NEVER_KEPT = frozenset({"password"})
# Read-only attributes a client may send back (Okta's PUT echoes ``groups`` and ``meta``): RFC 7644 3.5.1 says ignore.
READ_ONLY = frozenset({"id", "meta", "groups", "schemas"})
_COMMON = {"externalId": {"name": "externalId", "type": "string", "multiValued": False}}
_CORE = {a["name"].lower(): a for a in (*USER_ATTRIBUTES, *_COMMON.values())}
_ENTERPRISE = {a["name"].lower(): a for a in ENTERPRISE_ATTRIBUTES}
_JSON_TYPES = {"string": (str,), "boolean": (bool,), "complex": (dict,), "reference": (str,), "integer": (int,)}
# Which SCIM attribute a CVC field's problem is about, for the detail an IdP shows.
_SOURCE = {
    "userName": "displayName (or name.formatted, name.givenName + name.familyName)",
    "userEmail": 'emails[type eq "work"].value',
    "userMobile": 'phoneNumbers[type eq "mobile"].value',
    "userTel": 'phoneNumbers[type eq "work"].value',
    "departName": f"{ENTERPRISE_USER}:department",
    "userAvatarUrl": "photos.value",
}


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ScimError(400, f"{name} must be true or false", scim_type=INVALID_VALUE)


def _checked(definition: Mapping[str, Any], value: Any, where: str) -> Any:
    """``value`` of a known attribute, its JSON type checked (sub-attribute names in the schema's spelling)."""
    name = f"{where}{definition['name']}"
    if definition["type"] == "boolean":
        return _bool(value, name)
    if definition.get("multiValued"):
        if not isinstance(value, list):
            raise ScimError(400, f"{name} must be a list", scim_type=INVALID_VALUE)
        single = {**definition, "multiValued": False}
        return [_checked(single, item, where) for item in value if item is not None]
    if not isinstance(value, _JSON_TYPES.get(definition["type"], (object,))):
        raise ScimError(400, f"{name} must be of type {definition['type']}", scim_type=INVALID_VALUE)
    if isinstance(value, dict):  # a complex attribute
        subs = {s["name"].lower(): s for s in definition.get("subAttributes", ())}
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = subs.get(str(key).lower())
            if item is None:
                continue
            out[sub["name"] if sub else key] = _checked(sub, item, f"{name}.") if sub else item
        return out
    return value


def _kept(definitions: Mapping[str, Mapping[str, Any]], body: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        lowered = str(key).lower()
        if value is None or lowered in NEVER_KEPT or (not where and lowered in READ_ONLY):
            continue
        definition = definitions.get(lowered)
        if definition is None:
            out[key] = value
        elif definition.get("mutability") != "readOnly":
            out[definition["name"]] = _checked(definition, value, where)
    return out


def normalise(body: Any) -> dict[str, Any]:
    """The resource cvc-sync stores for a request's body (a JSON object)."""
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object: a User resource", scim_type="invalidSyntax")
    schemas = body.get("schemas")
    if schemas is not None and (
        not isinstance(schemas, list) or CORE_USER.lower() not in [str(s).lower() for s in schemas]
    ):
        raise ScimError(400, f"schemas must list {CORE_USER}", scim_type="invalidSyntax")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if str(key).lower() == ENTERPRISE_USER.lower():
            if value is not None and not isinstance(value, dict):
                raise ScimError(400, f"{ENTERPRISE_USER} must be an object", scim_type=INVALID_VALUE)
            if value:
                out[ENTERPRISE_USER] = _kept(_ENTERPRISE, value, f"{ENTERPRISE_USER}:")
        elif str(key).lower().startswith(CORE_USER.lower() + ":"):  # a core attribute written with its URN
            out.update(_kept(_CORE, {str(key)[len(CORE_USER) + 1 :]: value}, ""))
        else:
            out.update(_kept(_CORE, {key: value}, ""))
    if not isinstance(out.get("userName"), str) or not out["userName"].strip():
        raise ScimError(400, "userName is required: a non-empty string", scim_type=INVALID_VALUE)
    return out


def is_active(resource: Mapping[str, Any]) -> bool:
    """Absent ``active`` is active (RFC 7643 leaves it to the provider; IdPs send it when it is false)."""
    return resource.get("active", True) is not False


def index_key(attribute: str, value: str) -> str:
    """How a unique attribute's value is compared: ``userName`` ignoring case (RFC 7643 caseExact false, after NFKC
    as ``clean_field`` does for ids), ``externalId`` exactly."""
    text = unicodedata.normalize("NFKC", value.strip())
    return text if attribute == EXTERNAL_ID else text.casefold()


def _values(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and i.get("value") not in (None, "")]


def _of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for i in items if str(i.get("type", "")).lower() == kind]


def _first(items: list[dict[str, Any]]) -> Any:
    """The primary item's value, else the first's; None for none."""
    primaries = [i for i in items if i.get("primary") is True]
    return (primaries or items)[0]["value"] if items else None


def _phone(items: Any, kind: str) -> Any:
    value = _first(_of_type(_values(items), kind))
    return value[4:] if isinstance(value, str) and value.lower().startswith("tel:") else value


def user_id_of(resource: Mapping[str, Any], settings: ScimSettings) -> str:
    value = resource.get(settings.user_id_source)
    if not isinstance(value, str) or not value.strip():
        raise ScimError(
            400,
            f"{settings.user_id_source} is required: it is CVC's userId here (CVCSYNC_SCIM_USER_ID)",
            scim_type=INVALID_VALUE,
        )
    return value


def cvc_record(resource: Mapping[str, Any], settings: ScimSettings) -> dict[str, Any]:
    """The CVC record (CreateUser's camelCase fields) before validation."""
    name: dict[str, Any] = resource["name"] if isinstance(resource.get("name"), dict) else {}
    given, family = name.get("givenName"), name.get("familyName")
    joined = join_name(given, family, settings.name_order) if isinstance(given, str) and isinstance(family, str) else ""
    display = next(
        (v for v in (resource.get("displayName"), name.get("formatted"), joined or given or family) if v),
        resource.get("userName"),
    )
    extension = resource.get(ENTERPRISE_USER)
    enterprise: dict[str, Any] = extension if isinstance(extension, dict) else {}
    emails, photos = _values(resource.get("emails")), _values(resource.get("photos"))
    primary_photos = [p for p in photos if p.get("primary") is True]
    return {
        "userId": user_id_of(resource, settings),
        "userName": display,
        "userEmail": _first(_of_type(emails, "work")) or _first(emails),
        "userMobile": _phone(resource.get("phoneNumbers"), "mobile"),
        "userTel": _phone(resource.get("phoneNumbers"), "work"),
        "departName": enterprise.get("department"),
        "userAvatarUrl": _first(primary_photos or _of_type(photos, "photo") or photos),
    }


def to_cvc(resource: Mapping[str, Any], settings: ScimSettings, defaults: Mapping[str, str]) -> User:
    """The validated CVC user, or 400 ``invalidValue`` naming each SCIM attribute at fault and why."""
    if not defaults.get("groupId") or not defaults.get("groupName"):
        raise ConfigurationError(
            "SCIM writes need CVCSYNC_GROUP_ID and CVCSYNC_GROUP_NAME: a SCIM user carries no CVC enterprise group",
            code="ScimGroupNotConfigured",
        )
    record = cvc_record(resource, settings)
    try:
        return parse_user(record, defaults=defaults, position="SCIM User")
    except RecordError as error:
        reasons = []
        for problem in error.problems:
            source = settings.user_id_source if problem.field == "userId" else _SOURCE.get(problem.field)
            reasons.append(f"{source or problem.field} (CVC's {problem.field}) {problem.reason}")
        raise ScimError(400, "; ".join(reasons), scim_type=INVALID_VALUE) from None


def resource_schemas(resource: Mapping[str, Any]) -> list[str]:
    """The ``schemas`` a rendered resource lists: the core schema and each extension it holds."""
    return [CORE_USER] + [key for key in resource if isinstance(key, str) and key.lower().startswith("urn:")]
