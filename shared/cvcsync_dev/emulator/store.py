"""Where the emulator keeps its users: in memory (the default) or in one SQLite file (``--db``).

Both stores behave the same, and both are safe to share between the server's worker threads. A CreateUser batch
is one atomic step: it is applied whole or not at all, capacity included, so a batch that would overflow the
licence leaves the store as it was.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

# (attribute, request key in camelCase, answer key in PascalCase), in the order GetUser answers with them.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("user_id", "userId", "UserId"),
    ("user_name", "userName", "UserName"),
    ("group_id", "groupId", "GroupId"),
    ("group_name", "groupName", "GroupName"),
    ("depart_id", "departId", "DepartId"),
    ("depart_name", "departName", "DepartName"),
    ("user_email", "userEmail", "UserEmail"),
    ("user_tel", "userTel", "UserTel"),
    ("user_mobile", "userMobile", "UserMobile"),
    ("user_avatar_url", "userAvatarUrl", "UserAvatarUrl"),
)
FIELD_KEYS: tuple[str, ...] = tuple(camel for _, camel, _ in _FIELDS)  # request keys, in User's order
REQUIRED_KEYS: tuple[str, ...] = ("userId", "userName", "groupId", "groupName")
OPTIONAL_KEYS: tuple[str, ...] = (
    "userAvatarUrl",
    "departId",
    "departName",
    "userEmail",
    "userTel",
    "userMobile",
)


class User(NamedTuple):
    """One CVC user as the emulator holds it; optional fields are ``None`` when the caller did not send them.

    A named tuple, immutable like a frozen dataclass: every user of every CreateUser is made into one, and a frozen
    dataclass takes ten times as long to make (``object.__setattr__`` per field).
    """

    user_id: str
    user_name: str
    group_id: str
    group_name: str
    depart_id: str | None = None
    depart_name: str | None = None
    user_email: str | None = None
    user_tel: str | None = None
    user_mobile: str | None = None
    user_avatar_url: str | None = None
    create_time: int = 0  # epoch milliseconds, set by the store when the user is first created

    @classmethod
    def from_camel(cls, item: dict[str, Any], create_time: int = 0) -> User:
        """From a request's (already validated) camelCase object; unknown keys are ignored."""
        get = item.get
        return cls(
            item["userId"],
            item["userName"],
            item["groupId"],
            item["groupName"],
            get("departId"),
            get("departName"),
            get("userEmail"),
            get("userTel"),
            get("userMobile"),
            get("userAvatarUrl"),
            create_time,
        )

    def to_api(self) -> dict[str, Any]:
        """GetUser's PascalCase shape. Absent optional fields are left out, as a null-skipping JSON writer would."""
        answer: dict[str, Any] = {}
        for attr, _, pascal in _FIELDS:
            value = getattr(self, attr)
            if value is not None:
                answer[pascal] = value
        answer["CreateTime"] = self.create_time
        return answer

    def to_camel(self) -> dict[str, Any]:
        """The request's camelCase shape, plus ``createTime`` (the admin API's view)."""
        answer: dict[str, Any] = {}
        for attr, camel, _ in _FIELDS:
            value = getattr(self, attr)
            if value is not None:
                answer[camel] = value
        answer["createTime"] = self.create_time
        return answer


class CapacityExceeded(Exception):
    """The batch would take the account past its licensed number of users; nothing was written."""

    def __init__(self, *, current: int, added: int, capacity: int) -> None:
        super().__init__(f"the account holds {current} users and may hold {capacity}: {added} new users do not fit")
        self.current = current
        self.added = added
        self.capacity = capacity


class Store(Protocol):
    """What the emulator needs from a place to keep users. Every method is safe to call from any thread."""

    def upsert(self, users: Sequence[User], *, capacity: int, now_ms: int) -> None:
        """Create or replace every user, atomically; a user keeps its first ``create_time``.

        Raises ``CapacityExceeded`` (and writes nothing) when the new users would not fit in ``capacity``.
        Within one batch, a later entry for the same ``user_id`` wins.
        """
        ...

    def delete(self, user_ids: Sequence[str]) -> int:
        """Delete the users that exist, atomically; returns how many did. Absent ids are not an error."""
        ...

    def get(self, user_id: str) -> User | None: ...

    def page(self, offset: int, limit: int) -> tuple[int, list[User]]:
        """The total count and one page of users in ``user_id`` (code point) order, read consistently."""
        ...

    def count(self) -> int: ...

    def all(self) -> list[User]: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


def _last_wins(users: Sequence[User]) -> dict[str, User]:
    return {user.user_id: user for user in users}


class MemoryStore:
    """Users in a dict under one lock; the sorted id list for paging is rebuilt only after the set of ids changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        self._sorted_ids: list[str] | None = []

    def upsert(self, users: Sequence[User], *, capacity: int, now_ms: int) -> None:
        batch = _last_wins(users)
        with self._lock:
            added = sum(1 for user_id in batch if user_id not in self._users)
            if len(self._users) + added > capacity:
                raise CapacityExceeded(current=len(self._users), added=added, capacity=capacity)
            for user_id, user in batch.items():
                existing = self._users.get(user_id)
                created = existing.create_time if existing is not None else now_ms
                self._users[user_id] = user if user.create_time == created else user._replace(create_time=created)
            if added:
                self._sorted_ids = None

    def delete(self, user_ids: Sequence[str]) -> int:
        with self._lock:
            deleted = 0
            for user_id in set(user_ids):
                if self._users.pop(user_id, None) is not None:
                    deleted += 1
            if deleted:
                self._sorted_ids = None
            return deleted

    def get(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def page(self, offset: int, limit: int) -> tuple[int, list[User]]:
        with self._lock:
            if self._sorted_ids is None:
                self._sorted_ids = sorted(self._users)
            ids = self._sorted_ids[offset : offset + limit]
            return len(self._users), [self._users[user_id] for user_id in ids]

    def count(self) -> int:
        with self._lock:
            return len(self._users)

    def all(self) -> list[User]:
        with self._lock:
            return [self._users[user_id] for user_id in sorted(self._users)]

    def clear(self) -> None:
        with self._lock:
            self._users.clear()
            self._sorted_ids = []

    def close(self) -> None:
        """Nothing to release."""


_COLUMNS = User._fields
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    group_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    depart_id TEXT,
    depart_name TEXT,
    user_email TEXT,
    user_tel TEXT,
    user_mobile TEXT,
    user_avatar_url TEXT,
    create_time INTEGER NOT NULL
)
"""
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM users"  # noqa: S608 - fixed column names, no input  # nosec B608
_UPSERT = (
    f"INSERT INTO users ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "  # noqa: S608 # nosec B608
    "ON CONFLICT(user_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS if name not in ("user_id", "create_time"))
)


class SqliteStore:
    """Users in one SQLite file (WAL), so they outlive a restart of the emulator.

    One connection serves every thread, under a lock: SQLite writes one transaction at a time anyway, and the lock
    makes the capacity check and the writes of a batch one step.
    """

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    @staticmethod
    def _user(row: tuple[Any, ...]) -> User:
        return User(*row)

    def upsert(self, users: Sequence[User], *, capacity: int, now_ms: int) -> None:
        batch = _last_wins(users)
        ids = list(batch)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self._db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
                existing = self._existing(ids)
                added = len(ids) - len(existing)
                if current + added > capacity:
                    raise CapacityExceeded(current=current, added=added, capacity=capacity)
                rows = [(*user[:-1], now_ms) for user in batch.values()]
                self._db.executemany(_UPSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            query = f"SELECT user_id FROM users WHERE user_id IN ({marks})"  # noqa: S608 - placeholders only  # nosec B608
            found.update(row[0] for row in self._db.execute(query, chunk))
        return found

    def delete(self, user_ids: Sequence[str]) -> int:
        unique = list(set(user_ids))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for user_id in unique:
                    deleted += self._db.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return deleted

    def get(self, user_id: str) -> User | None:
        with self._lock:
            row = self._db.execute(f"{_SELECT} WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else self._user(row)

    def page(self, offset: int, limit: int) -> tuple[int, list[User]]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            rows = self._db.execute(f"{_SELECT} ORDER BY user_id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return int(total), [self._user(row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def all(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(f"{_SELECT} ORDER BY user_id").fetchall()
        return [self._user(row) for row in rows]

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM users")

    def close(self) -> None:
        with self._lock:
            self._db.close()
