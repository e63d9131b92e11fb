"""The SCIM routes: discovery, Users (read, list and search here; writes in ``writes.py``) and the refusals.

Reads come from the stored documents, never from CVC: an IdP reads back what it wrote, ``active: false`` users
included. ``GET /Users?filter=userName eq "…"`` (Entra ID's and Okta's probe before a create), ``externalId eq``
and ``id eq`` are one index read whatever the directory's size; other filters read every document and are refused
with ``tooMany`` beyond ``MAX_SCAN`` users. A listing without a filter pages through the stored ids in one stable
order (``startIndex``/``count``, Okta's import), one document read per resource on the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cvcsync.http_api.scim import writes
from cvcsync.http_api.scim.errors import INVALID_VALUE, TOO_MANY, ScimError, bad_request, not_found
from cvcsync.http_api.scim.filters import (
    Filter,
    container,
    equality_terms,
    find_key,
    matches,
    parse_filter,
    split_attr,
)
from cvcsync.http_api.scim.mapping import resource_schemas
from cvcsync.http_api.scim.schemas import (
    GROUPS_WHY,
    MAX_RESULTS,
    SEARCH_REQUEST,
    list_response,
    schemas,
    service_provider_config,
    user_resource_type,
)
from cvcsync.http_api.scim.store import Document

MAX_SCAN = 2000  # users a filter that no index answers may read; beyond it: 400 tooMany
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ALWAYS = ("schemas", "id")


@dataclass
class ScimRequest:
    method: str
    route: list[str]  # the path after /scim/v2, split at "/"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base: str  # the absolute URL of /scim/v2, for meta.location and Location
    caller: str = "-"
    json: Any = field(default=None, repr=False)


@dataclass
class ScimResponse:
    status: int
    body: dict[str, Any] | None
    headers: list[tuple[str, str]] = field(default_factory=list)


# -- rendering -----------------------------------------------------------------------------------------------


def etag(doc: Document) -> str:
    return f'W/"{doc.version}"'


def render(doc: Document, base: str) -> dict[str, Any]:
    """The User resource as the IdP reads it: what it wrote, with ``id``, ``schemas`` and ``meta``."""
    resource = doc.resource
    out: dict[str, Any] = {"schemas": resource_schemas(resource), "id": doc.id}
    out.update(resource)
    out["meta"] = {
        "resourceType": "User",
        "created": doc.created,
        "lastModified": doc.last_modified,
        "location": f"{base}/Users/{doc.id}",
        "version": etag(doc),
    }
    return out


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def project(resource: dict[str, Any], attributes: list[str], excluded: list[str]) -> dict[str, Any]:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 3.9): ``id`` and ``schemas`` are always returned."""
    if attributes:
        out = {key: resource[key] for key in _ALWAYS if key in resource}
        for name in attributes:
            _copy(resource, out, name)
        return out
    out = dict(resource)
    for name in excluded:
        path = split_attr(name)
        if path is None or (path.schema is None and path.name.lower() in _ALWAYS):
            continue
        holder = container(out, path.schema)
        key = find_key(holder, path.name) if holder is not None else None
        if holder is None or key is None:
            continue
        if path.sub is None:
            holder.pop(key)
        elif isinstance(holder[key], dict):
            holder[key] = {k: v for k, v in holder[key].items() if k.lower() != path.sub.lower()}
    return out


def _copy(source: dict[str, Any], target: dict[str, Any], name: str) -> None:
    path = split_attr(name)
    if path is None:
        return
    holder = container(source, path.schema)
    key = find_key(holder, path.name) if holder is not None else None
    if holder is None or key is None:
        return
    into = target
    if path.schema is not None:
        schema_key = find_key(source, path.schema) or path.schema
        into = target.setdefault(schema_key, {})
    value = holder[key]
    if path.sub is None or not isinstance(value, (dict, list)):
        into[key] = value
    elif isinstance(value, dict):
        into.setdefault(key, {}).update({k: v for k, v in value.items() if k.lower() == path.sub.lower()})
    else:
        into[key] = [{k: v for k, v in item.items() if k.lower() == path.sub.lower()} for item in value]


def _answer(rq: ScimRequest, doc: Document, status: int = 200) -> ScimResponse:
    resource = project(
        render(doc, rq.base), _names(rq.query.get("attributes")), _names(rq.query.get("excludedAttributes"))
    )
    headers = [("ETag", etag(doc))]
    if status == 201:
        headers.append(("Location", f"{rq.base}/Users/{doc.id}"))
    return ScimResponse(status, resource, headers)


# -- discovery -----------------------------------------------------------------------------------------------


def discovery(rq: ScimRequest) -> ScimResponse:
    head, rest = rq.route[0], rq.route[1:]
    if head == "ServiceProviderConfig" and not rest:
        return ScimResponse(200, service_provider_config(rq.base))
    if head == "ResourceTypes":
        found = {"User": user_resource_type(rq.base)}
        if not rest:
            return ScimResponse(200, list_response(list(found.values())))
        if rest[0] in found and len(rest) == 1:
            return ScimResponse(200, found[rest[0]])
        if rest[0] == "Group":
            raise not_found(GROUPS_WHY)
        raise not_found(f"no resource type {rest[0]!r}: the one resource type is User")
    every = schemas(rq.base)
    if not rest:
        return ScimResponse(200, list_response(list(every.values())))
    wanted = "/".join(rest)
    match = next((doc for urn, doc in every.items() if urn.lower() == wanted.lower()), None)
    if match is None:
        raise not_found(f"no schema {wanted!r}: the schemas are {', '.join(every)}")
    return ScimResponse(200, match)


def refused(rq: ScimRequest) -> ScimResponse:
    """What this endpoint does not serve, and why (Groups, Bulk, server-root search, /Me)."""
    head = rq.route[0]
    if head == "Groups":
        raise not_found(GROUPS_WHY)
    if head == "Bulk":
        raise ScimError(501, "bulk operations are not supported (ServiceProviderConfig bulk.supported is false)")
    if head == ".search":
        raise ScimError(501, "search one resource type at a time: POST /Users/.search (the only one is User)")
    if head == "Me":
        raise ScimError(501, "/Me is not supported: a bearer token names an IdP, not a user")
    where = "this is the SCIM base URL" if head == "(root)" else f"no SCIM endpoint /{'/'.join(rq.route)}"
    raise not_found(f"{where}: the endpoints are Users, ResourceTypes, Schemas, ServiceProviderConfig")


# -- reads ---------------------------------------------------------------------------------------------------


def _integer(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be a whole number", INVALID_VALUE) from None


def _candidates(ctx: writes.WriteContext, expr: Filter | None) -> tuple[list[str], list[Document] | None]:
    """The ids to page through (no filter), or the documents a filter may match (an index read, or a scan)."""
    store = ctx.store
    if expr is None:
        return list(store.ids()), None
    for term in equality_terms(expr):
        name = term.path.name.lower()
        if term.path.schema is None and name in ("username", "externalid"):
            found = store.find("userName" if name == "username" else "externalId", term.value)
            return [], [found] if found is not None else []
        if term.path.schema is None and name == "id":
            doc = store.get(term.value) if _ID.fullmatch(term.value) else None
            return [], [doc] if doc is not None else []
    ids = list(store.ids())
    if len(ids) > MAX_SCAN:
        raise ScimError(
            400,
            f"this filter reads every user and there are more than {MAX_SCAN}: filter on userName, externalId "
            "or id with eq (indexed), alone or joined by and",
            scim_type=TOO_MANY,
        )
    docs = [doc for doc in (store.get(i) for i in ids) if doc is not None]
    return [], docs


def query(rq: ScimRequest, ctx: writes.WriteContext, params: dict[str, Any]) -> ScimResponse:
    """A listing, filtered or not, one page of it (RFC 7644 3.4.2)."""
    text = params.get("filter")
    expr = parse_filter(text) if isinstance(text, str) else None
    start = max(1, _integer(params.get("startIndex"), "startIndex", 1))
    count = min(max(0, _integer(params.get("count"), "count", MAX_RESULTS)), MAX_RESULTS)
    ids, docs = _candidates(ctx, expr)
    attributes = _names(params.get("attributes")) if isinstance(params.get("attributes"), str) else []
    excluded = _names(params.get("excludedAttributes")) if isinstance(params.get("excludedAttributes"), str) else []
    if docs is None:
        page_docs = [doc for doc in (ctx.store.get(i) for i in ids[start - 1 : start - 1 + count]) if doc is not None]
        total = len(ids)
        page = [render(doc, rq.base) for doc in page_docs]
    else:
        assert expr is not None
        hits = [rendered for rendered in (render(doc, rq.base) for doc in docs) if matches(rendered, expr)]
        total = len(hits)
        page = hits[start - 1 : start - 1 + count]
    resources = [project(resource, attributes, excluded) for resource in page]
    return ScimResponse(200, list_response(resources, total=total, start=start))


def search(rq: ScimRequest, ctx: writes.WriteContext) -> ScimResponse:
    """``POST /Users/.search``: the same query, its parameters in a SearchRequest body."""
    body = rq.json
    if not isinstance(body, dict) or SEARCH_REQUEST not in (body.get("schemas") or []):
        raise bad_request(f"send a SearchRequest: schemas [{SEARCH_REQUEST!r}]", "invalidSyntax")
    params: dict[str, Any] = {}
    for name in ("filter", "startIndex", "count"):
        if body.get(name) is not None:
            params[name] = body[name]
    for name in ("attributes", "excludedAttributes"):
        value = body.get(name)
        if isinstance(value, list):
            params[name] = ",".join(str(v) for v in value)
    return query(rq, ctx, params)


def get_user(rq: ScimRequest, ctx: writes.WriteContext, scim_id: str) -> ScimResponse:
    doc = ctx.store.get(scim_id) if _ID.fullmatch(scim_id) else None
    if doc is None:
        raise not_found(f"no User {scim_id!r}")
    if_none = rq.headers.get("if-none-match")
    if if_none is not None and etag(doc).removeprefix("W/") in {
        t.strip().removeprefix("W/") for t in if_none.split(",")
    }:
        return ScimResponse(304, None, [("ETag", etag(doc))])
    return _answer(rq, doc)


# -- dispatch ------------------------------------------------------------------------------------------------


def users(rq: ScimRequest, ctx: writes.WriteContext) -> ScimResponse:
    rest = rq.route[1:]
    if_match = rq.headers.get("if-match")
    if not rest:
        if rq.method == "GET":
            return query(rq, ctx, dict(rq.query))
        return _answer(rq, writes.create(ctx, rq.json), status=201)
    scim_id = rest[0]
    if scim_id == ".search":
        return search(rq, ctx)
    if not _ID.fullmatch(scim_id) or len(rest) > 1:
        raise not_found(f"no User {'/'.join(rest)!r}")
    if rq.method == "GET":
        return get_user(rq, ctx, scim_id)
    if rq.method == "PUT":
        return _answer(rq, writes.replace_user(ctx, scim_id, rq.json, if_match))
    if rq.method == "PATCH":
        return _answer(rq, writes.patch_user(ctx, scim_id, rq.json, if_match))
    writes.delete_user(ctx, scim_id, if_match)
    return ScimResponse(204, None)
