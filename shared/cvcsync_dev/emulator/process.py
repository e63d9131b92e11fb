"""The emulator as a real subprocess: started on a free port, waited for, driven over its admin API.

``start_emulator()`` launches ``python -m cvcsync_dev.emulator --port 0 --admin --access-key ...`` and waits for its
readiness line (with a deadline, no sleeping). Tests, benchmarks and the demo use it to talk to exactly what a
user would run, in a process of its own (so a benchmark's CPU figures are the client's alone).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from cvcsync_dev.emulator.faults import JSON_NAMES

READY_PREFIX = "cvcsync emulator listening on "


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then wait; kill only if it does not stop in time. Returns the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


class EmulatorStartError(RuntimeError):
    pass


@dataclass
class EmulatorProcess:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    sts_key_id: str = ""
    sts_key_secret: str = field(default="", repr=False)
    sts_token: str = field(default="", repr=False)
    session: requests.Session = field(default_factory=requests.Session)
    _stderr_text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.session.trust_env = False

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def admin(self, method: str, resource: str, payload: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, f"{self.url}/_emulator/{resource}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **settings: float) -> dict[str, Any]:
        """Replace the fault settings (snake_case names: latency_ms, throttle_rate, error_rate, drop_rate, seed...)."""
        return dict(self.admin("PUT", "faults", {JSON_NAMES[name]: value for name, value in settings.items()}))

    def set_limits(self, *, max_concurrency: int | None = None, max_qps: float | None = None) -> dict[str, Any]:
        """Replace the flow-control limits (None: no limit) and zero their counters."""
        return dict(self.admin("PUT", "limits", {"maxConcurrency": max_concurrency, "maxQps": max_qps}))

    def limits(self) -> dict[str, Any]:
        """The limits and their counters: calls admitted, refused, in flight, at most in flight at once."""
        return dict(self.admin("GET", "limits"))

    def reset(self) -> None:
        self.admin("POST", "reset")

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def users(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "users"))

    def set_key(self, key_id: str, *, disabled: bool | None = None, denied: bool | None = None) -> dict[str, Any]:
        payload = {name: value for name, value in (("disabled", disabled), ("denied", denied)) if value is not None}
        return dict(self.admin("PUT", f"keys/{key_id}", payload))

    def journal(self, enabled: bool | None = None) -> list[dict[str, Any]]:
        """The write journal's entries; ``enabled`` switches it on or off first (and empties it)."""
        if enabled is not None:
            self.admin("PUT", "journal", {"enabled": enabled})
        return list(self.admin("GET", "journal")["entries"])

    def set_capacity(self, capacity: int) -> None:
        self.admin("PUT", "capacity", {"capacity": capacity})

    def stderr(self) -> str:
        """What the emulator wrote to stderr (kept after ``stop()``, which removes the file)."""
        if self.stderr_path.exists():
            return self.stderr_path.read_text(errors="replace")
        return self._stderr_text

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; kill only if it does not stop in time. Returns the exit status."""
        self.session.close()
        stop_process(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.stderr_path.exists():
            self._stderr_text = self.stderr_path.read_text(errors="replace")
            self.stderr_path.unlink()
        return self.process.returncode


def _read_ready_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    assert process.stdout is not None
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmulatorStartError("the emulator did not say it was listening in time")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise EmulatorStartError(f"the emulator exited with status {process.wait()} before listening")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def start_emulator(
    *args: str,
    admin: bool = True,
    keys: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> EmulatorProcess:
    """Launch the emulator on a free port with ``keys`` (``ID:SECRET[:TOKEN]``) and wait until it listens.

    ``env`` replaces the child's environment (to test ``CVC_EMULATOR_ACCESS_KEYS``); ``keys=()`` passes no
    ``--access-key`` at all. The first plain key and the first STS key are exposed on the result.
    """
    command = [sys.executable, "-m", "cvcsync_dev.emulator", "--port", "0"]
    if admin:
        command.append("--admin")
    for key in keys:
        command += ["--access-key", key]
    command += list(args)
    stderr_file = tempfile.NamedTemporaryFile(prefix="cvc-emulator-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, arguments from the caller
        command,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        stdin=subprocess.DEVNULL,
        env=None if env is None else dict(env),
    )
    stderr_file.close()
    stderr_path = Path(stderr_file.name)
    try:
        line = _read_ready_line(process, time.monotonic() + timeout)
    except EmulatorStartError as exc:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise EmulatorStartError(f"{exc}; its stderr:\n{stderr_path.read_text(errors='replace')}") from None
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        raise EmulatorStartError(f"unexpected first line from the emulator: {line!r}")
    started = EmulatorProcess(process=process, url=line[len(READY_PREFIX) :].strip(), stderr_path=stderr_path)
    for key in keys:
        parts = key.split(":", 2)
        if len(parts) == 2 and not started.access_key_id:
            started.access_key_id, started.access_key_secret = parts
        elif len(parts) == 3 and not started.sts_key_id:
            started.sts_key_id, started.sts_key_secret, started.sts_token = parts
    return started
