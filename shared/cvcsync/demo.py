"""``make demo``: start a local CVC emulator and drive it with the ``cvcsync`` command, narrating each step.

Everything runs on loopback with the documented demo key; nothing outside this machine is touched. The emulator
runs in this process; each ``cvcsync`` step is a real subprocess, exactly the command a user would type.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO_KEY_ID = "demo-key"
DEMO_KEY_SECRET = "demo-secret-not-for-production"  # noqa: S105 - a documented key valid only in the emulator
EVENTS = Path(__file__).resolve().parents[2] / "events" / "users"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _cvcsync(env: dict[str, str], *args: str) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ cvcsync {shown}", flush=True)
    result = subprocess.run([sys.executable, "-m", "cvcsync", *args], env=env, check=False)  # noqa: S603
    if result.returncode not in (0, 3):
        print(f"(exit code {result.returncode})", flush=True)
    return result.returncode


def main() -> int:
    from .emulator import EmulatorApp, EmulatorServer
    from .emulator.keys import AccessKey

    app = EmulatorApp([AccessKey(DEMO_KEY_ID, DEMO_KEY_SECRET)], capacity=50)
    with EmulatorServer(app) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "CVC_"))},
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_KEY_SECRET,
            "CVC_ENDPOINT": server.url,
        }
        print(f"A local CVC emulator is listening on {server.url} (demo key {DEMO_KEY_ID}; licensed for 50 users).")
        _step("1. The licence: GetAccountInfo")
        _cvcsync(env, "account")
        _step("2. Check an HR export without calling CVC (a dry run)")
        _cvcsync(env, "create", "--dry-run", str(EVENTS / "demo-users.csv"))
        _step("3. Upsert it: one batched, signed CreateUser call")
        _cvcsync(env, "create", str(EVENTS / "demo-users.csv"))
        _step("4. A messier file: bad rows are named (line, field, why) and the good ones still land")
        _cvcsync(env, "create", str(EVENTS / "demo-users-with-errors.ndjson"))
        _step("5. One user, as CVC answers it (GetUser, PascalCase turned back into the document's fields)")
        _cvcsync(env, "get", "u-1001")
        _step("6. Deleting: first see what would go, then do it")
        _cvcsync(env, "delete", "--dry-run", "u-1005", "u-1006")
        _cvcsync(env, "delete", "u-1005", "u-1006")
        _step("7. The whole directory now (ListUsers, every page)")
        _cvcsync(env, "list")
        _step("8. A wrong secret is refused by the gateway, and the secret is not printed")
        _cvcsync({**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-the-secret"}, "account")
    print("\nThe emulator has stopped. Next: `make test`, and docs/architecture.md for how it fits together.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
