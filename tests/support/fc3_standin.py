"""A local stand-in for Function Compute 3.0's ``InvokeFunction`` (API 2023-03-30) that VERIFIES the ACS3-HMAC-SHA256
signature, for the tests of ``cvcsync.platform.dispatch.FcDispatcher``; and contexts shaped like FC 3.0's Python ones.

The check is independent of ``cvcsync.adapters.acs3_signature``: the signature is recomputed by the official SDK's
signer, ``alibabacloud_openapi_util.client.Client.get_authorization`` (a dev dependency), over the request as it
arrived: method, the raw path, the decoded query, the headers the request says it signed, and the SHA-256 of the
body received. Before that the stand-in checks what a gateway would: the spec's headers (host, content-type, every
``x-acs-*``) are all signed, the body hash header matches the body, the key is known and its STS token is the one
sent, the date is within 15 minutes, a nonce is used once. Refusals answer FC's error codes (``SignatureNotMatch``,
``InvalidAccessKeyID``, ``FunctionNotFound``, ... from FC's error code list) with ``x-fc-request-id``; each is kept
in ``refusals`` with the reason, for tests to assert on. A verified call is kept in ``invocations`` and answered
202 (async) with a request id. ``fail_next`` scripts failures (status, code) for verified calls.

Served by ``http.server`` on a free loopback port: ``self.path`` is the raw request target, as signed.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import orjson
from alibabacloud_openapi_util.client import Client as OfficialSigner

API_VERSION = "2023-03-30"
ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW = 15 * 60  # the spec: x-acs-date within 15 minutes of the server's time
PATH = re.compile(rf"/{API_VERSION}/functions/([^/?]+)/invocations")
AUTHORIZATION = re.compile(rf"{ALGORITHM} Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{{64}})")
REQUIRED = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")


@dataclass(frozen=True)
class StandInKey:
    """An access key the stand-in knows; a temporary (STS) one has its token."""

    id: str
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Fc3Invocation:
    """A call that passed every check, as the stand-in received it."""

    function: str
    qualifier: str | None
    invocation_type: str | None
    body: bytes
    access_key_id: str
    security_token: str | None = field(repr=False)
    signed_headers: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    reason: str
    request_id: str


class Refused(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class Fc3StandIn:
    """``InvokeFunction`` of ``functions`` (names) for ``keys``; ``clock`` is epoch seconds (injectable)."""

    def __init__(
        self, keys: Iterable[StandInKey], functions: Iterable[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = {key.id: key for key in keys}
        self.functions = set(functions)
        self.clock = clock
        self.invocations: list[Fc3Invocation] = []
        self.refusals: list[Refusal] = []
        self.fail_next: list[tuple[int, str]] = []
        self._nonces: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        """(status, request id, JSON body) for one request; ``headers`` by lowercase name."""
        request_id = str(uuid.uuid4())
        try:
            with self._lock:
                invocation = self._verify(method, target, headers, body, request_id)
                if self.fail_next:
                    status, code = self.fail_next.pop(0)
                    raise Refused(status, code, "scripted failure")
                self.invocations.append(invocation)
        except Refused as refused:
            with self._lock:
                self.refusals.append(Refusal(refused.status, refused.code, refused.reason, request_id))
            error = {"Code": refused.code, "Message": refused.reason, "RequestId": request_id}
            return refused.status, request_id, orjson.dumps(error)
        return (202 if invocation.invocation_type == "Async" else 200), request_id, b""

    def _verify(self, method: str, target: str, headers: dict[str, str], body: bytes, request_id: str) -> Fc3Invocation:
        path, _, raw_query = target.partition("?")
        match = PATH.fullmatch(path)
        if method != "POST" or match is None:
            raise Refused(400, "PathNotSupported", f"{method} {path} is not InvokeFunction")
        if "authorization" not in headers:
            raise Refused(400, "MissingRequiredHeader", "required HTTP header Authorization was not specified")
        for name in REQUIRED:
            if name not in headers:
                raise Refused(400, "MissingRequiredHeader", f"required HTTP header {name} was not specified")
        if headers["x-acs-action"] != "InvokeFunction" or headers["x-acs-version"] != API_VERSION:
            raise Refused(400, "InvalidArgument", "x-acs-action/x-acs-version are not InvokeFunction/2023-03-30")
        auth = AUTHORIZATION.fullmatch(headers["authorization"])
        if auth is None:
            raise Refused(403, "SignatureNotMatch", "Authorization is not ACS3-HMAC-SHA256 Credential,SignedHeaders")
        key_id, signed_list, _ = auth.groups()
        signed = tuple(signed_list.split(";"))
        must_sign = {n for n in headers if n in ("host", "content-type") or n.startswith("x-acs-")}
        if missing := sorted(must_sign - set(signed)):
            raise Refused(403, "SignatureNotMatch", f"headers sent but not signed: {', '.join(missing)}")
        if absent := sorted(set(signed) - set(headers)):
            raise Refused(403, "SignatureNotMatch", f"headers signed but not sent: {', '.join(absent)}")
        key = self.keys.get(key_id)
        if key is None:
            raise Refused(403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'")
        token = headers.get("x-acs-security-token")
        if token != key.token:
            raise Refused(403, "InvalidSecurityToken", "the security token is missing or not the key's")
        try:
            sent_at = datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise Refused(400, "InvalidArgument", "x-acs-date is not yyyy-MM-ddTHH:mm:ssZ") from None
        if abs(self.clock() - sent_at.timestamp()) > MAX_SKEW:
            raise Refused(403, "RequestTimeTooSkewed", "x-acs-date is more than 15 minutes from the server's time")
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers["x-acs-content-sha256"] != payload_hash:
            raise Refused(403, "SignatureNotMatch", "x-acs-content-sha256 is not the SHA-256 of the body received")
        query = dict(
            (unquote(name), unquote(value))
            for name, _, value in (pair.partition("=") for pair in raw_query.split("&") if pair)
        )
        request = SimpleNamespace(
            method=method, pathname=path, query=query, headers={name: headers[name] for name in signed}
        )
        expected = OfficialSigner.get_authorization(request, ALGORITHM, payload_hash, key.id, key.secret)
        if headers["authorization"] != expected:
            raise Refused(403, "SignatureNotMatch", "the signature the official signer computes differs")
        nonce = headers["x-acs-signature-nonce"]
        if nonce in self._nonces:
            raise Refused(403, "SignatureNonceUsed", "the nonce was used before")
        self._nonces.add(nonce)
        function = unquote(match.group(1))
        if function not in self.functions:
            raise Refused(404, "FunctionNotFound", f"function '{function}' does not exist.")
        return Fc3Invocation(
            function=function,
            qualifier=query.get("qualifier"),
            invocation_type=headers.get("x-fc-invocation-type"),
            body=body,
            access_key_id=key.id,
            security_token=token,
            signed_headers=signed,
            request_id=request_id,
        )


@contextmanager
def served(standin: Fc3StandIn) -> Iterator[str]:
    """The stand-in on a free loopback port for the ``with`` block; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, request_id, answer = standin.handle("POST", self.path, headers, body)
            self.send_response(status)
            self.send_header("x-fc-request-id", request_id)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fc3-standin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fc3_context(
    function_name: str,
    *,
    account_id: str = "1234567890123456",
    region: str = "cn-hangzhou",
    qualifier: str | None = "LATEST",
    timeout: int = 60,
    credentials: dict[str, str] | None = None,
) -> Any:
    """A context shaped like FC 3.0's Python one: python3.12's ``FCContext`` (no ``service``, no ``credentials``),
    or with ``credentials`` (``access_key_id``, ``access_key_secret``, ``security_token``) as python3.10 gives them.
    Attributes, not a dict: the runtime passes objects."""
    function = SimpleNamespace(
        name=function_name,
        handler="index.handler",
        memory=512,
        timeout=timeout,
        version_id="",
        qualifier=qualifier,
    )
    context = SimpleNamespace(
        account_id=account_id,
        request_id=str(uuid.uuid4()),
        function=function,
        logger=None,
        log_project="",
        log_store="",
        region=region,
    )
    if credentials is not None:
        context.credentials = SimpleNamespace(**credentials)
    return context
