"""The SCIM resource store: one document per user, unique-attribute indexes and per-user write locks, all in the
object store under ``<output prefix>scim/``, each request O(1) in the size of the directory.

- ``scim/users/<id>.json``: the resource as the IdP wrote it, its version, times, and the CVC user it maps to.
- ``scim/index/<attribute>/<sha256>.json``: ``userName`` (ignoring case) and ``externalId`` -> id, so the IdPs'
  ``filter=userName eq "…"`` probe is one read, and uniqueness is a create-only write that only one request wins.
- ``scim/locks/<id>/<version>``: the write lock of one user, a create-only object per version.

**Why writes to one user are safe.** A writer reads the document (version n) and creates ``locks/<id>/<n+1>``
create-only; only one request can. It then reads the document again: if it moved on meanwhile (a writer that
finished and released between the two reads), it lets go and starts over. The holder sends the change to CVC, writes
the document (version n+1) and deletes its lock. Everyone else waits for the lock to go. A lock names when it
expires: the holder's deadline plus ``LOCK_MARGIN`` (the platform kills a request at its deadline, and every CVC call
of the request is bounded by it), so a lock left by a killed request is skipped by claiming ``n+2``; the holder
itself never writes the document once its lock could have expired. Writes to different users touch different keys:
they never contend.

**What a write costs the store** (each request is billed and waits 10-30 ms on S3): a create locks an id it made up
itself (one create-only PUT: nobody else can name the id yet, so there is no document to read before or after); an
update reads the document, claims the lock and reads the document again. Letting go is one delete of the locks the
holder knows can be left (its own, the ones it stepped over, the one of the writer whose document it found), no
listing: every other lock of the user is older than the document's version, which no claim ever goes back to.
Deleting the document (``remove``) starts the versions again, so that release still lists and deletes them all.

**Why indexes stay right.** An index entry pointing to a user is created or deleted only by a holder of that
user's lock: created (create-only) before the document names the value, deleted after it no longer does. So a
crash leaves at worst an entry the document does not confirm, which every reader checks and ignores, and which a
new claim of the value removes after taking that user's lock.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from cvcsync.adapters.objects import ObjectStore
from cvcsync.http_api.scim.errors import UNIQUENESS, ScimError, unavailable
from cvcsync.http_api.scim.mapping import index_key

log = logging.getLogger(__name__)

LOCK_MARGIN = 30.0  # seconds a lock outlives its holder's deadline: clock skew between instances, a slow delete
POLL_FIRST, POLL_MAX = 0.05, 0.4  # waiting for another request's lock: first pause, longest pause
WRITE_SAFETY = 5.0  # a holder does not write when less than this is left of its lock
JSON = "application/json"


@dataclass
class Document:
    """A stored user: the resource as sent (normalised), its version and times, and CVC's side of it."""

    id: str
    version: int
    created: str
    last_modified: str
    resource: dict[str, Any]
    cvc_user_id: str | None = None  # the CVC userId it maps to now
    in_cvc: bool = False  # whether CVC holds that user (active, and written)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "version": self.version,
                "created": self.created,
                "lastModified": self.last_modified,
                "resource": self.resource,
                "cvc": {"userId": self.cvc_user_id, "present": self.in_cvc},
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Document:
        data = orjson.loads(raw)
        cvc = data.get("cvc") or {}
        return cls(
            id=data["id"],
            version=int(data["version"]),
            created=data["created"],
            last_modified=data["lastModified"],
            resource=data["resource"],
            cvc_user_id=cvc.get("userId"),
            in_cvc=bool(cvc.get("present")),
        )


@dataclass
class Lock:
    """A held write lock: the version the holder writes, when it expires (wall clock), the document it found."""

    id: str
    version: int
    expires_at: float
    found: Document | None
    released: bool = field(default=False)
    stepped_over: tuple[int, ...] = ()  # versions of expired locks it claimed past (their holders are gone)
    removed: bool = False  # its holder deleted the document: the user's versions start again


def new_id() -> str:
    return uuid.uuid4().hex


class ResourceStore:
    """``prefix`` is the output prefix (``cvc-sync/``); ``clock`` wall seconds (locks cross instances)."""

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.root = f"{prefix}scim/"
        self._clock = clock
        self._sleep = sleep

    # -- keys --------------------------------------------------------------------------------------------------

    def _doc_key(self, user: str) -> str:
        return f"{self.root}users/{user}.json"

    def _lock_key(self, user: str, version: int) -> str:
        return f"{self.root}locks/{user}/{version:010d}"

    def _index_key(self, attribute: str, value: str) -> str:
        digest = hashlib.sha256(index_key(attribute, value).encode("utf-8")).hexdigest()
        return f"{self.root}index/{attribute}/{digest}.json"

    # -- reads -------------------------------------------------------------------------------------------------

    def get(self, user: str) -> Document | None:
        raw = self.store.get_bytes(self.bucket, self._doc_key(user))
        return None if raw is None else Document.from_json(raw)

    def find(self, attribute: str, value: str) -> Document | None:
        """The user whose ``attribute`` is ``value`` (one index read and one document read), or None."""
        raw = self.store.get_bytes(self.bucket, self._index_key(attribute, value))
        if raw is None:
            return None
        doc = self.get(str(orjson.loads(raw).get("id")))
        return doc if doc is not None and _holds(doc, attribute, value) else None

    def ids(self) -> Iterator[str]:
        """Every user id, in one stable order (the store lists keys in ascending order): for pages and scans."""
        base = f"{self.root}users/"
        for key in self.store.list_keys(self.bucket, base):
            if key.endswith(".json"):
                yield key[len(base) : -len(".json")]

    # -- the write lock ----------------------------------------------------------------------------------------

    def lock(self, user: str, *, expires_at: float, wait_until: float, fresh: bool = False) -> Lock:
        """Hold ``user``'s write lock until ``expires_at`` (wall clock); wait for another holder until
        ``wait_until``, then answer 503 (the IdP retries). ``fresh``: the caller made ``user`` up just now
        (``new_id``) and has not shown it to anyone."""
        if fresh:
            # A fresh id (122 random bits) that no other request can name before this one's index claims, which
            # come after this lock, or its answer: no document, no lock, nobody to finish a write between two
            # reads. So the two reads of the document are skipped; a claim that fails anyway (an id seen before)
            # takes the usual path below.
            body = orjson.dumps({"expiresAt": expires_at, "at": self._clock()})
            if self.store.put_bytes(self.bucket, self._lock_key(user, 1), body, content_type=JSON, if_absent=True):
                return Lock(user, 1, expires_at, None)
        pause = POLL_FIRST
        stepped_over: list[int] = []
        while True:
            found = self.get(user)
            version = (found.version if found else 0) + 1
            while True:
                body = orjson.dumps({"expiresAt": expires_at, "at": self._clock()})
                if self.store.put_bytes(
                    self.bucket, self._lock_key(user, version), body, content_type=JSON, if_absent=True
                ):
                    again = self.get(user)
                    if (again.version if again else 0) == (found.version if found else 0):
                        return Lock(user, version, expires_at, again, stepped_over=tuple(stepped_over))
                    self.store.delete(self.bucket, self._lock_key(user, version))  # a writer finished meanwhile
                    break
                held = self.store.get_bytes(self.bucket, self._lock_key(user, version))
                if held is None:
                    break  # released just now: read the document again
                if float(orjson.loads(held).get("expiresAt", 0)) < self._clock():
                    log.warning("scim lock expired: its holder is gone; taking the next", extra={"scimId": user})
                    stepped_over.append(version)
                    version += 1
                    continue
                break  # held: wait
            if self._clock() + pause > wait_until:
                raise unavailable("another request is changing this user right now; retry", retry_after=1)
            self._sleep(pause)
            pause = min(pause * 2, POLL_MAX)

    def release(self, lock: Lock) -> None:
        """Let go: this lock and the older (expired or finished) ones of the user that can be left over."""
        if lock.released:
            return
        lock.released = True
        if lock.removed:  # the versions start again from 1: every older lock of the user must go
            prefix = f"{self.root}locks/{lock.id}/"
            for key in list(self.store.list_keys(self.bucket, prefix)):
                if key[len(prefix) :].isdigit() and int(key[len(prefix) :]) <= lock.version:
                    self.store.delete(self.bucket, key)
            return
        # No listing: the locks that can be left at or below this one are known. This one; those it stepped over
        # (expired); and the one whose holder wrote the document it found (killed before it let go). An older one
        # is left only when two holders in a row were killed after writing, and never blocks a writer: a claim
        # starts past the document's version, which only grows until ``remove``, whose release lists them all.
        versions = {lock.version, *lock.stepped_over}
        if lock.found is not None and lock.found.version > 0:
            versions.add(lock.found.version)
        keys = [self._lock_key(lock.id, version) for version in sorted(versions)]
        if len(keys) == 1:
            self.store.delete(self.bucket, keys[0])
        else:
            self.store.delete_many(self.bucket, keys)  # one request

    def _fenced(self, lock: Lock) -> None:
        if lock.released or self._clock() > lock.expires_at - WRITE_SAFETY:
            raise unavailable("this request took too long to hold the user's lock; nothing was stored: retry")

    def write(self, lock: Lock, doc: Document) -> None:
        """Store ``doc`` as the lock's version (only its holder, only while the lock holds)."""
        self._fenced(lock)
        doc.version = lock.version
        self.store.put_bytes(self.bucket, self._doc_key(doc.id), doc.to_json(), content_type=JSON)

    def remove(self, lock: Lock) -> None:
        self._fenced(lock)
        lock.removed = True
        self.store.delete(self.bucket, self._doc_key(lock.id))

    # -- unique attributes -------------------------------------------------------------------------------------

    def claim(self, lock: Lock, attribute: str, value: str, *, wait_until: float) -> None:
        """Make ``value`` of ``attribute`` point to the locked user, or 409 ``uniqueness`` when another user holds
        it (or is being created with it right now)."""
        key = self._index_key(attribute, value)
        body = orjson.dumps({"id": lock.id, "attribute": attribute, "value": value})
        for _ in range(3):
            if self.store.put_bytes(self.bucket, key, body, content_type=JSON, if_absent=True):
                return
            raw = self.store.get_bytes(self.bucket, key)
            if raw is None:
                continue
            owner = str(orjson.loads(raw).get("id"))
            if owner == lock.id:
                return
            other = self.get(owner)
            if other is not None and _holds(other, attribute, value):
                raise _taken(attribute)
            # Not confirmed by its document: a creation in flight, or left by a request that died. Only a holder
            # of the owner's lock may remove the entry; waiting for that lock tells the two cases apart.
            held = self.lock(owner, expires_at=lock.expires_at, wait_until=wait_until)
            try:
                again = self.store.get_bytes(self.bucket, key)
                if again is not None and str(orjson.loads(again).get("id")) == owner:
                    if held.found is not None and _holds(held.found, attribute, value):
                        raise _taken(attribute)
                    self.store.delete(self.bucket, key)
            finally:
                self.release(held)
        raise unavailable(f"the {attribute} index is changing under this request; retry", retry_after=1)

    def unclaim(self, lock: Lock, attribute: str, value: str) -> None:
        """Remove ``value``'s entry when it points to the locked user (after the document stopped naming it)."""
        key = self._index_key(attribute, value)
        raw = self.store.get_bytes(self.bucket, key)
        if raw is not None and str(orjson.loads(raw).get("id")) == lock.id:
            self.store.delete(self.bucket, key)


def _holds(doc: Document, attribute: str, value: str) -> bool:
    current = doc.resource.get(attribute)
    return isinstance(current, str) and index_key(attribute, current) == index_key(attribute, value)


def _taken(attribute: str) -> ScimError:
    return ScimError(409, f"another user already has this {attribute}", scim_type=UNIQUENESS)
