"""Raw, signed CVC requests over real HTTP, built with cvcsync.adapters.signature, for tests that poke at the gateway.

Every knob a test needs to make a request wrong on purpose is here: timestamp, nonce, token, extra or missing
parameters, the method, a different secret. Nothing is retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import requests

from cvcsync.adapters.signature import common_params, format_timestamp, percent_encode, signature, string_to_sign
from cvcsync.config import API_VERSION


def new_nonce() -> str:
    return str(uuid.uuid4())


def signed_parts(
    action: str,
    *,
    key_id: str,
    secret: str,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    body: Mapping[str, str] | None = None,
    now: datetime | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    token: str | None = None,
    version: str = API_VERSION,
    extra: Mapping[str, str] | None = None,
    omit: Iterable[str] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """(query, body) of one request, signed over both as the gateway expects.

    ``extra`` adds common parameters (signed like the rest), ``omit`` removes some before signing.
    """
    params = common_params(
        action=action,
        version=version,
        access_key_id=key_id,
        now=now or datetime.now(timezone.utc),
        nonce=nonce or new_nonce(),
        security_token=token,
    )
    if timestamp is not None:
        params["Timestamp"] = timestamp
    params.update(extra or {})
    params.update(query or {})
    for name in omit:
        params.pop(name, None)
    form = dict(body or {})
    params["Signature"] = signature(secret, string_to_sign(method, [*params.items(), *form.items()]))
    return params, form


def call(
    url: str,
    action: str,
    *,
    key_id: str,
    secret: str,
    method: str = "POST",
    session: requests.Session | None = None,
    timeout: float = 10.0,
    query: Mapping[str, str] | None = None,
    body: Mapping[str, str] | None = None,
    **options: Any,
) -> requests.Response:
    """Sign and send one request; the form body is encoded the way the official SDK encodes it (``+`` spaces)."""
    params, form = signed_parts(action, key_id=key_id, secret=secret, method=method, query=query, body=body, **options)
    return send(url, params, form, method=method, session=session, timeout=timeout)


def send(
    url: str,
    params: Mapping[str, str],
    form: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> requests.Response:
    """Send exactly these parameters: query in the URL (RFC 3986 encoded), form body with form encoding."""
    http = session or _session()
    query = "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in params.items())
    target = f"{url}/?{query}"
    if form:
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
        return http.request(method, target, data=urlencode(form), headers=headers, timeout=timeout)
    return http.request(method, target, timeout=timeout)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never through a proxy: the emulator is on loopback
    return session


def stale_timestamp(seconds: float) -> str:
    """A timestamp ``seconds`` away from now (negative: in the past)."""
    return format_timestamp(datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() + seconds, timezone.utc))
