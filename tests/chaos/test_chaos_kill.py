"""The upload function's process SIGKILLed at random points of its apply, and invoked again with the same event, as
Function Compute and Lambda retry a failed asynchronous invocation. After every kill the state claims nothing CVC
does not hold and knows everything CVC may hold; in the end CVC and the state are the export, and no user the
export did not change was ever written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.chaos import USERS, Results, cvc_directory, evolve, export_csv, hashes, read_state, snapshot, write_counts
from support.events import load_event

from .conftest import STATE, UPLOADS

KEY = "users/2024-05-01/users.csv"  # the key of events/fc/oss-putobject.json
KILLS_PER_EXPORT = 2
ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from cvcsync.platform.runtime import local_fc_context
from cvcsync.platform.triggers.upload import handle
creds = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
handle(sys.stdin.buffer.read(), local_fc_context("chaos-kill", timeout=600, credentials=creds))
"""


def invoke(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The handler in a fresh interpreter, its log appended to ``log`` (a pipe could fill up and stall it)."""
    child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT / "shared")}
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=child_env,
        )
    assert process.stdin is not None
    process.stdin.write(load_event("fc/oss-putobject.json", raw=True))
    process.stdin.close()
    return process


def writes_so_far(emulator: Any) -> int:
    calls = emulator.stats()["calls"]
    return int(calls.get("CreateUser", 0)) + int(calls.get("DeleteUser", 0))


def kill_after(process: subprocess.Popen[bytes], emulator: Any, writes: int) -> bool:
    """SIGKILL once CVC has seen ``writes`` more write calls; False when the run finished first."""
    start = writes_so_far(emulator)
    while process.poll() is None:
        if writes_so_far(emulator) - start >= writes:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            return True
        time.sleep(0.01)
    return False


def check_state_against_cvc(moto: Any, env: dict[str, str]) -> tuple[int, int]:
    """The invariant at any instant: certain users hold exactly their content in CVC, and every user CVC holds
    is known to the state (certain or uncertain). Returns (certain, uncertain) counts."""
    state = read_state(moto.s3_client(), STATE)
    directory = cvc_directory(env)
    for user_id, claimed in state.certain.items():
        assert directory.get(user_id) == claimed, f"the state claims {user_id} as CVC does not hold it"
    unknown = set(directory) - set(state.certain) - state.uncertain
    assert not unknown, f"CVC holds users the state forgot: {sorted(unknown)[:5]}"
    return len(state.certain), len(state.uncertain)


def sync_with_kills(
    moto: Any, emulator: Any, env: dict[str, str], body: bytes, rng: random.Random, log: Path
) -> dict[str, Any]:
    moto.s3_client().put_object(Bucket=UPLOADS, Key=KEY, Body=body)
    kills: list[dict[str, int]] = []
    for _ in range(KILLS_PER_EXPORT):
        process = invoke(env, log)
        if not kill_after(process, emulator, rng.randint(1, 12)):
            assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
            break
        certain, uncertain = check_state_against_cvc(moto, env)
        kills.append({"certain": certain, "uncertain": uncertain})
    else:
        process = invoke(env, log)  # the platform's last retry: this one runs to the end
        assert process.wait(600) == 0, log.read_text(errors="replace")[-3000:]
    return {"kills": len(kills), "afterKills": kills}


def test_killed_applies_restarted_by_the_platform_converge_without_harmful_writes(
    chaos_env: dict[str, str], moto: Any, emulator: Any, chaos_results: Results, tmp_path: Path
) -> None:
    n = min(USERS, 2000)  # a subprocess per attempt: the size that lets every kill land mid-apply
    scenario = chaos_results.start("apply SIGKILLed at random points, restarted", n)
    rng = random.Random(7)
    env = {**chaos_env, "CVC_BATCH_SIZE": "20", "CVCSYNC_CONCURRENCY": "2"}
    emulator.set_faults(latency_ms=10, jitter_ms=10, seed=11)  # slow enough that the kills land mid-apply

    day1 = snapshot(range(n))
    first = sync_with_kills(moto, emulator, env, export_csv(day1), rng, tmp_path / "runs.log")
    assert check_state_against_cvc(moto, env) == (n, 0)
    assert cvc_directory(env) == hashes(day1)

    day2, changed = evolve(day1, n)
    touched = set().union(*changed.values())
    emulator.journal(enabled=True)
    second = sync_with_kills(moto, emulator, env, export_csv(day2), rng, tmp_path / "runs.log")
    journal = emulator.journal()
    emulator.set_faults()

    assert first["kills"] + second["kills"] >= 2  # the kills really happened mid-run
    want = hashes(day2)
    assert cvc_directory(env) == want
    state = read_state(moto.s3_client(), STATE)
    assert state.certain == want and state.uncertain == set() and state.in_flight_lists == 0
    # Nothing applied twice in a harmful way: only the users the export changed were written, each at most once
    # per attempt (a restart re-sends only what its predecessor may not have finished).
    counts = write_counts(journal)
    assert set(counts) <= touched
    assert max(counts.values()) <= second["kills"] + 1
    scenario.succeeded(
        {
            "kills": first["kills"] + second["kills"],
            "usersChangedOnDay2": len(touched),
            "writesOnDay2": sum(counts.values()),
            "usersWrittenTwiceOrMore": sum(1 for c in counts.values() if c > 1),
            "maxUncertainAfterAKill": max(
                (k["uncertain"] for k in first["afterKills"] + second["afterKills"]), default=0
            ),
        }
    )
