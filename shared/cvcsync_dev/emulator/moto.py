"""moto in server mode, the local S3 and SQS for tests and the demo: a real subprocess on a free loopback port.

moto 5's server binds port 0 (werkzeug picks a free port and prints it: ``* Running on http://127.0.0.1:N``), so
there is no race with another process choosing the same port. ``MOTO_PORT`` is then 0 inside the server, which
only Lambda, Batch, CloudFormation and Step Functions use to call back into moto; S3 and SQS do not.
Readiness: the announced address, then an HTTP answer from ``/moto-api/``, each within a deadline.

Clients carry dummy credentials and an explicit endpoint, so nothing a test does can reach real AWS.
"""

from __future__ import annotations

import collections
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import IO, Any

from cvcsync_dev.emulator.process import stop_process

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105
    "AWS_SESSION_TOKEN": "testing",  # nosec B105
    "AWS_DEFAULT_REGION": "us-east-1",
}
REGION = "us-east-1"
_RUNNING = re.compile(rb"Running on (http://127\.0\.0\.1:\d+)")
# No proxy: a proxy from the environment must never see (or forward) a loopback test request.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoStartError(RuntimeError):
    pass


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    url: str
    output: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=200))

    def _client(self, service: str, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy key  # nosec B106
            aws_session_token="testing",  # noqa: S106 - moto's dummy token
            config=Config(retries={"mode": "standard", "max_attempts": 2}, proxies={}, **config),
        )

    def s3_client(self, **config: Any) -> Any:
        return self._client("s3", **config)

    def sqs_client(self, **config: Any) -> Any:
        return self._client("sqs", **config)

    def reset(self) -> None:
        """Forget every bucket, object and queue (moto's ``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")  # noqa: S310 - our own http://127.0.0.1 URL
        with _OPENER.open(request, timeout=10) as response:
            response.read()

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; kill only if it does not stop in time. Returns the exit status."""
        return stop_process(self.process, timeout)


def _drain(stream: IO[bytes], into: collections.deque[bytes]) -> None:
    """Keep reading moto's output (one line per request) so a full pipe never blocks it; keep the tail."""
    for line in iter(stream.readline, b""):
        into.append(line)
    stream.close()


def _await_address(process: subprocess.Popen[bytes], seen: collections.deque[bytes], deadline: float) -> str:
    assert process.stdout is not None
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            match = _RUNNING.search(buffer)
            if match:
                seen.append(buffer)
                return match.group(1).decode()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MotoStartError(f"moto did not announce its address in time; it said:\n{buffer.decode()}")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise MotoStartError(f"moto exited with status {process.wait()}; it said:\n{buffer.decode()}")
            buffer += chunk


def _await_http(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    pause = 0.01
    while True:
        try:
            with _OPENER.open(f"{url}/moto-api/", timeout=max(0.1, deadline - time.monotonic())) as response:
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if process.poll() is not None:
                raise MotoStartError(f"moto exited with status {process.returncode}") from exc
            if time.monotonic() + pause > deadline:
                raise MotoStartError(f"moto at {url} did not answer in time") from exc
            time.sleep(pause)  # a short backoff between polls, bounded by the deadline
            pause = min(pause * 2, 0.2)


def start_moto(timeout: float = 30.0) -> MotoServer:
    """``python -m moto.server -H 127.0.0.1 -p 0`` with dummy credentials, waited for within ``timeout``."""
    deadline = time.monotonic() + timeout
    env = {**os.environ, **DUMMY_CREDENTIALS, "PYTHONUNBUFFERED": "1"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    server = MotoServer(process=process, url="")
    try:
        server.url = _await_address(process, server.output, deadline)
        assert process.stdout is not None
        threading.Thread(target=_drain, args=(process.stdout, server.output), daemon=True).start()
        _await_http(server.url, process, deadline)
    except BaseException:
        server.stop()
        raise
    return server
