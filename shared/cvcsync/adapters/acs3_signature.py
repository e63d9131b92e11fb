"""Alibaba Cloud V3 signature, ACS3-HMAC-SHA256, as pure functions (what FC 3.0's API and every ROA API check).

Each step is named after the spec ("V3 request structure and signature", help.aliyun.com document 2593177, and FC
3.0's "签名机制" page): ``canonical_uri``, ``canonical_query``, ``hashed_payload``, ``canonical_headers`` and
``signed_headers``, ``canonical_request``, ``string_to_sign``, ``signature``, ``authorization``. ``sign`` composes
them. Nothing here reads the clock, makes a nonce or does I/O: callers inject ``now`` and ``nonce`` and sign every
attempt anew, as with the RPC signer (``adapters.signature``). The published worked example is the golden test.

What differs from the RPC signature (V2): the signing key is the raw AccessKey secret (no ``&``); the digest is
SHA-256 in lowercase hex; the parameters travel in headers (``x-acs-*``), which are signed by name; the body is
signed through its hash (``x-acs-content-sha256``), so a body changed in transit fails the check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from cvcsync.adapters.signature import percent_encode

ALGORITHM = "ACS3-HMAC-SHA256"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Headers the spec says must be signed when present: host, content-type and every x-acs-* header.
_ALWAYS_SIGNED = frozenset({"host", "content-type"})
_SIGNED_PREFIX = "x-acs-"


def canonical_uri(path: str) -> str:
    """The path as RFC 3986 encodes it, segment by segment (``/`` kept); ``/`` for an empty path.

    The request must go out on this very form: the server signs the path it received, not a decoded one.
    """
    if not path:
        return "/"
    return "/".join(percent_encode(segment) for segment in path.split("/"))


def canonical_query(params: Mapping[str, str]) -> str:
    """Names in code-point order, names and values RFC 3986 encoded, ``name=value`` joined by ``&``; ``""`` for none.

    The query string sent is this string, so what is signed is what arrives.
    """
    return "&".join(f"{percent_encode(name)}={percent_encode(params[name])}" for name in sorted(params))


def hashed_payload(body: bytes) -> str:
    """HashedRequestPayload: lowercase hex SHA-256 of the body (of ``b""`` when there is none); also the value of
    ``x-acs-content-sha256``."""
    return hashlib.sha256(body).hexdigest()


def headers_to_sign(headers: Mapping[str, str], *, also: Iterable[str] = ()) -> dict[str, str]:
    """The headers the spec requires signed (host, content-type, ``x-acs-*``), plus those named in ``also``, by
    lowercase name. Two headers whose names differ only in case are refused: which one was meant is unknowable."""
    wanted = {name.lower() for name in also}
    chosen: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _ALWAYS_SIGNED or lower.startswith(_SIGNED_PREFIX) or lower in wanted:
            if lower in chosen:
                raise ValueError(f"header {lower!r} is given twice (names differ only in case)")
            chosen[lower] = value
    return chosen


def canonical_headers(headers: Mapping[str, str]) -> str:
    """``name:value\\n`` for each header to sign: names lowercase and in code-point order, values trimmed."""
    lowered = {name.lower(): value.strip(" \t") for name, value in headers.items()}
    return "".join(f"{name}:{lowered[name]}\n" for name in sorted(lowered))


def signed_headers(headers: Mapping[str, str]) -> str:
    """The names of the signed headers, lowercase, in code-point order, joined by ``;``."""
    return ";".join(sorted(name.lower() for name in headers))


def canonical_request(
    method: str, uri: str, query: str, headers_block: str, signed_names: str, payload_hash: str
) -> str:
    """The six parts, one per line. ``headers_block`` ends in its own newline, so an empty line follows it, as in
    the spec's example."""
    return f"{method.upper()}\n{uri}\n{query}\n{headers_block}\n{signed_names}\n{payload_hash}"


def string_to_sign(request: str) -> str:
    """The algorithm's name, a newline, and the lowercase hex SHA-256 of the canonical request."""
    return f"{ALGORITHM}\n{hashlib.sha256(request.encode('utf-8')).hexdigest()}"


def signature(secret: str, text: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``text`` keyed with the AccessKey secret itself."""
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(access_key_id: str, signed_names: str, signature_hex: str) -> str:
    """The ``Authorization`` header's value."""
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_names},Signature={signature_hex}"


def format_date(moment: datetime) -> str:
    """``x-acs-date``: UTC, ``yyyy-MM-ddTHH:mm:ssZ``."""
    return moment.astimezone(timezone.utc).strftime(DATE_FORMAT)


def sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    now: datetime,
    nonce: str,
    also_sign: Iterable[str] = (),
) -> dict[str, str]:
    """Every header one attempt sends: ``headers`` (which must hold ``host`` and the API's ``x-acs-action`` and
    ``x-acs-version``) with the date, nonce, body hash, STS token and ``Authorization`` added.

    ``path`` is the raw path (``canonical_uri`` encodes it) and ``query`` the raw parameters; send the request to
    ``canonical_uri(path)`` and ``canonical_query(query)``. ``also_sign`` names further headers to sign beyond the
    spec's set (a header that changes what the call does, such as ``x-fc-invocation-type``, belongs there).
    """
    sent = dict(headers)
    sent["x-acs-date"] = format_date(now)
    sent["x-acs-signature-nonce"] = nonce
    sent["x-acs-content-sha256"] = hashed_payload(body)
    if security_token:
        sent["x-acs-security-token"] = security_token
    signing = headers_to_sign(sent, also=also_sign)
    names = signed_headers(signing)
    request = canonical_request(
        method,
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(signing),
        names,
        sent["x-acs-content-sha256"],
    )
    sent["Authorization"] = authorization(access_key_id, names, signature(access_key_secret, string_to_sign(request)))
    return sent
