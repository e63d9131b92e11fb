"""The ``/scim/v2`` part of the HTTP function without CVC or a store: routing in SCIM's shapes, discovery, the
token, request checks, failures as SCIM errors, and the cold start of every other route left as it was."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cvcsync.http_api.app import HttpApi
from support.scim_api import SCIM_TOKEN, scim

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture
def api() -> HttpApi:
    return HttpApi({"CVCSYNC_SCIM_TOKENS": SCIM_TOKEN})


def test_a_request_to_another_route_imports_nothing_of_scim() -> None:
    script = textwrap.dedent(
        """
        import sys
        from cvcsync.http_api.adapters import run_wsgi, wsgi_environ
        from cvcsync.http_api.app import HttpApi
        api = HttpApi({})
        before = set(sys.modules)
        run_wsgi(api, wsgi_environ(method="GET", path="/healthz", query_string="", headers=[], body=b""))
        run_wsgi(api, wsgi_environ(method="GET", path="/users/x", query_string="", headers=[], body=b""))
        print(sorted(m for m in set(sys.modules) - before if "scim" in m))
        run_wsgi(api, wsgi_environ(method="GET", path="/scim/v2/Schemas", query_string="", headers=[], body=b""))
        print("cvcsync.http_api.scim.app" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_discovery_says_what_cvc_can_hold(api: HttpApi) -> None:
    config = scim(api, "GET", "/ServiceProviderConfig", token=None)
    assert config.status == 200 and config.headers["Content-Type"] == "application/scim+json"
    body = config.json()
    assert body["patch"]["supported"] and body["etag"]["supported"] and not body["bulk"]["supported"]
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["meta"]["location"] == "https://cvcsync.test/scim/v2/ServiceProviderConfig"
    types = scim(api, "GET", "/ResourceTypes").json()
    assert types["totalResults"] == 1 and "CVC has no group objects" in types["Resources"][0]["description"]
    schemas = scim(api, "GET", "/Schemas").json()
    assert [s["id"] for s in schemas["Resources"]] == [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ]
    user = scim(api, "GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    user_name = next(a for a in user["attributes"] if a["name"] == "userName")
    assert user_name["uniqueness"] == "server" and user_name["required"] and not user_name["caseExact"]
    assert scim(api, "GET", "/Schemas/urn:nope").status == 404


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("POST", "/ServiceProviderConfig", 405, "GET"),
        ("DELETE", "/Users", 405, "GET, POST"),
        ("GET", "/Users/.search", 405, "POST"),
        ("GET", "/", 404, None),
        ("GET", "/Nothing", 404, None),
        ("GET", "/Groups/abc", 404, None),
        ("POST", "/.search", 501, None),
    ],
)
def test_routing_answers_in_scim_shapes(api: HttpApi, method: str, path: str, status: int, allow: str | None) -> None:
    answer = scim(api, method, path, {} if method == "POST" else None)
    assert answer.status == status and answer.json()["schemas"] == [ERROR] and answer.json()["status"] == str(status)
    assert answer.headers.get("Allow") == allow


def test_request_checks(api: HttpApi) -> None:
    big = scim(HttpApi({"CVCSYNC_SCIM_TOKENS": SCIM_TOKEN, "CVCSYNC_HTTP_MAX_BODY": "64"}), "POST", "/Users", b"x" * 65)
    assert big.status == 413 and big.json()["schemas"] == [ERROR]
    with_bucket = HttpApi({"CVCSYNC_SCIM_TOKENS": SCIM_TOKEN, "CVCSYNC_STATE_BUCKET": "b"})
    text = scim(with_bucket, "POST", "/Users", b"{}", content_type="text/plain")
    assert text.status == 415
    broken = scim(with_bucket, "POST", "/Users", b"{not json")
    assert broken.status == 400 and broken.json()["scimType"] == "invalidSyntax"
    no_bucket = scim(api, "POST", "/Users", {"userName": "u"})
    assert no_bucket.status == 503 and "CVCSYNC_STATE_BUCKET" in no_bucket.json()["detail"]


def test_tokens(api: HttpApi) -> None:
    assert scim(api, "GET", "/Users", token=None).status == 401
    wrong = scim(api, "GET", "/Users", token="x" * 32)
    assert wrong.status == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
    assert scim(HttpApi({}), "GET", "/Users").status == 503
    ambiguous = HttpApi({"CVCSYNC_SCIM_TOKENS": SCIM_TOKEN, "CVCSYNC_SECRET_SCIM_TOKENS": "env:OTHER"})
    failed = scim(ambiguous, "GET", "/Users")
    assert failed.status == 500 and failed.json()["schemas"] == [ERROR]
    assert "misconfigured" in failed.json()["detail"] and SCIM_TOKEN not in failed.body.decode()
    short = scim(HttpApi({"CVCSYNC_SCIM_TOKENS": "short"}), "GET", "/Users")
    assert short.status == 500


def test_the_token_may_come_from_a_secret_reference() -> None:
    api = HttpApi({"CVCSYNC_SECRET_SCIM_TOKENS": "env:IDP_TOKENS", "IDP_TOKENS": f"old-token-0123456789,{SCIM_TOKEN}"})
    past = scim(api, "GET", "/Users")
    assert past.status == 503 and "CVCSYNC_STATE_BUCKET" in past.json()["detail"]  # authenticated: next check
    assert scim(api, "GET", "/Users", token="old-token-0123456789").status == 503  # rotation: both work
    assert scim(api, "GET", "/Users", token="x" * 20).status == 401
