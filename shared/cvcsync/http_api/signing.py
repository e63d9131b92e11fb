"""CVCSYNC-HMAC-SHA256: how a caller signs a request to the HTTP API, as pure steps.

The server (``auth.py``), the ``cvcsync call`` client and the tests all use these functions, so the two sides can
only disagree on inputs, never on the recipe. Nothing here reads the clock or makes a nonce: ``sign`` takes both.

The string to sign is eight lines joined by ``\\n`` (``docs/http-api.md`` has a worked example)::

    CVCSYNC-HMAC-SHA256
    <METHOD>                     upper case
    <canonical path>             the route path (no stage or base path), decoded, then each segment RFC 3986-encoded
    <canonical query>            name=value pairs decoded, sorted, RFC 3986-encoded, joined by &
    <key id>
    <timestamp>                  Unix seconds, as sent in X-Cvcsync-Timestamp
    <nonce>                      as sent in X-Cvcsync-Nonce
    <hex SHA-256 of the body>    of the exact bytes sent (of b"" when there is none)

and the signature is the lower-case hex HMAC-SHA256 of it, keyed with the UTF-8 bytes of the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import unquote

from cvcsync.adapters.signature import parse_form, percent_encode

ALGORITHM = "CVCSYNC-HMAC-SHA256"
HEADER_KEY_ID = "X-Cvcsync-Key-Id"
HEADER_TIMESTAMP = "X-Cvcsync-Timestamp"
HEADER_NONCE = "X-Cvcsync-Nonce"
HEADER_SIGNATURE = "X-Cvcsync-Signature"
SIGNED_HEADERS = (HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)


def canonical_path(path: str) -> str:
    """``/users/张 三`` -> ``/users/%E5%BC%A0%20%E4%B8%89``: each segment of the *decoded* path, encoded.

    Encoding a decoded path makes the result independent of how a client or a gateway chose to escape the URL.
    """
    return "/".join(percent_encode(segment) for segment in path.split("/"))


def canonical_query(query_string: str) -> str:
    """The raw query string (``b=2&a=1&a=0``) as sorted, re-encoded pairs (``a=0&a=1&b=2``).

    ``+`` is a space and a bare name is a blank value, as in HTML forms; characters outside ASCII count as their
    UTF-8 bytes. Raises ``UnicodeDecodeError`` when an escape is not UTF-8.
    """
    pairs = parse_form(query_string.encode("utf-8"))
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(pairs))


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    method: str, path: str, query_string: str, *, key_id: str, timestamp: int, nonce: str, body_hash: str
) -> str:
    return "\n".join(
        (
            ALGORITHM,
            method.upper(),
            canonical_path(path),
            canonical_query(query_string),
            key_id,
            str(timestamp),
            nonce,
            body_hash,
        )
    )


def signature(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh nonce for one request (callers pass it to ``sign``; ``sign`` never makes one itself)."""
    return secrets.token_hex(16)


def sign(
    method: str,
    path: str,
    query_string: str,
    body: bytes,
    *,
    key_id: str,
    secret: str,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """The four headers that authenticate one request. ``path`` is decoded (``unquote`` a URL's path first)."""
    text = string_to_sign(
        method, path, query_string, key_id=key_id, timestamp=timestamp, nonce=nonce, body_hash=body_sha256(body)
    )
    return {
        HEADER_KEY_ID: key_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, text),
    }


def decoded_path(url_path: str) -> str:
    """A URL's path as ``sign`` wants it: percent-escapes undone (strictly UTF-8)."""
    return unquote(url_path, errors="strict")
