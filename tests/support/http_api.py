"""Calling the HTTP API in tests: in process through WSGI (``call``), or over loopback (``served``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import requests

from cvcsync.http_api.adapters import run_wsgi, wsgi_environ
from cvcsync.http_api.app import HttpApi
from cvcsync.http_api.signing import new_nonce, sign
from cvcsync_dev.call import HmacAuth
from cvcsync_dev.serve import ApiServer

KEY_ID = "tests"
SECRET = "tests-secret-0123456789abcdef"
ROTATED_KEY_ID = "tests-next"
ROTATED_SECRET = "tests-next-secret-0123456789"
TOKEN = "tests-token-0123456789abcdef"
AUTH_ENV = {
    "CVCSYNC_HTTP_KEYS": f"{KEY_ID}:{SECRET},{ROTATED_KEY_ID}:{ROTATED_SECRET}",
    "CVCSYNC_HTTP_TOKENS": TOKEN,
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.json()["error"])


def signed_headers(
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return sign(method, path, query, body, key_id=key_id, secret=secret, timestamp=stamp, nonce=new_nonce())


def call(
    api: HttpApi,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | Any = b"",
    headers: Mapping[str, str] | None = None,
    signed: bool = True,
    content_type: str | None = "application/json",
) -> Answer:
    """One request through the WSGI app in process, signed unless ``signed=False``."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers.setdefault("Content-Type", content_type)
    if signed:
        all_headers.update(signed_headers(method, path, query, raw))
    environ = wsgi_environ(method=method, path=path, query_string=query, headers=all_headers.items(), body=raw)
    answer = run_wsgi(api, environ)
    return Answer(answer.status, dict(answer.headers), answer.body)


@contextmanager
def served(api: HttpApi) -> Iterator[str]:
    """The app on waitress on a free loopback port; yields its URL."""
    with ApiServer(api, port=0, threads=4) as server:
        yield server.url


def signed_session(key_id: str = KEY_ID, secret: str = SECRET) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.auth = HmacAuth(key_id, secret)
    return session
