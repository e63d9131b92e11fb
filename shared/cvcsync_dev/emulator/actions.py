"""CVC's five user actions (CreateUser, DeleteUser, GetUser, ListUsers, GetAccountInfo) over the emulator's store.

An action gets the parameters of a request the gateway let through and answers the service's body; a request the
service refuses (a bad user, too many users, a full account) answers ``Success: false`` with its business error
code, as the real service does, under HTTP 200.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from cvcsync_dev.emulator import codes
from cvcsync_dev.emulator.codes import BusinessError
from cvcsync_dev.emulator.journal import Stats
from cvcsync_dev.emulator.store import FIELD_KEYS, OPTIONAL_KEYS, REQUIRED_KEYS, CapacityExceeded, Store, User

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_SUCCESS: dict[str, Any] = {"Message": "successful!", "Success": True, "ErrorCode": 0}
_INTEGER = re.compile(r"-?[0-9]{1,11}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # the service is a Java one: integer parameters are 32-bit


class UserActions:
    """The actions by name, and the account they act on: its store, capacity and limits.

    ``capacity`` may change while the emulator runs (the admin API sets it); ``clock`` gives CreateUser's
    ``createTime``.
    """

    def __init__(
        self,
        store: Store,
        *,
        capacity: int,
        max_batch: int,
        concurrent_max: int,
        stats: Stats,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.max_batch = max_batch
        self.concurrent_max = concurrent_max
        self._stats = stats
        self._clock = clock
        self.by_name: dict[str, Callable[[Mapping[str, str]], dict[str, Any]]] = {
            "CreateUser": self._create_user,
            "DeleteUser": self._delete_user,
            "GetUser": self._get_user,
            "ListUsers": self._list_users,
            "GetAccountInfo": self._get_account_info,
        }

    def perform(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """The action's answer body; a business error is an answer too (``Success: false``)."""
        try:
            return self.by_name[action](params)
        except BusinessError as exc:
            return {"Success": False, "ErrorCode": exc.error_code, "Message": exc.message}

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
        self._stats.batch("CreateUser", len(users))
        return dict(_SUCCESS)

    def _delete_user(self, params: Mapping[str, str]) -> dict[str, Any]:
        items = self._checked_batch(params)
        user_ids = [_validate_user_id(index, item) for index, item in enumerate(items)]
        self.store.delete(user_ids)
        self._stats.batch("DeleteUser", len(user_ids))
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
