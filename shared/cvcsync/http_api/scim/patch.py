"""PATCH (RFC 7644 section 3.5.2) on a stored User resource: ``add``, ``replace`` and ``remove``, all or nothing.

The operations are applied in order to a copy; the first that cannot be applied fails the request and nothing is
kept. What the IdPs send beyond the RFC's own examples (each a test in ``tests/unit/test_scim_patch.py``):

- ``op`` in any case: Entra ID sends ``Add``, ``Replace`` and ``Remove``;
- a path-less ``add``/``replace`` whose value object's keys are attribute paths, not only names: Entra ID's
  ``{"op": "replace", "value": {"name.givenName": "…", "urn:…:enterprise:2.0:User:employeeNumber": "…"}}``, and
  Okta's ``{"op": "replace", "value": {"active": false}}``;
- ``active`` as the string ``"False"`` (Entra ID without ``aadOptscim062020``): ``mapping.normalise`` reads it;
- ``add`` or ``replace`` of ``emails[type eq "work"].value`` when the user has no work e-mail yet: a value of that
  type is created (Entra ID uses either op for the same change), where the RFC would answer ``noTarget`` to a
  ``replace``.
"""

from __future__ import annotations

import copy
from typing import Any

from cvcsync.http_api.scim.errors import INVALID_PATH, INVALID_SYNTAX, INVALID_VALUE, MUTABILITY, NO_TARGET, ScimError
from cvcsync.http_api.scim.filters import (
    Compare,
    Filter,
    Logical,
    PatchPath,
    container,
    find_key,
    matches,
    parse_path,
    split_attr,
)
from cvcsync.http_api.scim.mapping import READ_ONLY
from cvcsync.http_api.scim.schemas import ENTERPRISE_ATTRIBUTES, PATCH_OP, USER_ATTRIBUTES

OPS = ("add", "replace", "remove")
_MULTI = frozenset(a["name"].lower() for a in (*USER_ATTRIBUTES, *ENTERPRISE_ATTRIBUTES) if a["multiValued"])


def operations_of(body: Any) -> list[dict[str, Any]]:
    """The ``Operations`` of a PatchOp request, shape-checked (400 ``invalidSyntax`` naming what is wrong)."""
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a PatchOp JSON object", scim_type=INVALID_SYNTAX)
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_OP not in schemas):
        raise ScimError(400, f"schemas must be [{PATCH_OP!r}]", scim_type=INVALID_SYNTAX)
    key = find_key(body, "Operations")
    operations = body.get(key) if key is not None else None
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "Operations must be a non-empty list", scim_type=INVALID_SYNTAX)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise ScimError(400, f"Operations[{index}] must be an object", scim_type=INVALID_SYNTAX)
        op = operation.get(find_key(operation, "op") or "op")
        if not isinstance(op, str) or op.lower() not in OPS:
            raise ScimError(400, f"Operations[{index}].op must be add, replace or remove", scim_type=INVALID_SYNTAX)
    return operations


def apply_patch(resource: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A new resource: ``resource`` with ``operations`` applied (``resource`` is left as it was)."""
    result = copy.deepcopy(resource)
    for index, operation in enumerate(operations):
        op = str(operation[find_key(operation, "op") or "op"]).lower()
        path_key = find_key(operation, "path")
        value_key = find_key(operation, "value")
        path = operation.get(path_key) if path_key is not None else None
        value = operation.get(value_key) if value_key is not None else None
        where = f"Operations[{index}]"
        if path is None or path == "":
            if op == "remove":
                raise ScimError(400, f"{where}: remove needs a path", scim_type=NO_TARGET)
            if not isinstance(value, dict):
                raise ScimError(400, f"{where}: without a path, value must be an object", scim_type=INVALID_VALUE)
            for key, item in value.items():
                _apply(result, op, _path_of(str(key), where), item, where)
        elif not isinstance(path, str):
            raise ScimError(400, f"{where}.path must be a string", scim_type=INVALID_PATH)
        else:
            _apply(result, op, parse_path(path), value, where)
    return result


def _path_of(key: str, where: str) -> PatchPath:
    attr = split_attr(key)
    if attr is None:
        raise ScimError(400, f"{where}: {key!r} is not an attribute name", scim_type=INVALID_PATH)
    return PatchPath(attr)


def _apply(resource: dict[str, Any], op: str, path: PatchPath, value: Any, where: str) -> None:
    attr = path.attr
    if attr.schema is None and attr.name.lower() in READ_ONLY:
        raise ScimError(400, f"{where}: {attr.name} is read-only", scim_type=MUTABILITY)
    if op != "remove" and value is None:
        raise ScimError(400, f"{where}: {op} needs a value", scim_type=INVALID_VALUE)
    holder = container(resource, attr.schema)
    if holder is None:
        if op == "remove":
            return  # removing what is not there: nothing to do (RFC 7644 3.5.2.2 leaves it unassigned)
        holder = resource.setdefault(attr.schema or "", {})
    key = find_key(holder, attr.name) or attr.name
    if path.expr is not None:
        _apply_filtered(holder, key, op, path, value, where)
    elif attr.sub is not None:
        parent = holder.get(key)
        if op == "remove":
            if isinstance(parent, dict):
                parent.pop(find_key(parent, attr.sub) or attr.sub, None)
            return
        if parent is None:
            parent = holder[key] = {}
        if not isinstance(parent, dict):
            raise ScimError(400, f"{where}: {attr.name} has no sub-attributes", scim_type=INVALID_PATH)
        parent[find_key(parent, attr.sub) or attr.sub] = value
    elif op == "remove":
        holder.pop(key, None)
    elif op == "add" and _multi(key, holder.get(key), value):
        items = value if isinstance(value, list) else [value]
        existing = holder.get(key)
        current: list[Any] = existing if isinstance(existing, list) else []
        holder[key] = current + [item for item in items if item not in current]
    elif isinstance(holder.get(key), dict) and isinstance(value, dict):
        holder[key].update(value)  # a complex attribute: the sub-attributes given replace theirs, others stay
    else:
        holder[key] = value
    if attr.schema is not None and not holder:
        resource.pop(find_key(resource, attr.schema) or attr.schema, None)


def _multi(key: str, current: Any, value: Any) -> bool:
    return key.lower() in _MULTI or isinstance(current, list) or isinstance(value, list)


def _apply_filtered(holder: dict[str, Any], key: str, op: str, path: PatchPath, value: Any, where: str) -> None:
    """``attr[filter]`` or ``attr[filter].sub``: the values of a multi-valued attribute that match."""
    assert path.expr is not None
    items = holder.get(key)
    if items is not None and not isinstance(items, list):
        raise ScimError(400, f"{where}: {path.attr.name} is not multi-valued", scim_type=INVALID_PATH)
    items = items or []
    chosen = [item for item in items if isinstance(item, dict) and matches(item, path.expr)]
    if op == "remove":
        if path.sub is None:
            holder[key] = [item for item in items if item not in chosen]
        else:
            for item in chosen:
                item.pop(find_key(item, path.sub) or path.sub, None)
        if not holder[key]:
            holder.pop(key)
        return
    if not chosen:
        template = _template(path.expr)
        if template is None:
            raise ScimError(400, f"{where}: no value of {path.attr.name} matches the filter", scim_type=NO_TARGET)
        holder[key] = [*items, template]
        chosen = [template]
    for item in chosen:
        if path.sub is not None:
            item[find_key(item, path.sub) or path.sub] = value
        elif isinstance(value, dict):
            item.update(value)
        else:
            raise ScimError(
                400, f"{where}: the value of {path.attr.name}[…] must be an object", scim_type=INVALID_VALUE
            )


def _template(expr: Filter) -> dict[str, Any] | None:
    """The value a filter of ``eq`` terms describes (``type eq "work"`` -> ``{"type": "work"}``), to create one."""
    if isinstance(expr, Compare) and expr.op == "eq" and expr.path.sub is None and expr.path.schema is None:
        return {expr.path.name: expr.value}
    if isinstance(expr, Logical) and expr.op == "and":
        left, right = _template(expr.left), _template(expr.right)
        return {**left, **right} if left is not None and right is not None else None
    return None
