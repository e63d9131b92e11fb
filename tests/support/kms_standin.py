"""A local stand-in for Alibaba Cloud KMS secrets manager's ``GetSecretValue`` (API 2016-01-20) that VERIFIES the
RPC signature, for the integration tests of ``cvcsync.adapters.secret_stores``.

KMS's RPC API is signed exactly like CVC's, so the emulator's gateway checks it: ``read_request`` (method, path,
query and form body) and ``authenticate`` (parameters present, access key, STS token matching the key, timestamp
window, signature over every parameter that arrived, nonce, RAM permission). ``authenticate`` knows only CVC's API
version, so the stand-in checks KMS's version and action itself first and hands the gateway the parameters with the
version it knows; the signature is still verified over the parameters as they arrived (``pairs``, with KMS's
version in them), so a client that signed anything else is refused.

Each verified call is journaled (key id, token, secret name) for the tests to assert on; a test key's token is
test data, never a real one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from cvcsync.config import API_VERSION as CVC_API_VERSION
from cvcsync_dev.emulator import codes
from cvcsync_dev.emulator.codes import GatewayError
from cvcsync_dev.emulator.gateway import answer, authenticate, read_request
from cvcsync_dev.emulator.keys import AccessKey
from cvcsync_dev.emulator.nonces import NonceCache
from cvcsync_dev.wsgi_server import WsgiServer

KMS_API_VERSION = "2016-01-20"
ACTIONS = frozenset({"GetSecretValue"})


@dataclass(frozen=True)
class KmsCall:
    access_key_id: str
    security_token: str | None = field(repr=False)
    secret_name: str


class KmsStandIn:
    """WSGI app: ``secrets`` (name -> text value) answered to keys in ``keys``; ``denied_secrets`` answer 403."""

    def __init__(
        self,
        keys: Iterable[AccessKey],
        secrets: Mapping[str, str] | None = None,
        *,
        denied_secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = {key.id: key for key in keys}
        self.secrets = dict(secrets or {})
        self.denied_secrets = set(denied_secrets)
        self.nonces = NonceCache()
        self.calls: list[KmsCall] = []
        self._lock = threading.Lock()
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        response = answer(lambda: self._handle(environ))
        headers = [("Content-Type", "application/json;charset=utf-8"), ("Content-Length", str(len(response.body)))]
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", [*headers, *response.headers])
        return [response.body]

    def _handle(self, environ: dict[str, Any]) -> dict[str, Any]:
        method, pairs = read_request(environ, environ.get("PATH_INFO") or "/")
        params = dict(pairs)
        if params.get("Version") != KMS_API_VERSION or params.get("Action") not in ACTIONS:
            raise codes.api_not_found()
        authenticate(
            method,
            pairs,  # the signature is checked over these, exactly as sent
            {**params, "Version": CVC_API_VERSION},  # KMS's version was checked above
            actions=ACTIONS,
            keys=self.keys,
            nonces=self.nonces,
            clock=self._clock,
        )
        name = params.get("SecretName", "")
        with self._lock:
            self.calls.append(KmsCall(params["AccessKeyId"], params.get("SecurityToken"), name))
        if not name:
            raise codes.missing_parameter("SecretName")
        if name in self.denied_secrets:
            raise GatewayError(403, "Forbidden.NoPermission", "This operation is forbidden by permission system.")
        if name not in self.secrets:
            raise GatewayError(404, "Forbidden.ResourceNotFound", "The resource cannot be found.")
        return {
            "SecretName": name,
            "VersionId": "v1",
            "CreateTime": "2030-01-01T00:00:00Z",
            "SecretType": "Generic",
            "SecretDataType": "text",
            "SecretData": self.secrets[name],
            "VersionStages": {"VersionStage": ["ACSCurrent"]},
            "ExtendedConfig": "",
        }


@contextmanager
def served(app: KmsStandIn) -> Iterator[str]:
    """The stand-in on a free loopback port, for the ``with`` block; yields its URL."""
    server = WsgiServer(app, host="127.0.0.1", port=0, threads=2, ident=f"kms-standin-{uuid.uuid4().hex[:6]}")
    with server:
        yield server.url
