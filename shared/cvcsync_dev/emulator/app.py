"""The emulator's WSGI application: CVC's API gateway and its five user actions, plus an optional admin API.

A request goes through the gateway's checks (``gateway``: parameters, action and version, access key, timestamp,
signature, nonce, RAM permission); then the account's flow control (``limits``); then injected faults
(``faults``); then the action (``actions``). This module puts those steps together and holds what they share: the
access keys, the store, the nonces, the counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cvcsync_dev.emulator import codes
from cvcsync_dev.emulator.actions import UserActions
from cvcsync_dev.emulator.admin import ADMIN_PREFIX, AdminApi
from cvcsync_dev.emulator.faults import FaultInjector, FaultKind, FaultSettings
from cvcsync_dev.emulator.gateway import DroppedAnswer, answer, authenticate, read_request
from cvcsync_dev.emulator.journal import Journal, Stats
from cvcsync_dev.emulator.keys import AccessKey
from cvcsync_dev.emulator.limits import FlowControl, LimitSettings
from cvcsync_dev.emulator.nonces import NonceCache
from cvcsync_dev.emulator.store import MemoryStore, Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEFAULT_CAPACITY = 100_000
DEFAULT_MAX_BATCH = 100
DEFAULT_CONCURRENT_MAX = 100

_JSON_TYPE = "application/json;charset=utf-8"


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
        limits: LimitSettings | None = None,
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
        self.faults = FaultInjector(faults)
        self._initial_limits = limits or LimitSettings()
        self.limits = FlowControl(self._initial_limits, clock=clock)
        self.admin = admin
        self.nonces = NonceCache()
        self.stats = Stats()
        self.journal = Journal()
        self.actions = UserActions(
            self.store,
            capacity=capacity,
            max_batch=max_batch,
            concurrent_max=concurrent_max,
            stats=self.stats,
            clock=clock,
        )
        self._admin_api = AdminApi(self)
        self._clock = clock
        self._sleep = sleep

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if self.admin and path.startswith(ADMIN_PREFIX):
            response = self._admin_api(environ, path)
        else:
            response = answer(lambda: self._handle(environ, path))
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

    def _handle(self, environ: WSGIEnvironment, path: str) -> dict[str, Any]:
        method, pairs = read_request(environ, path)
        params = dict(pairs)
        action = authenticate(
            method,
            pairs,
            params,
            actions=self.actions.by_name,
            keys=self._keys,
            nonces=self.nonces,
            clock=self._clock,
        )
        return self._perform(action, params)

    def _perform(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """Steps 8 to 10: the account's flow control, injected faults, then the action itself."""
        self.stats.call(action)
        # 8. Flow control: the call holds its place in the account's limits until it is answered.
        try:
            place = self.limits.enter()
        except codes.GatewayError:
            self.journal.record(action, params, "throttled")
            raise
        try:
            return self._fault_then_act(action, params)
        finally:
            self.limits.leave(place)

    def _fault_then_act(self, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        # 9. Injected faults.
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

        # 10. The action. A dropped connection loses the answer of an action that did happen: the worst case
        # for a client, which cannot tell whether its call took effect.
        result = self.actions.perform(action, params)
        if decision.kind is FaultKind.DROP:
            self.stats.fault("dropped")
            self.journal.record(action, params, "dropped")
            raise DroppedAnswer(result)
        self.journal.record(action, params, "ok" if result.get("Success", True) else "refused")
        return result

    def reset(self) -> None:
        """Back to the state at start: no users, nonces or stats, faults off, keys, capacity and limits as
        configured."""
        self.store.clear()
        self.nonces.clear()
        self.stats.clear()
        self.journal.switch(False)
        self.faults.configure(FaultSettings())
        self.limits.configure(self._initial_limits)
        with self._keys_lock:
            self._keys = {key_id: replace(key) for key_id, key in self._initial_keys.items()}
        self.actions.capacity = self._initial_capacity

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
