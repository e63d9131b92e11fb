"""A WSGI app on waitress in a background thread or the foreground: the emulator's and ``cvcsync serve``'s server.

The socket is bound when the object is made, so ``url`` is known at once (port 0 picks a free port); ``start()``
(or ``with``) serves on a background thread, ``serve_forever()`` on the calling one, ``stop()`` ends either.
waitress is imported here only, and only when a server is made: the functions never need it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any


class WsgiServer:
    def __init__(self, app: Callable[..., Any], *, host: str, port: int, threads: int, ident: str, **options: Any):
        from waitress import wasyncore
        from waitress.server import MultiSocketServer, create_server

        self.app = app
        self._ident = ident
        self._wasyncore = wasyncore
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident=ident,
            asyncore_use_poll=True,
            clear_untrusted_proxy_headers=True,
            **options,
        )
        if isinstance(self._server, MultiSocketServer):
            self._map = self._server.map
            bound_host, bound_port = self._server.effective_listen[0][:2]
        else:
            self._map = self._server._map
            bound_host, bound_port = self._server.effective_host, self._server.effective_port
        self.host: str = str(bound_host)
        self.port: int = int(bound_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve on the calling thread until ``stop()``, then shut the worker threads and sockets down."""
        try:
            while not self._stopping.is_set():
                self._wasyncore.loop(timeout=0.5, map=self._map, use_poll=True, count=1)
        finally:
            self._server.task_dispatcher.shutdown()
            self._wasyncore.close_all(self._map)

    def start(self) -> WsgiServer:
        self._thread = threading.Thread(target=self.serve_forever, name=self._ident, daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the serving loop to end; safe to call from a signal handler."""
        self._stopping.set()
        pull = getattr(self._server, "pull_trigger", None)
        if pull is not None:
            pull()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> WsgiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def serve_until_signalled(self, ready_line: str) -> None:
        """Print ``ready_line`` (scripts wait for it), then serve until SIGTERM or SIGINT."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            print(ready_line, flush=True)
            self.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
