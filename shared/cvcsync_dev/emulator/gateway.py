"""CVC's API gateway in front of the actions: the request read, checked and answered as the real gateway does.

The checks run in the real gateway's order: parameters present, action and version, access key (and STS token),
timestamp, signature, nonce, RAM permission. The nonce is recorded only once the signature is valid, so a forged
request cannot burn a real client's nonce. Every answer carries a fresh request id; a refusal has the gateway's
error body.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from cvcsync.adapters.signature import (
    SIGNATURE_METHOD,
    SIGNATURE_VERSION,
    parse_form,
    parse_timestamp,
    signature,
    string_to_sign,
)
from cvcsync.config import API_VERSION
from cvcsync_dev.emulator import codes
from cvcsync_dev.emulator.codes import GatewayError
from cvcsync_dev.emulator.keys import AccessKey
from cvcsync_dev.emulator.nonces import NonceCache

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger(__name__)

TIMESTAMP_WINDOW_S = 15 * 60

_FORM_TYPE = "application/x-www-form-urlencoded"
_TIMESTAMP_LENGTH = len("2019-10-30T00:00:00Z")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    truncated: bool = False  # a dropped connection: announce the whole body, send half, close


def json_response(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(data), headers)


class DroppedAnswer(Exception):
    """The action ran; its answer is to be lost on the way."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("dropped")
        self.body = body


def answer(handle: Callable[[], dict[str, Any]]) -> Response:
    """The gateway's answer to one request: ``handle``'s body under a fresh request id, or the error it raised."""
    request_id = str(uuid.uuid4()).upper()
    try:
        body = handle()
    except GatewayError as exc:
        logger.debug("refused %s: %s", request_id, exc.code)
        return _error_response(exc, request_id)
    except DroppedAnswer as dropped:
        lost = orjson.dumps({"RequestId": request_id, **dropped.body})
        return Response(200, lost, (("x-acs-request-id", request_id),), truncated=True)
    except Exception:
        # A bug of the emulator's own: answer as the gateway would, not with waitress's plain-text page.
        logger.exception("request %s failed inside the emulator", request_id)
        return _error_response(codes.internal_error(), request_id)
    return json_response(200, {"RequestId": request_id, **body}, (("x-acs-request-id", request_id),))


def _error_response(exc: GatewayError, request_id: str) -> Response:
    body = {
        "RequestId": request_id,
        "HostId": codes.HOST_ID,
        "Code": exc.code,
        "Message": exc.message,
        "Recommend": codes.RECOMMEND_URL.format(code=exc.code),
    }
    return json_response(exc.status, body, (("x-acs-request-id", request_id), *exc.headers))


def read_request(environ: WSGIEnvironment, path: str) -> tuple[str, list[tuple[str, str]]]:
    """The request's method and parameters (query and form body), or the gateway's refusal of its method or path."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if method not in ("GET", "POST"):
        raise codes.unsupported_method()
    if path != "/":
        raise codes.api_not_found()
    return method, _parameters(environ)


def _parameters(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    """Query and form body, decoded with form semantics (``+`` is a space) as UTF-8, blanks kept."""
    try:
        pairs = parse_form(environ.get("QUERY_STRING", "").encode("latin-1"))
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.lower().startswith(_FORM_TYPE):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > 0:
                pairs += parse_form(environ["wsgi.input"].read(length))
    except UnicodeError:
        raise codes.invalid_parameter("(request)", "Parameters must be UTF-8.") from None
    return pairs


def authenticate(
    method: str,
    pairs: list[tuple[str, str]],
    params: Mapping[str, str],
    *,
    actions: Collection[str],
    keys: Mapping[str, AccessKey],
    nonces: NonceCache,
    clock: Callable[[], float],
) -> str:
    """The gateway's checks, steps 1 to 7; returns the action to perform."""
    # 1. Parameters present and well-formed enough to be checked.
    for name in ("Action", "Version", "AccessKeyId", "Timestamp"):
        if not params.get(name):
            raise codes.missing_parameter(name)
    for name in ("Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce"):
        if not params.get(name):
            raise codes.incomplete_signature(f"The parameter {name} is missing.")
    if params["SignatureMethod"] != SIGNATURE_METHOD:
        raise codes.incomplete_signature(f"SignatureMethod {params['SignatureMethod']!r} is not supported.")
    if params["SignatureVersion"] != SIGNATURE_VERSION:
        raise codes.incomplete_signature(f"SignatureVersion {params['SignatureVersion']!r} is not supported.")
    if (params.get("Format") or "JSON").upper() != "JSON":
        raise codes.invalid_parameter("Format", "The emulator answers JSON only.")

    # 2. Action and version.
    action = params["Action"]
    if action not in actions or params["Version"] != API_VERSION:
        raise codes.api_not_found()

    # 3. Access key and, for an STS key, its security token.
    key = keys.get(params["AccessKeyId"])
    if key is None:
        raise codes.access_key_not_found()
    if key.disabled:
        raise codes.access_key_inactive()
    token = params.get("SecurityToken", "")
    if key.token is not None:
        if not token:
            raise codes.security_token_missing()
        if not hmac.compare_digest(token.encode(), key.token.encode()):
            raise codes.security_token_mismatch()
    elif token:
        raise codes.security_token_mismatch()

    # 4. Timestamp: the strict format, within the window either way.
    raw_timestamp = params["Timestamp"]
    try:
        if len(raw_timestamp) != _TIMESTAMP_LENGTH:
            raise ValueError(raw_timestamp)
        timestamp = parse_timestamp(raw_timestamp).timestamp()
    except ValueError:
        raise codes.timestamp_format() from None
    now = clock()
    if abs(timestamp - now) > TIMESTAMP_WINDOW_S:
        raise codes.timestamp_expired()

    # 5. Signature over every parameter that arrived, query and body, except Signature itself.
    text = string_to_sign(method, pairs)
    expected = signature(key.secret, text)
    if not hmac.compare_digest(params["Signature"].encode(), expected.encode()):
        raise GatewayError(400, "SignatureDoesNotMatch", codes.SIGNATURE_MISMATCH_PREFIX + text)

    # 6. Nonce, remembered until the timestamp itself leaves the window.
    nonce = params["SignatureNonce"]
    if not nonces.use(key.id, nonce, expires_at=timestamp + TIMESTAMP_WINDOW_S + 1, now=now):
        raise codes.nonce_used()

    # 7. RAM permission of the (now authenticated) identity.
    if key.denied:
        raise codes.forbidden_ram()
    return action
