"""The emulator's admin API under ``/_emulator/``: what tests use to steer it and to look inside.

``faults`` (GET, PUT), ``limits`` (GET, PUT ``{"maxConcurrency": n, "maxQps": r}``), ``reset`` (POST), ``stats``
(GET), ``journal`` (GET, PUT ``{"enabled": bool}``), ``users`` (GET), ``capacity`` (GET, PUT ``{"capacity": n}``)
and ``keys/<id>`` (PUT ``{"disabled": bool, "denied": bool}``).
It exists only when the emulator is started with ``admin`` on; the real service has nothing like it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from cvcsync_dev.emulator.faults import FaultSettings
from cvcsync_dev.emulator.gateway import Response, json_response
from cvcsync_dev.emulator.limits import LimitSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from cvcsync_dev.emulator.app import EmulatorApp

ADMIN_PREFIX = "/_emulator/"


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminApi:
    """Answers the admin requests of one emulator."""

    def __init__(self, emulator: EmulatorApp) -> None:
        self._emulator = emulator

    def __call__(self, environ: WSGIEnvironment, path: str) -> Response:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        resource = path[len(ADMIN_PREFIX) :].rstrip("/")
        try:
            payload = _payload(environ) if method in ("PUT", "POST") else {}
            return self._route(method, resource, payload)
        except AdminError as exc:
            return json_response(exc.status, {"error": exc.message})

    def _route(self, method: str, resource: str, payload: dict[str, Any]) -> Response:
        emulator = self._emulator
        if resource == "faults":
            if method == "PUT":
                try:
                    emulator.faults.configure(FaultSettings.from_json(payload))
                except (TypeError, ValueError) as exc:
                    raise AdminError(400, str(exc)) from None
            elif method != "GET":
                raise AdminError(405, "use GET or PUT")
            return json_response(200, emulator.faults.settings.to_json())
        if resource == "limits":
            if method == "PUT":
                try:
                    emulator.limits.configure(LimitSettings.from_json(payload))
                except (TypeError, ValueError) as exc:
                    raise AdminError(400, str(exc)) from None
            elif method != "GET":
                raise AdminError(405, "use GET or PUT")
            return json_response(200, emulator.limits.snapshot())
        if resource == "reset":
            if method != "POST":
                raise AdminError(405, "use POST")
            emulator.reset()
            return json_response(200, {"reset": True})
        if resource == "stats":
            if method != "GET":
                raise AdminError(405, "use GET")
            return json_response(200, emulator.stats.snapshot(emulator.store.count()))
        if resource == "journal":
            if method == "PUT":
                enabled = payload.get("enabled")
                if not isinstance(enabled, bool):
                    raise AdminError(400, "enabled must be true or false")
                emulator.journal.switch(enabled)
            elif method != "GET":
                raise AdminError(405, "use GET or PUT")
            return json_response(200, {"enabled": emulator.journal.enabled, "entries": emulator.journal.entries()})
        if resource == "users":
            if method != "GET":
                raise AdminError(405, "use GET")
            return json_response(200, [user.to_camel() for user in emulator.store.all()])
        if resource == "capacity":
            if method == "PUT":
                capacity = payload.get("capacity")
                if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
                    raise AdminError(400, "capacity must be a whole number, at least 0")
                emulator.actions.capacity = capacity
            elif method != "GET":
                raise AdminError(405, "use GET or PUT")
            return json_response(200, {"capacity": emulator.actions.capacity})
        if resource.startswith("keys/"):
            if method != "PUT":
                raise AdminError(405, "use PUT")
            flags: dict[str, bool] = {}
            for name in ("disabled", "denied"):
                if name in payload:
                    if not isinstance(payload[name], bool):
                        raise AdminError(400, f"{name} must be true or false")
                    flags[name] = payload[name]
            try:
                key = emulator.set_key(resource[len("keys/") :], **flags)
            except KeyError:
                raise AdminError(404, "no such access key") from None
            return json_response(200, {"id": key.id, "disabled": key.disabled, "denied": key.denied})
        raise AdminError(404, "no such admin resource")


def _payload(environ: WSGIEnvironment) -> dict[str, Any]:
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
        raise AdminError(400, "the body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise AdminError(400, "the body must be a JSON object")
    return payload
