"""SCIM benchmark: an identity provider's initial provisioning of N users through ``/scim/v2``, several clients at
once, against the emulator with faults and the state in moto's S3; then what one SCIM request costs the object store
against the size of the directory.

1. **Provisioning** (``--users``, default 10,000; ``--clients``, default 4). ``cvcsync serve`` in its own process,
   the emulator as CVC throttling and failing a share of calls (``FAULTS``; ``CVC_MAX_ATTEMPTS`` 2, so some of them
   reach the IdP as 503s), moto as S3. Each user is provisioned the way Entra ID does it:
   ``GET /Users?filter=userName eq "…"``, then ``POST /Users`` when the probe finds nobody. Then a pass of PATCHes
   in Entra's shapes: a tenth of the users deactivated (``active: "False"``), a fifth updated. An answer 429 or 5xx
   (or no answer) is retried as an IdP does: after ``Retry-After`` (at most ``RETRY_AFTER_CAP``: Entra ID retries a
   failed user in a later cycle; here sooner) or a jittered back-off, a create after probing again, for up to
   ``GIVE_UP`` seconds. Measured: requests/s, p50/p99 latency and answers per kind of request, creates/s per tenth
   of the pass (moto lists a prefix by scanning its whole bucket, so rates fall as the bucket fills: S3's do not).
2. **The check** (``check``): CVC (the emulator's users) equals what the IdP sent, the deactivated users absent and
   nobody else present; every resource reads back as sent, at the version its last write answered; no user given
   up; every 2xx write has a run report with a written outcome, and every failed write naming a run has its report;
   the shadow state holds exactly CVC's users, none uncertain; the server logged no ERROR (the circuit's alert
   aside: counted apart). Mismatches are counted and printed; any makes the exit status 1.
3. **Cost per request** (``--sizes``, default 1k, 10k, 100k users): a state seeded with N users (one generation, as
   an export leaves it, with ``bench_state``'s records), then single SCIM requests one after another (the probe
   finding nobody, the create, an update, a deactivation, the probe finding the user) while a counting proxy in
   front of moto (``Meter``) tallies every S3 request and its bytes by kind and by area of the key: what S3 bills.
   The SCIM documents are per-key objects and are not seeded.

``.venv/bin/python bench/bench_scim.py [--users 10000] [--clients 4] [--sizes 1000,10000,100000] [--quick]`` writes
``bench/results/scim.json`` (``bench/report.py``: "SCIM provisioning"); about an hour at 10,000 users on the 2-core
machine, ``--quick`` about a minute. ``tests/integration/test_scim_provisioning.py`` runs ``provision`` and ``check``
at small scale.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson
import requests

from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.engine.state import UNCERTAIN, StateStore

TOKEN = "bench-scim-token-0123456789abcdef"
KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"
BUCKET = "bench-scim"
GROUP_ID, GROUP_NAME = "88", "示例科技"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
FAULTS = {"throttle_rate": 0.05, "error_rate": 0.05, "jitter_ms": 2, "retry_after_ms": 50}
CVC_ATTEMPTS = 2  # the server's attempts per CVC call (production: 5): enough faults reach the IdP to retry
SIZES = (1_000, 10_000, 100_000)
PER_KIND = 20  # metered requests of each kind per directory size
GIVE_UP = 600.0  # seconds an IdP keeps retrying one user's step (a give-up is a mismatch): past a circuit's cool-down
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0  # seconds: the jittered back-off without Retry-After
RETRY_AFTER_CAP = 2.0  # Entra ID retries a failed user in a later cycle; here at most this long after Retry-After
RETRIED = frozenset({429, 500, 502, 503, 504})
WRITES = ("create", "update", "deactivate")
WRITTEN = ("created", "updated", "unchanged", "deleted")
CVC_FIELDS = ("userId", "userName", "userEmail", "userMobile", "departName", "groupId", "groupName")
MISMATCHES = (  # what ``check`` counts; any one fails the benchmark
    "gaveUp",
    "missingInCvc",
    "extraInCvc",
    "differentInCvc",
    "scimDifferent",
    "versionMoved",
    "writesWithoutReport",
    "reportNotWritten",
    "failedRunWithoutReport",
    "stateDifferent",
    "stateUncertain",
    "serverErrors",
)


# -- what the IdP sends ---------------------------------------------------------------------------------------------


def person(i: int) -> dict[str, Any]:
    """User ``i`` as Entra ID creates it (fake people at ``bench.example.com``)."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "externalId": f"0a21f0f2-0000-4000-8000-{i:012d}",
        "userName": f"u{i:06d}@bench.example.com",
        "active": True,
        "displayName": f"员工{i}",
        "name": {"givenName": f"名{i}", "familyName": "王"},
        "emails": [{"primary": True, "type": "work", "value": f"u{i:06d}@bench.example.com"}],
        "phoneNumbers": [{"type": "mobile", "value": f"139{i:08d}"}],
        ENTERPRISE: {"department": f"部门{i % 40}"},
    }


def planned(i: int) -> str | None:
    """The PATCH pass's change of user ``i``: a tenth deactivated, a fifth updated, the rest left alone."""
    return "deactivate" if i % 10 == 0 else "update" if i % 10 in (1, 2) else None


def change(i: int, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PATCH body of ``kind`` for user ``i`` in Entra ID's shapes, and the resource after it: a deactivation as
    the string ``"False"``; an update with a path per attribute (the e-mail by its filter), or for odd users
    path-less, its keys attribute paths (the shape Microsoft documents without ``aadOptscim062020``)."""
    after = person(i)
    if kind == "deactivate":
        after["active"] = False
        return patch_body({"op": "Replace", "path": "active", "value": "False"}), after
    after["displayName"] = f"员工{i}-改"
    after[ENTERPRISE]["department"] = f"新部门{i % 7}"
    if i % 2:
        after["name"]["givenName"] = f"改{i}"
        values = {
            "displayName": after["displayName"],
            "name.givenName": after["name"]["givenName"],
            f"{ENTERPRISE}:department": after[ENTERPRISE]["department"],
        }
        return patch_body({"op": "replace", "value": values}), after
    after["emails"][0]["value"] = f"u{i:06d}.new@bench.example.com"
    return patch_body(
        {"op": "Replace", "path": "displayName", "value": after["displayName"]},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": after["emails"][0]["value"]},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": after[ENTERPRISE]["department"]},
    ), after


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def probe_query(resource: Mapping[str, Any]) -> str:
    return "filter=" + quote(f'userName eq "{resource["userName"]}"')


def in_cvc(resource: Mapping[str, Any]) -> dict[str, str]:
    """What CVC should hold for an active resource (docs/scim.md, "The mapping")."""
    values = (
        resource["userName"],
        resource["displayName"],
        resource["emails"][0]["value"],
        resource["phoneNumbers"][0]["value"],
        resource[ENTERPRISE]["department"],
        GROUP_ID,
        GROUP_NAME,
    )
    return dict(zip(CVC_FIELDS, values, strict=True))


# -- the IdP --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    kind: str  # probe, create, update, deactivate
    status: int  # 0: no answer (a broken connection, a timeout)
    ms: float
    request_id: str  # the server's X-Request-Id: a run report's source.requestId
    run_id: str | None = None  # the run a failed write names (its report says what became of the change)
    at: float = 0.0  # when the answer came (time.monotonic)


@dataclass
class Sent:
    """One user as the IdP last wrote it: the resource, its SCIM id, the version its last write answered."""

    resource: dict[str, Any]
    scim_id: str | None = None
    version: str | None = None
    gave_up: str | None = None  # why the IdP stopped trying, when it did


@dataclass
class Provisioning:
    users: dict[int, Sent] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    found_after_error: int = 0  # a create answered with an error, yet the next probe found the user

    @property
    def writes(self) -> list[Call]:
        """The 2xx answers to writes."""
        return [c for c in self.calls if c.kind in WRITES and 200 <= c.status < 300]


class Idp:
    """An IdP's SCIM client: one ``requests.Session`` per thread, retrying as Entra ID does."""

    def __init__(self, base: str, token: str = TOKEN, *, retry_after_cap: float = RETRY_AFTER_CAP) -> None:
        self.base = base.rstrip("/") + "/scim/v2"
        self.token = token
        self.retry_after_cap = retry_after_cap
        self.run = Provisioning()
        self._local = threading.local()
        self._random = random.Random(7)
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def request(self, kind: str, method: str, path: str, body: Any = None, query: str = "") -> requests.Response | None:
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        headers = {"Content-Type": "application/scim+json"} if body is not None else {}
        started = time.perf_counter()
        try:
            data = orjson.dumps(body) if body is not None else None
            answer: requests.Response | None = self._session().request(
                method, url, data=data, headers=headers, timeout=90
            )
        except requests.RequestException:
            answer = None
        ms = (time.perf_counter() - started) * 1000
        if answer is None:
            self.run.calls.append(Call(kind, 0, ms, "", at=time.monotonic()))
            return None
        run_id = None
        if answer.status_code >= 400 and kind in WRITES and answer.headers.get("Content-Type", "").endswith("json"):
            run_id = (answer.json().get("urn:cvcsync:scim:error") or {}).get("runId")
        request_id = answer.headers.get("X-Request-Id", "")
        self.run.calls.append(Call(kind, answer.status_code, ms, request_id, run_id, time.monotonic()))
        return answer

    def _wait(self, answer: requests.Response | None, attempt: int) -> None:
        after = answer.headers.get("Retry-After", "") if answer is not None else ""
        with self._lock:
            jitter = self._random.random()
        if after.strip().isdigit():
            time.sleep(min(float(after), self.retry_after_cap) * (0.5 + jitter / 2))
        else:
            time.sleep(jitter * min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt))

    def provision(self, i: int) -> None:
        """Probe, then create when nobody has the userName; from the probe again after a failure."""
        sent = self.run.users.setdefault(i, Sent(person(i)))
        failed = False
        for attempt in attempts(time.monotonic() + GIVE_UP):
            probe = self.request("probe", "GET", "/Users", query=probe_query(sent.resource))
            if probe is None or probe.status_code in RETRIED:
                self._wait(probe, attempt)
                continue
            if probe.status_code != 200:
                sent.gave_up = f"probe answered {probe.status_code}: {probe.text[:200]}"
                return
            found = probe.json()["Resources"]
            if found:
                self.run.found_after_error += failed
                sent.scim_id, sent.version = found[0]["id"], found[0]["meta"]["version"]
                return
            created = self.request("create", "POST", "/Users", sent.resource)
            if created is not None and created.status_code == 201:
                sent.scim_id, sent.version = created.json()["id"], created.headers.get("ETag")
                return
            failed = True
            if created is not None and created.status_code not in RETRIED and created.status_code != 409:
                sent.gave_up = f"create answered {created.status_code}: {created.text[:200]}"
                return
            self._wait(created, attempt)
        sent.gave_up = f"no success in {GIVE_UP:g} s"

    def patch(self, i: int) -> None:
        """The PATCH pass's change of user ``i``, if it has one, until it succeeds."""
        sent = self.run.users[i]
        kind = planned(i)
        if kind is None or sent.scim_id is None:
            return
        body, after = change(i, kind)
        for attempt in attempts(time.monotonic() + GIVE_UP):
            answer = self.request(kind, "PATCH", f"/Users/{sent.scim_id}", body)
            if answer is not None and answer.status_code == 200:
                sent.resource, sent.version = after, answer.headers.get("ETag")
                return
            if answer is not None and answer.status_code not in RETRIED:
                sent.gave_up = f"{kind} answered {answer.status_code}: {answer.text[:200]}"
                return
            self._wait(answer, attempt)
        sent.gave_up = f"{kind}: no success in {GIVE_UP:g} s"


def attempts(until: float) -> Iterator[int]:
    """0, 1, 2… while there is time left."""
    attempt = 0
    while time.monotonic() < until:
        yield attempt
        attempt += 1


def at_once(work: Iterable[int], clients: int, step: Callable[[int], None]) -> float:
    """``step`` over ``work`` by ``clients`` threads, each taking the next item when done with one; the wall time."""
    items = iter(work)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client() -> None:
        while not errors:
            with lock:
                i = next(items, None)
            if i is None:
                return
            try:
                step(i)
            except BaseException as exc:  # a bug in this client, not an answer of the server: stop and say so
                errors.append(exc)

    threads = [threading.Thread(target=client, name=f"idp-{n}") for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def provision(base: str, users: int, clients: int, *, retry_after_cap: float = RETRY_AFTER_CAP) -> Provisioning:
    """The initial provisioning of ``users`` users, then the PATCH pass, each by ``clients`` clients at once."""
    idp = Idp(base, retry_after_cap=retry_after_cap)
    idp.run.seconds["create"] = at_once(range(users), clients, idp.provision)
    idp.run.seconds["patch"] = at_once(range(users), clients, idp.patch)
    return idp.run


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def figures(run: Provisioning) -> dict[str, Any]:
    """Per pass: its time and requests/s; per kind of request: count, p50/p99 ms (every attempt), answers."""
    kinds: dict[str, list[Call]] = {}
    for call in run.calls:
        kinds.setdefault(call.kind, []).append(call)
    passes: dict[str, dict[str, Any]] = {}
    for name, of in (("create", ("probe", "create")), ("patch", ("update", "deactivate"))):
        count, seconds = sum(len(kinds.get(k, [])) for k in of), run.seconds.get(name, 0.0)
        passes[name] = {"seconds": round(seconds, 1), "requests": count, "requestsPerSecond": rate(count, seconds)}
    passes["create"]["usersPerSecond"] = rate(len(run.users), run.seconds.get("create", 0.0))
    return {
        "passes": passes,
        "requests": {
            kind: {
                "count": len(calls),
                "p50Ms": round(percentile([c.ms for c in calls], 0.50), 1),
                "p99Ms": round(percentile([c.ms for c in calls], 0.99), 1),
                "statuses": {str(s): n for s, n in sorted(Counter(c.status for c in calls).items())},
            }
            for kind, calls in sorted(kinds.items())
        },
        "createsPerSecondByTenth": by_tenth(sorted(c.at for c in run.calls if c.kind == "create" and c.status == 201)),
        "foundAfterError": run.found_after_error,
    }


def by_tenth(times: list[float]) -> list[float]:
    """Successes per second in each tenth of them (in the order they came): does the rate hold as the store fills?"""
    tenth = len(times) // 10
    if tenth < 2:
        return []
    return [rate(tenth - 1, times[(n + 1) * tenth - 1] - times[n * tenth]) for n in range(10)]


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


# -- the check ------------------------------------------------------------------------------------------------------


def _read_all(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(key: str) -> dict[str, Any]:
        return dict(orjson.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(read, keys))


def _outcomes(reports: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(sum((Counter({k: v for k, v in r["outcomes"].items() if v}) for r in reports), Counter()))


def check(
    run: Provisioning, *, server: Server, cvc_users: list[dict[str, Any]], s3: Any, bucket: str, prefix: str = ""
) -> dict[str, Any]:
    """Every way the run could have lost or bent a write, counted by name (``MISMATCHES``), with samples;
    ``passed`` when every count is 0. ``s3`` needs a connection pool of 16 or more (reads run in parallel)."""
    counts = dict.fromkeys(MISMATCHES, 0)
    samples: list[str] = []
    prefix = prefix or "cvc-sync/"

    def mismatch(name: str, what: str) -> None:
        counts[name] += 1
        if len(samples) < 20:
            samples.append(f"{name}: {what}")

    for sent in run.users.values():
        if sent.gave_up:
            mismatch("gaveUp", f"{sent.resource['userName']}: {sent.gave_up}")
    expected = {s.resource["userName"]: in_cvc(s.resource) for s in run.users.values() if s.resource["active"]}
    held = {u["userId"]: {k: u.get(k) for k in CVC_FIELDS} for u in cvc_users}
    for user_id, fields in expected.items():
        if user_id not in held:
            mismatch("missingInCvc", user_id)
        elif held[user_id] != fields:
            mismatch("differentInCvc", f"{user_id}: CVC {held[user_id]} != sent {fields}")
    for user_id in held.keys() - expected.keys():
        mismatch("extraInCvc", user_id)

    # What the IdP reads back (Okta's import, page by page): every resource as sent, at its last write's version.
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    served: dict[str, dict[str, Any]] = {}
    while True:
        query = {"startIndex": len(served) + 1, "count": 200}
        page = session.get(f"{server.url}/scim/v2/Users", params=query, timeout=120).json()
        served.update({r["id"]: r for r in page["Resources"]})
        if not page["Resources"] or len(served) >= page["totalResults"]:
            break
    for sent in run.users.values():
        got = served.get(sent.scim_id or "") or {}
        bent = [k for k, v in sent.resource.items() if k != "schemas" and got.get(k) != v]
        if bent:
            mismatch("scimDifferent", f"{sent.resource['userName']}: {bent} differ")
        elif got["meta"]["version"] != sent.version:
            mismatch("versionMoved", f"{sent.resource['userName']}: {got['meta']['version']} != {sent.version}")

    # Every 2xx write has a run report (by its request id) that says it was written.
    reports = _read_all(s3, bucket, f"{prefix}reports/changes/scim/")
    by_request = {r["source"]["requestId"]: r for r in reports}
    for write in run.writes:
        report = by_request.get(write.request_id)
        if report is None:
            mismatch("writesWithoutReport", f"{write.kind} {write.request_id}")
        elif not any(report["outcomes"].get(o) for o in WRITTEN):
            mismatch("reportNotWritten", f"{write.kind} {write.request_id}: {report['outcomes']}")
    # A write that failed in its run names the run, whose report says what became of it ("retried"); a 503 that
    # names none never reached CVC (the circuit was open, the user's lock busy).
    failed = [c for c in run.calls if c.kind in WRITES and c.status >= 400]
    by_run = {r["runId"]: r for r in reports}
    for call in failed:
        if call.run_id is not None and call.run_id not in by_run:
            mismatch("failedRunWithoutReport", f"{call.kind} {call.status} run {call.run_id}")
    reported = [by_run[c.run_id] for c in failed if c.run_id in by_run]

    # The shadow state holds CVC's users, none uncertain.
    with tempfile.TemporaryDirectory() as tmp:
        state = StateStore(S3ObjectStore(s3), bucket, f"{prefix}state/").checkout(Path(tmp), compact=False)
        rows = {uid: (digest, orjson.loads(record)) for uid, digest, record in state.users()}
        state.close()
    for user_id, (digest, record) in rows.items():
        if digest == UNCERTAIN:
            mismatch("stateUncertain", user_id)
        elif user_id not in held or any(record.get(k) != v for k, v in held[user_id].items()):
            mismatch("stateDifferent", f"{user_id}: state {record}")
    for user_id in held.keys() - rows.keys():
        mismatch("stateDifferent", f"{user_id}: in CVC, not in the state")
    for line in server.errors():
        mismatch("serverErrors", line[:300])
    return {
        "passed": not any(counts.values()),
        "mismatches": counts,
        "samples": samples,
        "cvcUsers": len(held),
        "expectedInCvc": len(expected),
        "scimUsers": len(served),
        "stateUsers": len(rows),
        "reports": len(reports),
        "reportOutcomes": _outcomes(reports),
        "failedWrites": {
            "answers": len(failed),
            "namingRun": sum(c.run_id is not None for c in failed),
            "withReport": len(reported),
            "outcomes": _outcomes(reported),
        },
        "circuitOpened": len(server.errors(expected=True)),
    }


# -- the server -----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    log: Path

    def errors(self, *, expected: bool = False) -> list[str]:
        """The ERROR lines the server logged so far (an unexpected exception, a refused write), none expected; or
        with ``expected`` the alerts CVC's faults may raise (the circuit opening after five failed calls)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                found += [line] if "Traceback" in line else []
                continue
            if (
                isinstance(entry, dict)
                and entry.get("level") in ("ERROR", "CRITICAL")
                and ((entry.get("code") == "CircuitOpen") == expected)
            ):
                found.append(f"{entry.get('logger')}: {entry.get('message')} {entry.get('code', '')}".strip())
        return found


def scim_env(emulator_url: str, s3_url: str, bucket: str) -> dict[str, str]:
    """``cvcsync serve``'s environment: the emulator as CVC, moto (or the meter) as S3, a SCIM token, no practical
    deletion limit (a tenth of the users is deactivated on purpose)."""
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
        "CVC_ENDPOINT": emulator_url,
        "CVC_MAX_ATTEMPTS": str(CVC_ATTEMPTS),
        "CVCSYNC_S3_ENDPOINT": s3_url,
        "CVCSYNC_S3_REGION": "us-east-1",
        "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        "CVCSYNC_STATE_BUCKET": bucket,
        "CVCSYNC_SCIM_TOKENS": TOKEN,
        "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR": "1000000",
        "CVCSYNC_GROUP_ID": GROUP_ID,
        "CVCSYNC_GROUP_NAME": GROUP_NAME,
        "CVCSYNC_LOG_LEVEL": "WARNING",
    }


@contextmanager
def served(env: Mapping[str, str], *, threads: int = 8) -> Iterator[Server]:
    """``cvcsync serve`` in its own process (its CPU is not the clients'), its log in a file kept only when it
    holds an ERROR line; stopped after."""
    with tempfile.NamedTemporaryFile(prefix="bench-scim-serve-", suffix=".log", delete=False) as log:
        server = Server("", Path(log.name))
        process = subprocess.Popen(
            [sys.executable, "-m", "cvcsync", "serve", "--port", "0", "--threads", str(threads)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if "listening on " not in line:
            raise RuntimeError(f"cvcsync serve did not start: {line!r}\n{server.log.read_text(errors='replace')}")
        server.url = line.split("listening on ", 1)[1].strip()
        yield server
    finally:
        process.terminate()
        process.wait(15)
        if process.stdout is not None:
            process.stdout.close()
        if server.errors() or server.errors(expected=True):
            print(f"the server's log: {server.log}")
        else:
            server.log.unlink()


# -- cost per request: a counting proxy in front of moto ----------------------------------------------------------


class Meter:
    """Forwards S3 requests to moto and counts each by kind and area with its bytes (what S3 bills). The area is
    the key's first folder under ``cvc-sync/`` (the SCIM store's first two: ``scim/users``, ``scim/locks``)."""

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (kind, area, "n" | "in" | "out")
        self.lock = threading.Lock()
        relay = self.relay

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def forward(self) -> None:
                relay(self)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        with self.lock:
            return Counter(self.counts)

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(self.target.hostname or "127.0.0.1", self.target.port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("expect", "connection")}
        upstream.request(handler.command, handler.path, body, headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        path, _, query = handler.path.partition("?")
        params = parse_qs(query, keep_blank_values=True)
        kind, key = handler.command, unquote(path.lstrip("/").partition("/")[2])
        if kind == "GET" and not key:
            kind, key = "LIST", params.get("prefix", [""])[0]
        elif kind == "POST" and "delete" in params:  # a batch delete names its keys in the body
            kind, key = "DELETE", body.decode(errors="replace").partition("<Key>")[2].partition("</Key>")[0]
        parts = key.removeprefix("cvc-sync/").split("/")
        area = "/".join(parts[:2]) if parts[0] == "scim" else {"runs": "reports"}.get(parts[0], parts[0])
        with self.lock:  # counted before the answer goes back: a snapshot after the SCIM answer includes it
            self.counts[(kind, area, "n")] += 1
            self.counts[(kind, area, "in")] += len(data)
            self.counts[(kind, area, "out")] += len(body)
        handler.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                handler.send_header(name, value)
        length = answer.getheader("Content-Length") if handler.command == "HEAD" else str(len(data))
        handler.send_header("Content-Length", length or "0")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)


def tally(spent: Counter[tuple[str, str, str]], n: int) -> dict[str, Any]:
    """Per request: S3 requests by kind and by area, bytes down and up (``spent`` over ``n`` requests)."""
    by_kind: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    for (kind, area, what), value in spent.items():
        if what == "n":
            by_kind[kind] += value
            by_area[area] += value
    return {
        "requests": round(sum(by_kind.values()) / n, 2),
        "byKind": {k: round(v / n, 2) for k, v in sorted(by_kind.items())},
        "byArea": {k: round(v / n, 2) for k, v in sorted(by_area.items())},
        "bytesIn": round(sum(v for (_, _, w), v in spent.items() if w == "in") / n),
        "bytesOut": round(sum(v for (_, _, w), v in spent.items() if w == "out") / n),
    }


def seed(s3: Any, bucket: str, n: int) -> None:
    """A shadow state of ``n`` users as a full export leaves it (one generation), of ``bench_state``'s records."""
    from bench_state import seed as seed_state  # bench/ is on sys.path when this file runs as a script

    seed_state(S3ObjectStore(s3), "cvc-sync/state/", n, bucket=bucket)


def cost_per_request(emulator_url: str, moto: Any, size: int, per_kind: int) -> dict[str, Any]:
    """A directory of ``size`` users, then ``per_kind`` rounds of single requests of each kind one after another,
    each metered on its own (nothing else runs: the difference of two snapshots is that request's)."""
    bucket = f"{BUCKET}-cost-{size}"
    s3 = moto.s3_client()
    s3.create_bucket(Bucket=bucket)
    started = time.perf_counter()
    seed(s3, bucket, size)
    seeded = time.perf_counter() - started
    meter = Meter(moto.url)
    spent: dict[str, Counter[tuple[str, str, str]]] = {}
    latencies: dict[str, list[float]] = {}
    try:
        with served(scim_env(emulator_url, meter.url, bucket), threads=2) as server:
            idp = Idp(server.url)
            first = 900_000  # none of the seeded users' ids
            for i in range(first, first + 3):  # warm: imports, clients, the generation's header
                idp.provision(i)

            def at(i: int) -> str:
                return f"/Users/{idp.run.users[i].scim_id}"

            steps: list[tuple[str, Callable[[int], requests.Response | None]]] = [
                ("probe, nobody", lambda i: idp.request("probe", "GET", "/Users", query=probe_query(person(i)))),
                ("create", lambda i: idp.request("create", "POST", "/Users", person(i))),
                ("update", lambda i: idp.request("update", "PATCH", at(i), change(i, "update")[0])),
                ("deactivate", lambda i: idp.request("deactivate", "PATCH", at(i), change(i, "deactivate")[0])),
                ("probe, found", lambda i: idp.request("probe", "GET", "/Users", query=probe_query(person(i)))),
            ]
            for i in range(first + 3, first + 3 + per_kind):
                for kind, step in steps:
                    before = meter.snapshot()
                    t0 = time.perf_counter()
                    answer = step(i)
                    latencies.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
                    spent[kind] = spent.get(kind, Counter()) + (meter.snapshot() - before)
                    if answer is None or answer.status_code >= 300:
                        raise RuntimeError(f"{kind} answered {answer.status_code if answer else 'nothing'}")
                    if kind == "create":
                        idp.run.users[i] = Sent(person(i), answer.json()["id"])
            errors = server.errors()
    finally:
        meter.close()
    return {
        "users": size,
        "seedSeconds": round(seeded, 1),
        "perRequest": {
            kind: {**tally(spent[kind], per_kind), "p50Ms": round(percentile(latencies[kind], 0.5), 1)}
            for kind in spent
        },
        "serverErrors": len(errors),
    }


# -- the benchmark --------------------------------------------------------------------------------------------------


def run(users: int, clients: int, sizes: tuple[int, ...], per_kind: int, threads: int) -> dict[str, Any]:
    from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, start_moto
    from cvcsync_dev.emulator.process import start_emulator

    os.environ.update(DUMMY_CREDENTIALS)  # boto3 reads these (moto accepts anything; nothing leaves loopback)
    emulator = start_emulator("--capacity", "10000000", keys=[f"{KEY_ID}:{KEY_SECRET}"])
    moto = start_moto()
    try:
        s3 = moto.s3_client(max_pool_connections=32)
        s3.create_bucket(Bucket=BUCKET)
        emulator.set_faults(seed=20261207, **FAULTS)
        with served(scim_env(emulator.url, moto.url, BUCKET), threads=threads) as server:
            done = provision(server.url, users, clients)
            cvc = emulator.stats()
            emulator.set_faults()
            measured = {**figures(done), "cvc": {"calls": cvc["calls"], "faults": cvc["faults"]}}
            print_provisioning(measured, users, clients)
            verdict = check(done, server=server, cvc_users=emulator.users(), s3=s3, bucket=BUCKET)
        print_check(verdict)
        costs = []
        for size in sizes:
            costs.append(cost_per_request(emulator.url, moto, size, per_kind))
            print_cost(costs[-1])
    finally:
        moto.stop()
        emulator.stop()
    params = {"users": users, "clients": clients, "serverThreads": threads, "faults": FAULTS}
    params.update({"cvcMaxAttempts": CVC_ATTEMPTS, "deactivated": "1 in 10", "updated": "2 in 10", "perKind": per_kind})
    return {"params": params, "provisioning": measured, "check": verdict, "costPerRequest": costs}


def print_provisioning(data: dict[str, Any], users: int, clients: int) -> None:
    create, patch = data["passes"]["create"], data["passes"]["patch"]
    print(
        f"{users:,} users by {clients} clients: create pass {create['seconds']} s ({create['usersPerSecond']} "
        f"users/s, {create['requestsPerSecond']} requests/s); PATCH pass {patch['seconds']} s "
        f"({patch['requestsPerSecond']} requests/s); CVC calls {data['cvc']['calls']}, faults {data['cvc']['faults']}"
    )
    for kind, row in data["requests"].items():
        print(
            f"  {kind:<11} {row['count']:>7,} requests  p50 {row['p50Ms']:>7} ms  p99 {row['p99Ms']:>7} ms  "
            f"answers {row['statuses']}"
        )


def print_check(verdict: dict[str, Any]) -> None:
    failed = verdict["failedWrites"]
    print(
        f"check {'passed' if verdict['passed'] else 'FAILED'}: CVC {verdict['cvcUsers']:,} users (expected "
        f"{verdict['expectedInCvc']:,}), SCIM {verdict['scimUsers']:,}, state {verdict['stateUsers']:,}; "
        f"{verdict['reports']:,} run reports {verdict['reportOutcomes']}; writes failed: {failed['answers']}, "
        f"{failed['namingRun']} naming a run, {failed['withReport']} with its report {failed['outcomes']}; the "
        f"circuit opened {verdict['circuitOpened']} time(s)\n  mismatches {verdict['mismatches']}"
    )
    for line in verdict["samples"]:
        print(f"  {line}")


def print_cost(row: dict[str, Any]) -> None:
    print(f"{row['users']:>7,} users in the state (seeded in {row['seedSeconds']} s); per request:")
    for kind, cost in row["perRequest"].items():
        print(
            f"  {kind:<13} {cost['requests']:>6} S3 requests {cost['byKind']}, {cost['bytesIn']:>6,} B in, "
            f"{cost['bytesOut']:>6,} B out, p50 {cost['p50Ms']} ms; by area {cost['byArea']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000, help="users the IdP provisions (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="IdP clients at once (default %(default)s)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="directory sizes for the cost per request")
    parser.add_argument("--per-kind", type=int, default=PER_KIND, help="metered requests of each kind per size")
    parser.add_argument("--threads", type=int, default=8, help="cvcsync serve's worker threads (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 users, sizes 1000 and 2000")
    parser.add_argument("--output", default="scim", help="the results file's name (bench/results/NAME.json)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    if args.quick:
        args.users, sizes, args.per_kind = min(args.users, 300), (1000, 2000), min(args.per_kind, 5)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the emulator, moto and the server on the way out
    data = run(args.users, args.clients, sizes, args.per_kind, args.threads)
    from figures import write_figures  # bench/ is on sys.path when this file runs as a script

    print(f"wrote {write_figures(args.output, data)}")
    return 0 if data["check"]["passed"] and not any(row["serverErrors"] for row in data["costPerRequest"]) else 1


if __name__ == "__main__":
    sys.exit(main())
