"""The emulator's WSGI application: CVC's API gateway and its five user actions, plus an optional admin API.

A request goes through the gateway's checks in the real gateway's order: parameters present, action and version,
access key (and STS token), timestamp, signature, nonce, RAM permission; then injected faults; then the action.
The nonce is recorded only once the signature is valid, so a forged request cannot burn a real client's nonce.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
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
from cvcsync_dev.emulator.codes import BusinessError, GatewayError
from cvcsync_dev.emulator.faults import FaultInjector, FaultKind, FaultSettings
from cvcsync_dev.emulator.keys import AccessKey
from cvcsync_dev.emulator.nonces import NonceCache
from cvcsync_dev.emulator.store import (
    FIELD_KEYS,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    CapacityExceeded,
    MemoryStore,
    Store,
    User,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

TIMESTAMP_WINDOW_S = 15 * 60
DEFAULT_CAPACITY = 100_000
DEFAULT_MAX_BATCH = 100
DEFAULT_CONCURRENT_MAX = 100
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
ADMIN_PREFIX = "/_emulator/"

_SUCCESS: dict[str, Any] = {"Message": "successful!", "Success": True, "ErrorCode": 0}
_JSON_TYPE = "application/json;charset=utf-8"
_FORM_TYPE = "application/x-www-form-urlencoded"
_INTEGER = re.compile(r"-?[0-9]{1,11}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # the service is a Java one: integer parameters are 32-bit
_TIMESTAMP_LENGTH = len("2019-10-30T00:00:00Z")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    truncated: bool = False  # a dropped connection: announce the whole body, send half, close


def _json_response(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(data), headers)


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


class Journal:
    """Off by default. When on, every CreateUser/DeleteUser that passed the gateway is recorded with the user ids it
    named and how it ended (ok, refused, throttled, error, dropped): an oracle independent of the client, so a test
    can tell which users' last write failed and must therefore be dead-lettered."""

    WRITES = ("CreateUser", "DeleteUser")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self._entries: list[dict[str, Any]] = []

    def switch(self, enabled: bool) -> None:
        with self._lock:
            self.enabled = enabled
            self._entries = []

    def record(self, action: str, params: Mapping[str, str], result: str) -> None:
        if not self.enabled or action not in self.WRITES:
            return
        try:
            items = orjson.loads(params.get("UserInfo") or "[]")
        except orjson.JSONDecodeError:
            items = []
        ids = [i.get("userId") for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        with self._lock:
            self._entries.append({"seq": len(self._entries), "action": action, "userIds": ids, "result": result})

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)


class Stats:
    """Counters for the admin API: calls per action, batch sizes applied, faults injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._calls: Counter[str] = Counter()
            self._create_sizes: list[int] = []
            self._delete_sizes: list[int] = []
            self._faults: Counter[str] = Counter({"throttled": 0, "errors": 0, "dropped": 0})

    def call(self, action: str) -> None:
        with self._lock:
            self._calls[action] += 1

    def batch(self, action: str, size: int) -> None:
        with self._lock:
            (self._create_sizes if action == "CreateUser" else self._delete_sizes).append(size)

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self, users: int) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "createBatchSizes": list(self._create_sizes),
                "deleteBatchSizes": list(self._delete_sizes),
                "users": users,
                "faults": dict(self._faults),
            }


def _parse_integer(name: str, raw: str | None, *, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise codes.missing_parameter(name)
        return default
    if not _INTEGER.fullmatch(raw) or not _INT_MIN <= int(raw) <= _INT_MAX:
        raise codes.invalid_parameter(name, "It must be an integer.")
    return int(raw)


def _parse_user_list(params: Mapping[str, str]) -> list[Any]:
    raw = params.get("UserInfo")
    if not raw:
        raise codes.missing_parameter("UserInfo")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise codes.invalid_parameter("UserInfo", "It must be a JSON list.") from None
    if not isinstance(items, list):
        raise codes.invalid_parameter("UserInfo", "It must be a JSON list.")
    return items


def _describe(index: int, item: Mapping[str, Any]) -> str:
    user_id = item.get("userId")
    shown = repr(user_id) if isinstance(user_id, str) else "missing"
    return f"invalid user at index {index} (userId {shown})"


_DICT = frozenset({dict})
_TEXT = frozenset({str})
_TEXT_OR_ABSENT = frozenset({str, type(None)})


def _validate_users(items: list[Any], create_time: int) -> list[User]:
    """Every user of a CreateUser, or the ``BusinessError`` of the first invalid one.

    The common case field by field over the whole batch, in C-level passes (every item an object, every required
    field non-empty text, every optional one text or absent); any doubt, item by item, which says what is wrong.
    """
    if _DICT.issuperset(map(type, items)):
        columns = [[item.get(key) for item in items] for key in FIELD_KEYS]
        required, optional = columns[: len(REQUIRED_KEYS)], columns[len(REQUIRED_KEYS) :]
        if all(_TEXT.issuperset(map(type, column)) and "" not in column for column in required) and all(
            _TEXT_OR_ABSENT.issuperset(map(type, column)) for column in optional
        ):
            return list(map(User, *columns, itertools.repeat(create_time, len(items))))
    return [_validate_user(index, item, create_time) for index, item in enumerate(items)]


def _validate_user(index: int, item: Any, create_time: int) -> User:
    if not isinstance(item, dict):
        raise BusinessError(codes.ERROR_INVALID_USER, f"invalid user at index {index}: not a JSON object")
    for key in REQUIRED_KEYS:
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise BusinessError(
                codes.ERROR_INVALID_USER, f"{_describe(index, item)}: field '{key}' must be a non-empty string"
            )
    for key in OPTIONAL_KEYS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise BusinessError(codes.ERROR_INVALID_USER, f"{_describe(index, item)}: field '{key}' must be a string")
    return User.from_camel(item, create_time)


def _validate_user_id(index: int, item: Any) -> str:
    if not isinstance(item, dict):
        raise BusinessError(codes.ERROR_INVALID_USER, f"invalid user at index {index}: not a JSON object")
    user_id = item.get("userId")
    if not isinstance(user_id, str) or not user_id:
        raise BusinessError(
            codes.ERROR_INVALID_USER, f"{_describe(index, item)}: field 'userId' must be a non-empty string"
        )
    return user_id


class EmulatorApp:
    """WSGI callable emulating the CVC gateway for API version 2019-10-30.

    ``clock`` (seconds since the epoch) and ``sleep`` are injectable so that tests can move time; both default to
    the real ones. The admin API under ``/_emulator/`` exists only when ``admin`` is true.
    """

    def __init__(
        self,
        keys: Iterable[AccessKey],
        *,
        store: Store | None = None,
        capacity: int = DEFAULT_CAPACITY,
        max_batch: int = DEFAULT_MAX_BATCH,
        concurrent_max: int = DEFAULT_CONCURRENT_MAX,
        faults: FaultSettings | None = None,
        admin: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._initial_keys = {key.id: replace(key) for key in keys}
        if not self._initial_keys:
            raise ValueError("the emulator needs at least one access key")
        self._keys = {key_id: replace(key) for key_id, key in self._initial_keys.items()}
        self._keys_lock = threading.Lock()
        self.store: Store = store if store is not None else MemoryStore()
        self._initial_capacity = capacity
        self.capacity = capacity
        self.max_batch = max_batch
        self.concurrent_max = concurrent_max
        self.faults = FaultInjector(faults)
        self.admin = admin
        self.nonces = NonceCache()
        self.stats = Stats()
        self.journal = Journal()
        self._clock = clock
        self._sleep = sleep
        self._actions: dict[str, Callable[[Mapping[str, str]], dict[str, Any]]] = {
            "CreateUser": self._create_user,
            "DeleteUser": self._delete_user,
            "GetUser": self._get_user,
            "ListUsers": self._list_users,
            "GetAccountInfo": self._get_account_info,
        }

    # --- WSGI -------------------------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if self.admin and path.startswith(ADMIN_PREFIX):
            response = self._admin(environ, path)
        else:
            response = self._gateway(environ, path)
        headers = [
            ("Content-Type", _JSON_TYPE),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        if response.truncated:
            # Waitress sees fewer bytes than Content-Length announced and closes the connection: the client is
            # left with a broken answer, exactly like a connection lost mid-way.
            return [response.body[: len(response.body) // 2]]
        return [response.body]

    # --- the gateway ------------------------------------------------------------------------------------------

    def _gateway(self, environ: WSGIEnvironment, path: str) -> Response:
        request_id = _request_id()
        try:
            body = self._handle(environ, path)
        except GatewayError as exc:
            logger.debug("refused %s: %s", request_id, exc.code)
            return self._gateway_error(exc, request_id)
        except _Dropped as dropped:
            lost = orjson.dumps({"RequestId": request_id, **dropped.body})
            return Response(200, lost, (("x-acs-request-id", request_id),), truncated=True)
        except Exception:
            # A bug of the emulator's own: answer as the gateway would, not with waitress's plain-text page.
            logger.exception("request %s failed inside the emulator", request_id)
            return self._gateway_error(codes.internal_error(), request_id)
        return _json_response(200, {"RequestId": request_id, **body}, (("x-acs-request-id", request_id),))

    @staticmethod
    def _gateway_error(exc: GatewayError, request_id: str) -> Response:
        body = {
            "RequestId": request_id,
            "HostId": codes.HOST_ID,
            "Code": exc.code,
            "Message": exc.message,
            "Recommend": codes.RECOMMEND_URL.format(code=exc.code),
        }
        return _json_response(exc.status, body, (("x-acs-request-id", request_id), *exc.headers))

    def _handle(self, environ: WSGIEnvironment, path: str) -> dict[str, Any]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "POST"):
            raise codes.unsupported_method()
        if path != "/":
            raise codes.api_not_found()
        pairs = self._parameters(environ)
        params = dict(pairs)
        action = self._authenticate(method, pairs, params)
        return self._perform(action, params)

    def _authenticate(self, method: str, pairs: list[tuple[str, str]], params: Mapping[str, str]) -> str:
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
        if action not in self._actions or params["Version"] != API_VERSION:
            raise codes.api_not_found()

        # 3. Access key and, for an STS key, its security token.
        key = self._keys.get(params["AccessKeyId"])
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
        now = self._clock()
        if abs(timestamp - now) > TIMESTAMP_WINDOW_S:
            raise codes.timestamp_expired()

        # 5. Signature over every parameter that arrived, query and body, except Signature itself.
        text = string_to_sign(method, pairs)
        expected = signature(key.secret, text)
        if not hmac.compare_digest(params["Signature"].encode(), expected.encode()):
            raise GatewayError(400, "SignatureDoesNotMatch", codes.SIGNATURE_MISMATCH_PREFIX + text)

        # 6. Nonce, remembered until the timestamp itself leaves the window.
        nonce = params["SignatureNonce"]
        if not self.nonces.use(key.id, nonce, expires_at=timestamp + TIMESTAMP_WINDOW_S + 1, now=now):
            raise codes.nonce_used()

        # 7. RAM permission of the (now authenticated) identity.
        if key.denied:
            raise codes.forbidden_ram()
        return action

    def _perform(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """Steps 8 and 9: injected faults, then the action itself."""
        # 8. Injected faults.
        self.stats.call(action)
        decision = self.faults.decide()
        if decision.delay_s > 0:
            self._sleep(decision.delay_s)
        if decision.kind is FaultKind.THROTTLE:
            self.stats.fault("throttled")
            self.journal.record(action, params, "throttled")
            raise codes.throttling(decision.retry_after_ms)
        if decision.kind is FaultKind.ERROR:
            self.stats.fault("errors")
            self.journal.record(action, params, "error")
            raise codes.internal_error() if decision.status == 500 else codes.service_unavailable()

        # 9. The action. A dropped connection loses the answer of an action that did happen: the worst case
        # for a client, which cannot tell whether its call took effect.
        try:
            result = self._actions[action](params)
        except BusinessError as exc:
            result = {"Success": False, "ErrorCode": exc.error_code, "Message": exc.message}
        if decision.kind is FaultKind.DROP:
            self.stats.fault("dropped")
            self.journal.record(action, params, "dropped")
            raise _Dropped(result)
        self.journal.record(action, params, "ok" if result.get("Success", True) else "refused")
        return result

    @staticmethod
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

    # --- the actions ------------------------------------------------------------------------------------------

    def _checked_batch(self, params: Mapping[str, str]) -> list[Any]:
        items = _parse_user_list(params)
        count = _parse_integer("Count", params.get("Count"))
        if count < 0:
            raise codes.invalid_parameter("Count", "It must not be negative.")
        if count != len(items):
            raise BusinessError(codes.ERROR_COUNT_MISMATCH, f"Count is {count} but UserInfo lists {len(items)} users")
        if len(items) > self.max_batch:
            raise BusinessError(
                codes.ERROR_BATCH_TOO_LARGE, f"{len(items)} users in one call; at most {self.max_batch} allowed"
            )
        if not items:
            raise BusinessError(codes.ERROR_INVALID_USER, "UserInfo lists no users")
        return items

    def _create_user(self, params: Mapping[str, str]) -> dict[str, Any]:
        items = self._checked_batch(params)
        now_ms = int(self._clock() * 1000)
        users = _validate_users(items, now_ms)
        try:
            self.store.upsert(users, capacity=self.capacity, now_ms=now_ms)
        except CapacityExceeded as exc:
            raise BusinessError(
                codes.ERROR_CAPACITY_EXCEEDED,
                f"user capacity exceeded: {exc.current} users held, {exc.added} new, at most {exc.capacity}",
            ) from None
        self.stats.batch("CreateUser", len(users))
        return dict(_SUCCESS)

    def _delete_user(self, params: Mapping[str, str]) -> dict[str, Any]:
        items = self._checked_batch(params)
        user_ids = [_validate_user_id(index, item) for index, item in enumerate(items)]
        self.store.delete(user_ids)
        self.stats.batch("DeleteUser", len(user_ids))
        return dict(_SUCCESS)

    def _get_user(self, params: Mapping[str, str]) -> dict[str, Any]:
        user_id = params.get("UserId")
        if not user_id:
            raise codes.missing_parameter("UserId")
        user = self.store.get(user_id)
        if user is None:
            raise BusinessError(codes.ERROR_USER_NOT_FOUND, f"user not found: {user_id}")
        return {**_SUCCESS, "UserInfo": user.to_api()}

    def _list_users(self, params: Mapping[str, str]) -> dict[str, Any]:
        page_number = _parse_integer("PageNumber", params.get("PageNumber"), default=1)
        page_size = _parse_integer("PageSize", params.get("PageSize"), default=DEFAULT_PAGE_SIZE)
        if page_number < 1:
            raise codes.invalid_parameter("PageNumber", "It must be at least 1.")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise codes.invalid_parameter("PageSize", f"It must be between 1 and {MAX_PAGE_SIZE}.")
        total, users = self.store.page((page_number - 1) * page_size, page_size)
        data = {
            "TotalCount": total,
            "PageSize": page_size,
            "PageNumber": page_number,
            "UserInfos": [user.to_api() for user in users],
        }
        return {**_SUCCESS, "Data": data}

    def _get_account_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        info = {
            "AccountConcurrentMax": self.concurrent_max,
            "AccountApplicationMax": self.capacity,
            "AccountApplicationNumber": self.store.count(),
        }
        return {**_SUCCESS, "AccountInfo": info}

    # --- the admin API ----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the state at start: no users, nonces or stats, faults off, keys and capacity as configured."""
        self.store.clear()
        self.nonces.clear()
        self.stats.clear()
        self.journal.switch(False)
        self.faults.configure(FaultSettings())
        with self._keys_lock:
            self._keys = {key_id: replace(key) for key_id, key in self._initial_keys.items()}
        self.capacity = self._initial_capacity

    def set_key(self, key_id: str, *, disabled: bool | None = None, denied: bool | None = None) -> AccessKey:
        """Mark a key disabled and/or denied; ``KeyError`` for a key the emulator does not know."""
        with self._keys_lock:
            key = self._keys[key_id]
            updated = replace(
                key,
                disabled=key.disabled if disabled is None else disabled,
                denied=key.denied if denied is None else denied,
            )
            self._keys = {**self._keys, key_id: updated}
            return updated

    def _admin(self, environ: WSGIEnvironment, path: str) -> Response:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        resource = path[len(ADMIN_PREFIX) :].rstrip("/")
        try:
            payload = self._admin_payload(environ) if method in ("PUT", "POST") else {}
            return self._admin_route(method, resource, payload)
        except _AdminError as exc:
            return _json_response(exc.status, {"error": exc.message})

    @staticmethod
    def _admin_payload(environ: WSGIEnvironment) -> dict[str, Any]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _AdminError(400, "the body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise _AdminError(400, "the body must be a JSON object")
        return payload

    def _admin_route(self, method: str, resource: str, payload: dict[str, Any]) -> Response:
        if resource == "faults":
            if method == "PUT":
                try:
                    self.faults.configure(FaultSettings.from_json(payload))
                except (TypeError, ValueError) as exc:
                    raise _AdminError(400, str(exc)) from None
            elif method != "GET":
                raise _AdminError(405, "use GET or PUT")
            return _json_response(200, self.faults.settings.to_json())
        if resource == "reset":
            if method != "POST":
                raise _AdminError(405, "use POST")
            self.reset()
            return _json_response(200, {"reset": True})
        if resource == "stats":
            if method != "GET":
                raise _AdminError(405, "use GET")
            return _json_response(200, self.stats.snapshot(self.store.count()))
        if resource == "journal":
            if method == "PUT":
                enabled = payload.get("enabled")
                if not isinstance(enabled, bool):
                    raise _AdminError(400, "enabled must be true or false")
                self.journal.switch(enabled)
            elif method != "GET":
                raise _AdminError(405, "use GET or PUT")
            return _json_response(200, {"enabled": self.journal.enabled, "entries": self.journal.entries()})
        if resource == "users":
            if method != "GET":
                raise _AdminError(405, "use GET")
            return _json_response(200, [user.to_camel() for user in self.store.all()])
        if resource == "capacity":
            if method == "PUT":
                capacity = payload.get("capacity")
                if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
                    raise _AdminError(400, "capacity must be a whole number, at least 0")
                self.capacity = capacity
            elif method != "GET":
                raise _AdminError(405, "use GET or PUT")
            return _json_response(200, {"capacity": self.capacity})
        if resource.startswith("keys/"):
            if method != "PUT":
                raise _AdminError(405, "use PUT")
            flags: dict[str, bool] = {}
            for name in ("disabled", "denied"):
                if name in payload:
                    if not isinstance(payload[name], bool):
                        raise _AdminError(400, f"{name} must be true or false")
                    flags[name] = payload[name]
            try:
                key = self.set_key(resource[len("keys/") :], **flags)
            except KeyError:
                raise _AdminError(404, "no such access key") from None
            return _json_response(200, {"id": key.id, "disabled": key.disabled, "denied": key.denied})
        raise _AdminError(404, "no such admin resource")


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Dropped(Exception):
    """The action ran; its answer is to be lost on the way."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("dropped")
        self.body = body
