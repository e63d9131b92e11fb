"""The chaos suite's tools: exports, the truth in CVC (ListUsers) and in the shadow state, dead letters, the
emulator's journal as the oracle of which writes failed last, and the results file ``make chaos`` writes.

``CVCSYNC_CHAOS_USERS`` sizes the runs (10,000 in ``make test``, 100,000 in ``make chaos``);
``CVCSYNC_CHAOS_RESULTS`` names the JSON file the results go to (``make chaos`` and ``make bench``).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cvcsync.adapters.cvc import CvcClient
from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.engine.state import UNCERTAIN, StateStore
from cvcsync.inputs.records import RecordError, content_hash, parse_user

USERS = int(os.environ.get("CVCSYNC_CHAOS_USERS", "10000"))
RESULTS = os.environ.get("CVCSYNC_CHAOS_RESULTS", "")
STATE_PREFIX = "cvc-sync/state/"
FIELDS = ["userId", "userName", "groupId", "groupName", "departId", "departName", "userMobile", "userEmail"]
Users = dict[str, dict[str, str]]


def person(i: int, version: int = 0, group: str = "88") -> dict[str, str]:
    name = f"员工{i}" + (f"-v{version}" if version else "")
    return {
        "userId": f"c{i:07d}",
        "userName": name,
        "groupId": group,
        "groupName": "示例科技" if group == "88" else f"集团{group}",
        "departId": f"d{i % 40}",
        "departName": f"部门{i % 40}",
        "userMobile": f"139{i:08d}",
        "userEmail": f"p{i}@example.com",
    }


def snapshot(ids: Iterable[int], version: int = 0) -> Users:
    return {u["userId"]: u for u in (person(i, version) for i in ids)}


def evolve(before: Users, n: int) -> tuple[Users, dict[str, set[str]]]:
    """The next day's export: 5% of the users gone, 10% changed, 5% new. Returns it and who changed how."""
    after: Users = {}
    changes: dict[str, set[str]] = {"deleted": set(), "updated": set(), "created": set()}
    for index, (user_id, user) in enumerate(before.items()):
        if index % 20 == 7:
            changes["deleted"].add(user_id)
        elif index % 10 == 3:
            after[user_id] = {**user, "userName": user["userName"] + "-改", "departName": "新部门"}
            changes["updated"].add(user_id)
        else:
            after[user_id] = user
    for i in range(n, n + n // 20):
        fresh = person(i)
        after[fresh["userId"]] = fresh
        changes["created"].add(fresh["userId"])
    return after, changes


def export_csv(users: Users) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    writer.writerows(users.values())
    return out.getvalue().encode()


def digest(user: Mapping[str, Any]) -> str:
    return content_hash(parse_user(dict(user)).to_json())


def hashes(users: Users) -> dict[str, str]:
    return {user_id: digest(user) for user_id, user in users.items()}


def cvc_directory(env: Mapping[str, str]) -> dict[str, str]:
    """What CVC holds, read the way an operator would: ListUsers through the signed client. userId -> hash."""
    client = CvcClient.from_env(env=env)
    found: dict[str, str] = {}
    try:
        for info in client.list_users(page_size=100):
            try:
                user = parse_user(info)
            except RecordError:
                found[str(info.get("UserId"))] = "unreadable"
                continue
            found[user.user_id] = content_hash(user.to_json())
    finally:
        client.close()
    return found


@dataclass
class StateView:
    certain: dict[str, str]  # userId -> content hash the state claims CVC holds
    uncertain: set[str]  # users the state knows CVC may hold (an interrupted or failed write)
    in_flight_lists: int


def read_state(s3: Any, bucket: str) -> StateView:
    store = StateStore(S3ObjectStore(s3), bucket, STATE_PREFIX)
    with tempfile.TemporaryDirectory(prefix="chaos-state-") as tmp:
        state = store.checkout(Path(tmp))
        try:
            certain, uncertain = {}, set()
            for user_id, user_hash, _record in state.users():
                if user_hash == UNCERTAIN:
                    uncertain.add(user_id)
                else:
                    certain[user_id] = user_hash
            return StateView(certain, uncertain, len(state.in_flight_keys))
        finally:
            state.close()


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def dead_letters(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found = []
    for key in keys(s3, bucket, "cvc-sync/dead-letters/"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        found += [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return found


def last_results(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per user, how the last write that named it ended (journal order is the emulator's arrival order)."""
    last: dict[str, str] = {}
    for entry in entries:
        for user_id in entry["userIds"]:
            last[user_id] = entry["result"]
    return last


def write_counts(entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Per user, the writes that took effect (ok, or dropped: the action happened, only the answer was lost)."""
    counts: dict[str, int] = {}
    for entry in entries:
        if entry["result"] in ("ok", "dropped"):
            for user_id in entry["userIds"]:
                counts[user_id] = counts.get(user_id, 0) + 1
    return counts


@dataclass
class Scenario:
    """One chaos scenario's figures, for the results file (and so for bench/RESULTS.md)."""

    name: str
    users: int
    started: float = field(default_factory=time.monotonic)
    figures: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    seconds: float | None = None

    def succeeded(self, figures: dict[str, Any]) -> None:
        """Every assertion held: record the figures and how long the scenario took."""
        self.figures = figures
        self.seconds = time.monotonic() - self.started
        self.passed = True

    def to_dict(self) -> dict[str, Any]:
        seconds = self.seconds if self.seconds is not None else time.monotonic() - self.started
        return {
            "name": self.name,
            "users": self.users,
            "passed": self.passed,
            "seconds": round(seconds, 1),
            "figures": self.figures,
        }


class Results:
    """Collects the scenarios of a session; ``save`` writes them to ``CVCSYNC_CHAOS_RESULTS`` when it is set."""

    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []

    def start(self, name: str, users: int) -> Scenario:
        scenario = Scenario(name, users)
        self.scenarios.append(scenario)
        return scenario

    def save(self) -> None:
        if not RESULTS or not self.scenarios:
            return
        path = Path(RESULTS)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scenarios": [s.to_dict() for s in self.scenarios],
        }
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
