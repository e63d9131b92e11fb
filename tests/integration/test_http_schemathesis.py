"""Property-based API test: schemathesis generates requests (valid and invalid) for every operation of the OpenAPI
document the app serves, sends them signed to the real WSGI app on loopback (waitress), and checks every answer
against the document. Zero server errors: a 5xx is allowed only as the documented 502/503 carrying CVC's (or the
store's) side of the failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from cvcsync.http_api.app import HttpApi, openapi_document
from cvcsync.platform import services
from support.http_api import AUTH_ENV, served, signed_session

UPLOADS = "hr-uploads"


@pytest.fixture
def api_url(emulator: Any, moto: Any) -> Iterator[str]:
    services.clear_cache()
    moto.s3_client().create_bucket(Bucket=UPLOADS)
    moto.s3_client().put_object(Bucket=UPLOADS, Key="uploads/full/hr.csv", Body=b"userId,userName,groupId,groupName\n")
    env = {
        **AUTH_ENV,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emulator.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emulator.access_key_secret,
        "CVC_ENDPOINT": emulator.url,
        "CVC_MAX_ATTEMPTS": "1",
        "CVCSYNC_S3_ENDPOINT": moto.url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_HTTP_SYNC_BUCKET": UPLOADS,
        "CVCSYNC_HTTP_MAX_BATCH": "50",
        "CVCSYNC_GROUP_ID": "88",
        "CVCSYNC_GROUP_NAME": "示例科技",
        "CVCSYNC_LOG_LEVEL": "CRITICAL",
    }
    with served(HttpApi(env)) as url:
        yield url
    services.clear_cache()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with signed_session() as signed:
        yield signed


def no_undocumented_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    error = response.json().get("error", {}) if response.headers.get("Content-Type") == "application/json" else {}
    documented = response.status_code in (502, 503) and ("cvc" in error or "store" in error)
    assert documented, f"server error {response.status_code}: {response.text[:500]}"
    return None


def auth_is_enforced(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request that succeeded signed is refused unsigned (on every operation that declares security)."""
    public = case.operation.definition.raw.get("security") == []
    if public or not 200 <= response.status_code < 300:
        return None
    prepared = response.request.copy()
    for name in ("X-Cvcsync-Key-Id", "X-Cvcsync-Timestamp", "X-Cvcsync-Nonce", "X-Cvcsync-Signature"):
        prepared.headers.pop(name, None)
    with requests.Session() as plain:
        plain.trust_env = False
        unsigned = plain.send(prepared, timeout=30)
    assert unsigned.status_code == 401, f"{case.operation.label} answered {unsigned.status_code} without auth"
    return None


CHECKS = [
    no_undocumented_server_error,
    auth_is_enforced,
    unsupported_method,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The document the package ships and the app serves (a lazy schema from a fixture does not work with this pytest).
schema = schemathesis.openapi.from_dict(
    orjson.loads(openapi_document()),
    config=schemathesis.Config.from_dict({"generation": {"mode": "all", "with-security-parameters": False}}),
)


def test_the_served_document_is_the_one_tested(api_url: str) -> None:
    with requests.Session() as plain:
        plain.trust_env = False
        assert plain.get(f"{api_url}/openapi.json", timeout=10).content == openapi_document()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_every_generated_request_as_documented(
    case: Any, api_url: str, session: requests.Session
) -> None:
    response = case.call(base_url=api_url, session=session, timeout=30)
    case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": api_url, "session": session})
