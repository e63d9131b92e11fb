"""Who is calling: a CVCSYNC-HMAC-SHA256 signature (``signing.py``) or a static bearer token.

Checks, in order: the scheme's headers are there and well formed; the timestamp is within the allowed skew of the
server's clock; the key is known and the signature matches one of its secrets (several per id, for rotation); the
nonce has not been used by that key while its timestamp is still acceptable. Bearer tokens are compared with
``hmac.compare_digest`` against every configured token, so the time taken does not say which one nearly matched.

Replay memory is per warm container (``ReplayMemory``): a request replayed to *another* instance of the function
within the window is not caught. ``docs/http-api.md`` says so and what bounds the damage.
Nothing here logs a secret, a token or a signature.
"""

from __future__ import annotations

import heapq
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cvcsync.http_api.errors import ApiError
from cvcsync.http_api.settings import KEY_ID, HttpSettings
from cvcsync.http_api.signing import (
    ALGORITHM,
    HEADER_KEY_ID,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SIGNED_HEADERS,
    body_sha256,
    signature,
    string_to_sign,
)

DEFAULT_REPLAY_CAPACITY = 100_000
_NONCE = re.compile(r"[A-Za-z0-9._~-]{16,128}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a key id, or ``token#n`` (the n-th configured token) for a bearer token."""

    id: str
    scheme: str


class ReplayMemory:
    """The ``(key id, nonce)`` pairs seen, each kept only until its timestamp leaves the window.

    A pair expiring at ``expires_at`` is remembered while ``now <= expires_at``: the window is closed at both ends
    (``Authenticator`` accepts ``|now - timestamp| <= skew``), so the last instant a timestamp is accepted is also
    one at which its nonce is still known. A heap of expiries lets every call forget the expired pairs cheaply.
    ``capacity`` bounds memory against a key holder sending floods of distinct nonces: when full, new requests are
    refused (429) until pairs expire.
    """

    def __init__(self, capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def remember(self, key_id: str, nonce: str, *, expires_at: float, now: float) -> bool:
        """Record the pair and return True, or return False when it is still remembered (a replay)."""
        entry = (key_id, nonce)
        with self._lock:
            while self._heap and self._heap[0][0] < now:  # past its window: its timestamp is refused anyway
                expired_at, old = heapq.heappop(self._heap)
                if self._expiry.get(old) == expired_at:
                    del self._expiry[old]
            if entry in self._expiry:
                return False
            if len(self._expiry) >= self.capacity:
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "too many signed requests in the replay window for this instance; retry later",
                    headers=[("Retry-After", str(max(1, int(self._heap[0][0] - now))))],
                )
            self._expiry[entry] = expires_at
            heapq.heappush(self._heap, (expires_at, entry))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)


def _unauthorized(code: str, message: str, settings: HttpSettings, field: str | None = None) -> ApiError:
    challenges = ([ALGORITHM] if settings.keys else []) + (['Bearer realm="cvcsync"'] if settings.tokens else [])
    return ApiError(401, code, message, field=field, headers=[("WWW-Authenticate", ", ".join(challenges))])


class Authenticator:
    def __init__(self, memory: ReplayMemory | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.memory = memory or ReplayMemory()
        self._clock = clock

    def authenticate(
        self,
        settings: HttpSettings,
        *,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Caller:
        """The caller, or ``ApiError`` (401; 503 when no key or token is configured at all). Header names lower case."""
        if not settings.auth_configured:
            raise ApiError(503, "AuthNotConfigured", "no HTTP keys or tokens are configured: every request is refused")
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return self._bearer(settings, authorization[7:].strip())
        present = [name for name in SIGNED_HEADERS if headers.get(name.lower())]
        if not present:
            raise _unauthorized(
                "MissingAuthentication",
                "sign the request (X-Cvcsync-* headers, see docs/http-api.md) or send Authorization: Bearer <token>",
                settings,
                field="Authorization",
            )
        if not settings.keys:
            raise _unauthorized(
                "InvalidSignature",
                "signed requests are not accepted here: use a bearer token",
                settings,
                field=HEADER_SIGNATURE,
            )
        for name in SIGNED_HEADERS:
            if name not in present:
                raise _unauthorized("IncompleteSignature", f"the {name} header is missing", settings, field=name)
        key_id = headers[HEADER_KEY_ID.lower()]
        raw_timestamp = headers[HEADER_TIMESTAMP.lower()]
        nonce = headers[HEADER_NONCE.lower()]
        given = headers[HEADER_SIGNATURE.lower()]
        if not KEY_ID.fullmatch(key_id):
            raise _unauthorized("IncompleteSignature", "the key id is malformed", settings, field=HEADER_KEY_ID)
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise _unauthorized(
                "IncompleteSignature", "the timestamp must be Unix seconds", settings, field=HEADER_TIMESTAMP
            )
        if not _NONCE.fullmatch(nonce):
            raise _unauthorized(
                "IncompleteSignature", "the nonce must be 16-128 of A-Z a-z 0-9 . _ ~ -", settings, field=HEADER_NONCE
            )
        if not _SIGNATURE.fullmatch(given):
            raise _unauthorized(
                "IncompleteSignature", "the signature must be 64 hex digits", settings, field=HEADER_SIGNATURE
            )
        now = self._clock()
        timestamp = int(raw_timestamp)
        if abs(now - timestamp) > settings.clock_skew:
            raise _unauthorized(
                "RequestExpired",
                f"the timestamp is {int(timestamp - now):+d} s from the server's clock; "
                f"at most {settings.clock_skew} s either way is accepted",
                settings,
                field=HEADER_TIMESTAMP,
            )
        text = string_to_sign(
            method,
            path,
            query_string,
            key_id=key_id,
            timestamp=timestamp,
            nonce=nonce,
            body_hash=body_sha256(body),
        )
        matched = False
        for secret in settings.keys.get(key_id, ()):
            matched |= hmac.compare_digest(signature(secret, text), given.lower())
        if not matched:
            raise _unauthorized(
                "InvalidSignature",
                "the signature does not match (unknown key id, or the wrong secret)",
                settings,
                field=HEADER_SIGNATURE,
            )
        if not self.memory.remember(key_id, nonce, expires_at=timestamp + settings.clock_skew, now=now):
            raise _unauthorized(
                "ReplayedRequest", "this nonce was already used: sign every request anew", settings, field=HEADER_NONCE
            )
        return Caller(key_id, "hmac")

    def _bearer(self, settings: HttpSettings, token: str) -> Caller:
        if not settings.tokens:
            raise _unauthorized(
                "InvalidToken", "bearer tokens are not accepted here: sign the request", settings, field="Authorization"
            )
        found: int | None = None
        candidate = token.encode("utf-8", "replace")
        for index, known in enumerate(settings.tokens, start=1):
            if hmac.compare_digest(known.encode("utf-8"), candidate) and found is None:
                found = index
        if found is None:
            raise _unauthorized("InvalidToken", "the bearer token is not valid", settings, field="Authorization")
        return Caller(f"token#{found}", "bearer")
