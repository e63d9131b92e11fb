"""scim2-tester (a SCIM conformance suite written by others: RFC 7643/7644 discovery, CRUD, PATCH) against a
running ``cvcsync serve``: one ``(check title, resource type, status, reason)`` row per check it ran.

``cvcsync serve`` runs as a real subprocess on a free loopback port, with the emulator behind it as CVC and moto as
S3, like ``tests/integration/test_http_cli.py``'s server; the client is scim2-client's httpx2 engine, so every
check goes over HTTP as an IdP's request would.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

READY = "cvcsync http api listening on "


@dataclass(frozen=True)
class Check:
    title: str
    resource_type: str | None
    status: str
    reason: str


def ready_url(process: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """The URL `cvcsync serve` prints on its readiness line (waited for, never slept on)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "cvcsync serve did not say it was listening in time"
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, f"cvcsync serve exited with {process.wait()}"
                buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    assert line.startswith(READY), line
    return line[len(READY) :]


@contextmanager
def served(env: Mapping[str, str]) -> Iterator[str]:
    """``cvcsync serve --port 0`` with ``env`` over this process's environment; yields its URL; stops it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cvcsync", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        yield ready_url(process)
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def run_checks(url: str, token: str) -> list[Check]:
    """Every check scim2-tester runs against ``url``/scim/v2, as rows."""
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import check_server

    with Client(base_url=f"{url}/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        client = SyncSCIMClient(http)
        results = check_server(client, raise_exceptions=False)
    return [
        Check(result.title, getattr(result, "resource_type", None), result.status.name, str(result.reason or ""))
        for result in results
    ]
