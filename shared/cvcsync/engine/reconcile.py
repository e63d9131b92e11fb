"""Reconcile the shadow state with what CVC really holds (ListUsers), and optionally rebuild it from CVC.

The state is cvc-sync's memory of what it applied; people and other tools change CVC too. Reconciling lists every
user in CVC, compares content hashes with the state and reports the drift: users CVC has that the state does not
know, users the state remembers that CVC no longer has, and users whose content differs. ``rebuild`` makes the
state equal to CVC (the next sync then sends exactly what differs from the HR export). Both directions of healing
CVC itself belong to the scheduled function; this is the engine's part.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvcsync.adapters.cvc import CvcClient
from cvcsync.engine.state import ShadowState, StateStore
from cvcsync.inputs.records import RecordError, content_hash, parse_user

SAMPLE = 100


@dataclass
class Drift:
    cvc_users: int = 0
    state_users: int = 0
    only_in_cvc: list[str] = field(default_factory=list)
    only_in_state: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0
    generation_after: int | None = None

    @property
    def in_sync(self) -> bool:
        return not any(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "inSync": self.in_sync,
            "cvcUsers": self.cvc_users,
            "stateUsers": self.state_users,
            "counts": self.counts,
            "onlyInCvc": self.only_in_cvc,
            "onlyInState": self.only_in_state,
            "different": self.different,
            "unreadableInCvc": self.unreadable,
            "generationAfter": self.generation_after,
        }


def _load_cvc(client: CvcClient, db: sqlite3.Connection, deadline: float | None) -> int:
    db.execute("CREATE TABLE cvc (user_id TEXT PRIMARY KEY, hash TEXT, record TEXT)")
    unreadable = 0
    batch: list[tuple[str, str, str]] = []
    for info in client.list_users(deadline=deadline):
        try:
            user = parse_user(info)
        except RecordError:
            unreadable += 1  # CVC holds something our validation would not send; it still counts as drift
            user_id = str(info.get("UserId") or "")
            batch.append((user_id, "unreadable", "{}"))
            continue
        payload = user.to_json()
        batch.append((user.user_id, content_hash(payload), payload.decode()))
        if len(batch) >= 5000:
            db.executemany("INSERT OR REPLACE INTO cvc VALUES (?, ?, ?)", batch)
            batch = []
    db.executemany("INSERT OR REPLACE INTO cvc VALUES (?, ?, ?)", batch)
    return unreadable


def _ids(db: sqlite3.Connection, query: str) -> tuple[int, list[str]]:
    rows = [uid for (uid,) in db.execute(query)]
    return len(rows), rows[:SAMPLE]


def reconcile(
    client: CvcClient, store: StateStore, *, run_id: str, rebuild: bool = False, deadline: float | None = None
) -> Drift:
    with tempfile.TemporaryDirectory(prefix="cvcsync-reconcile-") as tmp:
        state = store.checkout(Path(tmp))
        read_after = state.generation  # checked out before CVC is read: later commits may postdate the read
        try:
            db = state.db
            drift = Drift(unreadable=_load_cvc(client, db, deadline))
            drift.cvc_users = int(db.execute("SELECT COUNT(*) FROM cvc").fetchone()[0])
            drift.state_users = state.count()
            n, drift.only_in_cvc = _ids(
                db, "SELECT user_id FROM cvc WHERE user_id NOT IN (SELECT user_id FROM users) ORDER BY user_id"
            )
            m, drift.only_in_state = _ids(
                db, "SELECT user_id FROM users WHERE user_id NOT IN (SELECT user_id FROM cvc) ORDER BY user_id"
            )
            k, drift.different = _ids(
                db, "SELECT c.user_id FROM cvc c JOIN users u USING (user_id) WHERE c.hash != u.hash ORDER BY c.user_id"
            )
            drift.counts = {"onlyInCvc": n, "onlyInState": m, "different": k}
            rows = db.execute("SELECT user_id, hash, record FROM cvc WHERE hash != 'unreadable'").fetchall()
        finally:
            state.close()
    if rebuild and not drift.in_sync:

        def changes(target: ShadowState) -> None:
            # A running run's in-flight users stay uncertain and its list stays for its own commit (as the
            # scheduled reconcile's heal-state does): this commit records no run's writes.
            target.rebuild([rows], read_after=read_after)

        drift.generation_after = store.commit(changes, run_id=run_id, settles_in_flight=False)
    return drift
