"""A real HTTP server on loopback that answers from a script: for what the emulator must never do on purpose.

It serves canned answers (HTML instead of JSON, a 503 then success) and records every request it got, so tests can
see what the client really sent (distinct nonces per attempt, say) over a real socket.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class Recorded:
    method: str
    query: dict[str, str]
    form: dict[str, str]
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ScriptedServer:
    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = raw.decode("utf-8", "replace")
                with outer._lock:
                    outer.requests.append(
                        Recorded(
                            "POST",
                            dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)),
                            dict(parse_qsl(body, keep_blank_values=True)),
                            urlsplit(self.path).path,
                            {k.lower(): v for k, v in self.headers.items()},
                            raw,
                        )
                    )
                    index = min(len(outer.requests), len(outer.answers)) - 1
                    answer = outer.answers[index]
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[ScriptedServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
