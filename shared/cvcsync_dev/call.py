"""A small client of the HTTP API (``cvcsync call``): requests signed with a key from the environment.

The key is one of ``CVCSYNC_HTTP_KEYS`` (the one named by ``--key-id``, else the last listed: on rotation the new
key is appended), or with ``bearer`` the last of ``CVCSYNC_HTTP_TOKENS``. Signing happens on the prepared request,
so what is signed is exactly what is sent; every request gets a fresh timestamp and nonce.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import requests

from cvcsync.config import ENV_HTTP_ENDPOINT, ENV_HTTP_KEYS, ENV_HTTP_TOKENS
from cvcsync.errors import ConfigurationError
from cvcsync.http_api.settings import parse_keys, parse_tokens
from cvcsync.http_api.signing import decoded_path, new_nonce, sign
from cvcsync_dev.serve import DEFAULT_HOST, DEFAULT_PORT

DEFAULT_ENDPOINT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


class HmacAuth(requests.auth.AuthBase):
    """Signs a prepared request. ``base_path`` (an FC proxy path or an API Gateway stage) is not signed."""

    def __init__(
        self,
        key_id: str,
        secret: str,
        *,
        base_path: str = "",
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        self.key_id = key_id
        self._secret = secret
        self.base_path = base_path.rstrip("/")
        self._clock = clock
        self._nonce = nonce

    def __repr__(self) -> str:
        return f"HmacAuth(key_id={self.key_id!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        path = decoded_path(url.path or "/")
        if self.base_path and path.startswith(self.base_path + "/"):
            path = path[len(self.base_path) :]
        body = request.body or b""
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        request.headers.update(
            sign(
                request.method or "GET",
                path,
                url.query,
                raw,
                key_id=self.key_id,
                secret=self._secret,
                timestamp=int(self._clock()),
                nonce=self._nonce(),
            )
        )
        return request


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "BearerAuth()"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def auth_from_env(
    env: Mapping[str, str], *, endpoint: str, key_id: str | None = None, bearer: bool = False
) -> requests.auth.AuthBase:
    if bearer:
        tokens = parse_tokens(env.get(ENV_HTTP_TOKENS, ""))
        if not tokens:
            raise ConfigurationError(f"--bearer needs {ENV_HTTP_TOKENS}")
        return BearerAuth(tokens[-1])
    keys = parse_keys(env.get(ENV_HTTP_KEYS, ""))
    if not keys:
        raise ConfigurationError(f"set {ENV_HTTP_KEYS}=id:secret to sign requests (or use --bearer)")
    chosen = key_id or list(keys)[-1]
    if chosen not in keys:
        raise ConfigurationError(f"{ENV_HTTP_KEYS} has no key {chosen!r}")
    return HmacAuth(chosen, keys[chosen][-1], base_path=urlsplit(endpoint).path)


def endpoint_from_env(env: Mapping[str, str], given: str | None = None) -> str:
    endpoint = (given or env.get(ENV_HTTP_ENDPOINT, "").strip() or DEFAULT_ENDPOINT).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(f"the HTTP API endpoint must be a full URL, got {endpoint!r}")
    return endpoint


def call(
    method: str,
    path: str,
    *,
    body: bytes | None,
    endpoint: str,
    auth: requests.auth.AuthBase,
    timeout: float = 60.0,
    session: requests.Session | None = None,
) -> requests.Response:
    """Send one request (no retries: a retry must be signed anew, and the caller decides whether to make one)."""
    http = session or requests.Session()
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    target = endpoint + ("" if path.startswith("/") else "/") + path
    return http.request(method.upper(), target, data=body, headers=headers, auth=auth, timeout=timeout)
