"""``cvcsync serve``: the one ``HttpApi`` on waitress, on a loopback address, for manual use and tests.

Like the emulator's server (``emulator/server.py``): the socket is bound when the object is made, so ``url`` is
known at once (port 0 picks a free one); ``start()`` serves on a background thread, ``serve_forever()`` on the
calling one. waitress is imported only here, only when a server is made: the functions never need it.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from ..errors import ConfigurationError
from .app import HttpApi

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
READY_LINE = "cvcsync http api listening on {url}"


def require_loopback(host: str) -> None:
    """Refuse anything but a loopback address: this server is for one machine, with keys from its environment."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(f"cvcsync serve listens on loopback addresses only (127.0.0.1, ::1), not {host!r}")


class ApiServer:
    def __init__(self, app: HttpApi, *, host: str = DEFAULT_HOST, port: int = 0, threads: int = DEFAULT_THREADS):
        require_loopback(host)
        from waitress import wasyncore
        from waitress.server import MultiSocketServer, create_server

        self.app = app
        self._wasyncore = wasyncore
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="cvcsync-http",
            asyncore_use_poll=True,
            clear_untrusted_proxy_headers=True,
        )
        if isinstance(self._server, MultiSocketServer):
            self._map = self._server.map
            bound_host, bound_port = self._server.effective_listen[0][:2]
        else:
            self._map = self._server._map
            bound_host, bound_port = self._server.effective_host, self._server.effective_port
        self.port = int(bound_port)
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self.url = f"http://{shown}:{self.port}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wasyncore.loop(timeout=0.5, map=self._map, use_poll=True, count=1)
        finally:
            self._server.task_dispatcher.shutdown()
            self._wasyncore.close_all(self._map)

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self.serve_forever, name="cvcsync-http", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stopping.set()
        pull = getattr(self._server, "pull_trigger", None)
        if pull is not None:
            pull()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, threads: int = DEFAULT_THREADS) -> int:
    """Serve until SIGTERM or SIGINT; one readiness line with the real URL on stdout once listening."""
    try:
        server = ApiServer(HttpApi(), host=host, port=port, threads=threads)
    except ImportError as exc:
        raise ConfigurationError(f"cvcsync serve needs waitress (pip install 'cvcsync[emulator]'): {exc}") from exc
    except OSError as exc:
        print(f"cvcsync serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(READY_LINE.format(url=server.url), flush=True)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
