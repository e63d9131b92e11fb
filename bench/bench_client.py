"""Client benchmark: this client next to the official Alibaba Cloud SDK, against the emulator, in one run.

Prints import time (fresh processes), per-call wall time and CPU time (GetAccountInfo, sequential), and users/s
for creating 10k users: this client batched (CreateUser, 100 per call) vs the official SDK one user per call, the
naive loop an integrator would write. The emulator runs in a separate process so the CPU figures are the client's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from cvcsync.adapters.credentials import Credentials
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import CvcSettings
from cvcsync_dev.emulator.process import start_emulator
from figures import write_figures

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"

OURS_IMPORT = "import cvcsync.adapters.cvc"
SDK_IMPORT = (
    "from aliyunsdkcore.client import AcsClient\n"
    "from aliyunsdkaliyuncvc.request.v20191030.GetAccountInfoRequest import GetAccountInfoRequest"
)


def import_seconds(statement: str, runs: int) -> float:
    """Median wall time of the import alone, each in a fresh interpreter (what a cold start pays)."""
    code = f"import time\nt=time.perf_counter()\n{statement}\nprint(time.perf_counter()-t)"
    samples = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(samples)


def per_call(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) per call, after a short warm-up."""
    for _ in range(10):
        call()
    walls: list[float] = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / calls
    return statistics.median(walls) * 1000, cpu * 1000


def sdk_client(url: str) -> tuple[Any, Callable[[Any], Any]]:
    from aliyunsdkcore.client import AcsClient

    client = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou")
    host = url.removeprefix("http://")

    def send(request: Any) -> Any:
        request.set_endpoint(host)
        request.set_protocol_type("http")
        return client.do_action_with_exception(request)

    return client, send


def users(n: int, prefix: str) -> list[dict[str, str]]:
    return [
        {
            "userId": f"{prefix}-{i:06d}",
            "userName": f"用户{i}",
            "groupId": "88",
            "groupName": "示例科技",
            "departName": "研发部",
            "userMobile": f"138{i:08d}",
        }
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--import-runs", type=int, default=7)
    args = parser.parse_args()

    from aliyunsdkaliyuncvc.request.v20191030.CreateUserRequest import CreateUserRequest
    from aliyunsdkaliyuncvc.request.v20191030.GetAccountInfoRequest import GetAccountInfoRequest

    ours_import = import_seconds(OURS_IMPORT, args.import_runs)
    sdk_import = import_seconds(SDK_IMPORT, args.import_runs)

    emulator = start_emulator("--capacity", str(args.users * 3), keys=[f"{KEY_ID}:{KEY_SECRET}"], admin=False)
    try:
        ours = CvcClient(Credentials(KEY_ID, KEY_SECRET), settings=CvcSettings(endpoint=emulator.url))
        _, sdk_send = sdk_client(emulator.url)
        ours_wall, ours_cpu = per_call(ours.get_account_info, args.calls)
        sdk_wall, sdk_cpu = per_call(lambda: sdk_send(GetAccountInfoRequest()), args.calls)

        batch = users(args.users, "ours")
        start = time.perf_counter()
        results = ours.create_users(batch)
        ours_rate = args.users / (time.perf_counter() - start)
        assert all(r.ok for r in results), "a batch failed during the benchmark"

        def naive(user: dict[str, str]) -> None:
            request = CreateUserRequest()
            request.set_UserInfo(orjson.dumps([user]).decode())
            request.set_Count(1)
            sdk_send(request)

        start = time.perf_counter()
        for user in users(args.users, "sdk"):
            naive(user)
        sdk_rate = args.users / (time.perf_counter() - start)
    finally:
        emulator.stop()

    rows = [
        ("import time (ms, median of fresh processes)", ours_import * 1000, sdk_import * 1000),
        ("GetAccountInfo wall time per call (ms, median)", ours_wall, sdk_wall),
        ("GetAccountInfo client CPU per call (ms)", ours_cpu, sdk_cpu),
        (f"users/s creating {args.users} users (ours batched, SDK one per call)", ours_rate, sdk_rate),
    ]
    print(f"{'measure':<72} {'cvcsync':>10} {'official':>10} {'ratio':>8}")
    for name, mine, theirs in rows:
        better = mine / theirs if name.startswith("users/s") else theirs / mine
        print(f"{name:<72} {mine:>10.2f} {theirs:>10.2f} {better:>7.1f}x")
    print("ratio: how many times better cvcsync is (higher is better for cvcsync)")
    write_figures(
        "bench_client",
        {
            "params": {"users": args.users, "calls": args.calls, "importRuns": args.import_runs},
            "importMs": {"ours": round(ours_import * 1000, 2), "sdk": round(sdk_import * 1000, 2)},
            "callWallMs": {"ours": round(ours_wall, 3), "sdk": round(sdk_wall, 3)},
            "callCpuMs": {"ours": round(ours_cpu, 3), "sdk": round(sdk_cpu, 3)},
            "usersPerSecond": {"ours": round(ours_rate, 1), "sdk": round(sdk_rate, 1)},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
