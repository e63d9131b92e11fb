"""Calling ``/scim/v2`` in tests: in process through the HTTP function's WSGI app, with a bearer token.

``SCIM_ENV`` is what the SCIM endpoint needs beside ``function_env`` (the emulator and moto): a token, the state
bucket its documents live in, the group every SCIM user joins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from cvcsync.http_api.adapters import run_wsgi, wsgi_environ
from cvcsync.http_api.app import HttpApi
from support.http_api import Answer

SCIM_TOKEN = "scim-tests-token-0123456789abcdef"
STATE_BUCKET = "cvc-sync-scim-state"
GROUP = {"CVCSYNC_GROUP_ID": "88", "CVCSYNC_GROUP_NAME": "示例科技"}
SCIM_ENV = {
    "CVCSYNC_SCIM_TOKENS": SCIM_TOKEN,
    "CVCSYNC_STATE_BUCKET": STATE_BUCKET,
    "CVC_MAX_ATTEMPTS": "1",
    "CVCSYNC_LOG_LEVEL": "WARNING",
    **GROUP,
}
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim(
    api: HttpApi,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: str = "",
    token: str | None = SCIM_TOKEN,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/scim+json",
) -> Answer:
    """One request to ``/scim/v2<path>`` through the WSGI app in process."""
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Host": "cvcsync.test", **(headers or {})}
    if body is not None:
        all_headers["Content-Type"] = content_type
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    environ = wsgi_environ(
        method=method, path="/scim/v2" + path, query_string=query, headers=all_headers.items(), body=raw
    )
    answer = run_wsgi(api, environ)
    return Answer(answer.status, dict(answer.headers), answer.body)


def user(user_name: str, *, display: str = "", active: bool = True, **more: Any) -> dict[str, Any]:
    """A User resource as an IdP sends it on create."""
    resource: dict[str, Any] = {"schemas": [CORE], "userName": user_name, "active": active}
    if display:
        resource["displayName"] = display
    resource.update(more)
    return resource


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}
