"""CVC in this process, for unit tests: the emulator's WSGI app behind a ``requests`` adapter, a real ``CvcClient``.

No socket is opened. ``unavailable`` names actions the gateway answers ``InvalidApi.NotFound`` for (an account or
region without ListUsers, say); ``refuse`` names user ids whose CreateUser CVC refuses (a business error).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import CvcSettings
from cvcsync_dev.emulator import EmulatorApp, FaultSettings
from cvcsync_dev.emulator.keys import AccessKey

if TYPE_CHECKING:
    from cvcsync.platform.context import SyncContext

ENDPOINT = "http://cvc.inprocess"
KEY = AccessKey("inprocess-key", "inprocess-secret-do-not-use")


class WsgiAdapter(BaseAdapter):
    """Hands each request to a WSGI app and turns its answer into a ``requests.Response``."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(request.url or "")
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        environ = {
            "REQUEST_METHOD": request.method or "POST",
            "PATH_INFO": url.path or "/",
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "SERVER_NAME": url.hostname or "localhost",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        content = b"".join(self.app(environ, start_response))
        response = requests.Response()
        response.status_code = int(seen["status"].split()[0])
        response.headers = CaseInsensitiveDict(dict(seen["headers"]))
        response._content = content
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        return None


@dataclass
class Gateway:
    """The emulator behind a gateway that can lack actions (``unavailable``) or refuse users (``refuse``)."""

    app: EmulatorApp
    unavailable: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        action = query.get("Action")
        if action in self.unavailable:
            body = orjson.dumps({"RequestId": "r-404", "Code": "InvalidApi.NotFound", "Message": "api not found"})
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]
        if action == "CreateUser" and self.refuse:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            form = dict(parse_qsl(raw.decode()))
            ids = {u.get("userId") for u in orjson.loads(form.get("UserInfo", "[]"))}
            environ["wsgi.input"] = io.BytesIO(raw)
            if ids & self.refuse:
                body = orjson.dumps({"RequestId": "r-biz", "Success": False, "ErrorCode": 10001, "Message": "refused"})
                start_response("200 OK", [("Content-Type", "application/json")])
                return [body]
        return self.app(environ, start_response)


@dataclass
class InProcessCvc:
    gateway: Gateway
    client: CvcClient

    @property
    def app(self) -> EmulatorApp:
        return self.gateway.app

    @property
    def refuse(self) -> set[str]:
        return self.gateway.refuse

    def users(self) -> dict[str, dict[str, Any]]:
        return {user.to_camel()["userId"]: user.to_camel() for user in self.app.store.all()}

    def set_faults(self, **settings: Any) -> None:
        self.app.faults.configure(FaultSettings(**settings))


def inprocess_cvc(*, batch_size: int = 100, max_attempts: int = 1, unavailable: Iterable[str] = ()) -> InProcessCvc:
    gateway = Gateway(EmulatorApp([KEY]), set(unavailable))
    session = requests.Session()
    session.mount(ENDPOINT, WsgiAdapter(gateway))
    settings = CvcSettings(endpoint=ENDPOINT, batch_size=batch_size, max_attempts=max_attempts)
    client = CvcClient(Credentials(KEY.id, KEY.secret), settings=settings, session=session, sleep=lambda s: None)
    return InProcessCvc(gateway, client)


def memory_context(store: Any, cvc: InProcessCvc, bucket: str = "state") -> SyncContext:
    """A ``SyncContext`` on ``store`` (the memory object store) with ``cvc`` in this process: the state in
    ``bucket``, one call at a time, dead letters in memory."""
    from cvcsync.config import SyncSettings
    from cvcsync.outputs.deadletters import MemoryDeadLetterSink
    from cvcsync.platform.context import SyncContext
    from cvcsync.platform.runtime import Invocation

    return SyncContext(
        settings=SyncSettings(state_bucket=bucket, concurrency=1),
        cvc=cvc.client,
        store=store,
        output_bucket=bucket,
        sink=MemoryDeadLetterSink(),
        invocation=Invocation("local", "req-test", None),
    )
