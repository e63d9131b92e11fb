"""Cold start per handler, next to the official SDK's, against the emulator in its own process (and moto for the
handlers that need an object store).

A cold start here is what a new container pays once the interpreter runs: a fresh ``python`` with an empty TMPDIR
imports ``functions/<name>/index.py`` and handles one realistic event as FC hands it over (bytes):

- queue_changes: an MNS-topic message with one upsert, no state bucket (the FC default path: never boto3);
- object_upload: an OSS PutObject event for a 10-user CSV in moto's S3 (a fresh bucket each time: a first sync);
- http_api: an FC 3.0 HTTP event, a signed ``PUT /users/{id}``;
- scheduled: an FC timer ``redrive`` with one dead letter waiting in the state bucket (moto's S3).

The official SDK's cold start is a fresh ``python`` importing ``aliyunsdkcore`` and making one CreateUser call.
Target (issue): each handler's cold start <= the SDK's. Medians (wall and CPU time) of ``--runs`` fresh processes
per side, the sides interleaved so that load on the machine hits both alike, with bytecode compiled beforehand
into a cache of the bench's own (as ``deploy/package.py`` ships the code: unchecked-hash ``.pyc`` for the
platform's Python); then the same without any ``.pyc`` (a package built without its target interpreter).
From ``python -X importtime`` runs of the same children: where the import time goes (requests + urllib3, boto3,
our own modules) and what ``import requests`` alone costs next to the copy of requests the SDK vendors.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from cvcsync.adapters.s3 import S3ObjectStore
from cvcsync.config import SyncSettings
from cvcsync.http_api.signing import new_nonce, sign
from cvcsync.outputs.deadletters import DeadLetter
from cvcsync.outputs.letter_sinks import ObjectDeadLetterSink
from cvcsync_dev.emulator.moto import DUMMY_CREDENTIALS, MotoServer, start_moto
from cvcsync_dev.emulator.process import start_emulator
from figures import write_figures

KEY_ID, KEY_SECRET = "bench-key", "bench-secret-not-for-production"
HTTP_KEY_ID, HTTP_SECRET = "bench-http", "bench-http-secret-0123456789"
FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
STARTED_MARK = "cvcsync-bench: started"
FC_CREDENTIALS = {"access_key_id": "testing", "access_key_secret": "testing", "security_token": "testing"}
UPLOAD_KEY = "uploads/full/users.csv"
UPLOAD_USERS = 10

# argv: function folder, event file, function name. Times import + first event, as FC's runtime would run them.
HANDLER_CHILD = f"""
import sys, time
sys.stderr.write({STARTED_MARK!r} + "\\n")
started, cpu_started = time.perf_counter(), time.process_time()
sys.path.insert(0, sys.argv[1])
import index
from cvcsync.platform.runtime import local_fc_context
with open(sys.argv[2], "rb") as stream:
    event = stream.read()
answer = index.handler(event, local_fc_context(sys.argv[3], credentials={FC_CREDENTIALS!r}))
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
import orjson
answer = orjson.loads(answer) if isinstance(answer, bytes) else answer
print(orjson.dumps({{"seconds": elapsed, "cpu": cpu, "boto3": "boto3" in sys.modules, "answer": answer}}).decode())
"""

# argv: user id, key id, key secret, emulator host:port. The official SDK: import and one CreateUser call.
SDK_CHILD = f"""
import sys, time
sys.stderr.write({STARTED_MARK!r} + "\\n")
started, cpu_started = time.perf_counter(), time.process_time()
from aliyunsdkcore.client import AcsClient
from aliyunsdkaliyuncvc.request.v20191030.CreateUserRequest import CreateUserRequest
import json
client = AcsClient(sys.argv[2], sys.argv[3], "cn-hangzhou")
request = CreateUserRequest()
request.set_endpoint(sys.argv[4])
request.set_protocol_type("http")
request.set_UserInfo(json.dumps([{{"userId": sys.argv[1], "userName": "冷启动", "groupId": "88", "groupName": "G"}}]))
request.set_Count(1)
answer = json.loads(client.do_action_with_exception(request))
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "boto3": "boto3" in sys.modules, "answer": answer}}))
"""

IMPORT_ALONE = f"""
import sys, time
sys.stderr.write({STARTED_MARK!r} + "\\n")
started = time.perf_counter()
import {{module}}
print(time.perf_counter() - started)
"""

REQUESTS_FAMILY = ("requests", "urllib3", "charset_normalizer", "idna", "certifi", "chardet")
BOTO3_FAMILY = ("boto3", "botocore", "s3transfer", "dateutil")  # not jmespath: the SDK imports it too
VENDORED = "aliyunsdkcore.vendored."


@dataclass
class Prepared:
    """One cold start's input: the event file, the environment, and how to tell the answer is right."""

    event: Path
    env: dict[str, str]
    check: Callable[[Any], bool]


@dataclass
class Handler:
    name: str  # the folder under functions/
    what: str
    prepare: Callable[[int, Path], Prepared]
    boto3: bool = False


# --- what -X importtime says -------------------------------------------------------------------------------------


@dataclass
class ImportNode:
    name: str
    self_us: int
    cumulative_us: int
    children: list[ImportNode] = field(default_factory=list)


def import_tree(stderr: str) -> list[ImportNode]:
    """The import tree of what was imported after the child's start mark (interpreter start-up left out).

    ``-X importtime`` prints a module when its import ends, children (indented two more) before their parent.
    """
    _, _, after = stderr.partition(STARTED_MARK + "\n")
    pending: dict[int, list[ImportNode]] = {}
    for line in after.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        head, cumulative_us, raw_name = line.split("|", 2)
        self_us = head.partition(":")[2]
        depth = (len(raw_name) - len(raw_name.lstrip(" ")) - 1) // 2
        node = ImportNode(raw_name.strip(), int(self_us), int(cumulative_us), pending.pop(depth + 1, []))
        pending.setdefault(depth, []).append(node)
    return pending.get(0, [])


def split_import_time(
    roots: Iterable[ImportNode], classify: Callable[[str], str | None], inherited: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Milliseconds of import time per group: each module's own time goes to its group (``classify``), else to its
    nearest classified importer's (``inherited`` may rename that, e.g. stdlib pulled in by our modules), else to
    ``other`` (stdlib imported lazily at run time, outside any import)."""
    totals: dict[str, float] = {}
    inherited = inherited or {}

    def walk(node: ImportNode, owner: str | None) -> None:
        group = classify(node.name)
        label = group or (inherited.get(owner, owner) if owner else "other")
        totals[label] = totals.get(label, 0.0) + node.self_us / 1000
        for child in node.children:
            walk(child, group or owner)

    for root in roots:
        walk(root, None)
    return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda item: -item[1])}


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def handler_group(name: str) -> str | None:
    if _top(name) in REQUESTS_FAMILY:
        return "requests+urllib3"
    if _top(name) in BOTO3_FAMILY:
        return "boto3+botocore"
    if _top(name) in ("cvcsync", "index"):
        return "cvcsync"
    if name.startswith(VENDORED):
        return "requests (SDK's vendored copy)"
    if _top(name) in ("aliyunsdkcore", "aliyunsdkaliyuncvc"):
        return "official SDK"
    return None


HANDLER_INHERITED = {"cvcsync": "stdlib/orjson via cvcsync", "official SDK": "stdlib/jmespath via official SDK"}


def requests_part(name: str) -> str | None:
    """The parts of ``import requests`` (or of the SDK's vendored copy): each package, and the stdlib they load."""
    if name.startswith(VENDORED):
        rest = name[len(VENDORED) :].split(".")
        return rest[2] if rest[:2] == ["requests", "packages"] and len(rest) > 2 else rest[0]
    if _top(name) in REQUESTS_FAMILY:
        return _top(name)
    return "stdlib" if _top(name) in sys.stdlib_module_names else None


@dataclass(frozen=True)
class Bytecode:
    """Where a child's bytecode comes from, in a cache of the bench's own (``-X pycache_prefix``), so that what
    others edit in this checkout meanwhile (with ``PYTHONDONTWRITEBYTECODE`` set) is not compiled at every start.

    ``write=True``: compiled once by a warm-up run, then read, as for a package shipping ``.pyc`` files (or an SDK
    installed by pip, which compiles them). ``write=False`` over a cache holding only the standard library: every
    other module compiled from source at each start, as for a zip without ``.pyc`` on a read-only code directory.
    """

    prefix: Path
    write: bool

    def command(self, *, importtime: bool = False) -> list[str]:
        return [sys.executable, "-X", f"pycache_prefix={self.prefix}", *(["-X", "importtime"] if importtime else [])]

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return out if self.write else {**out, "PYTHONDONTWRITEBYTECODE": "1"}


def stdlib_only(compiled: Bytecode, target: Path) -> Bytecode:
    """A read-only cache holding the standard library's bytecode from ``compiled`` and nothing else."""
    relative = Path(sysconfig.get_paths()["stdlib"]).relative_to("/")  # not platstdlib: in a venv, site-packages
    shutil.copytree(compiled.prefix / relative, target / relative, dirs_exist_ok=True)
    return Bytecode(target, write=False)


def run_child(
    code: str, args: list[str], env: Mapping[str, str], bytecode: Bytecode, *, importtime: bool = False
) -> tuple[str, str]:
    command = [*bytecode.command(importtime=importtime), "-c", code, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=bytecode.env(env), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout, done.stderr


# --- the events ----------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, emulator_url: str, moto: MotoServer) -> None:
        self.emulator_url = emulator_url
        self.moto = moto
        self.s3 = moto.s3_client()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CVC", "AWS_", "ALIBABA_CLOUD_"))}
        self.base_env = {
            **clean,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            "CVC_ENDPOINT": emulator_url,
            "CVCSYNC_LOG_LEVEL": "INFO",  # as template.yml deploys the functions: their log lines are part of it
        }
        self.s3_env = {
            "CVCSYNC_S3_ENDPOINT": moto.url,
            "CVCSYNC_S3_REGION": "us-east-1",
            "CVCSYNC_S3_ADDRESSING_STYLE": "path",
        }

    def queue(self, n: int, folder: Path) -> Prepared:
        uid = f"cold-q-{n}-{time.time_ns()}"
        change = {
            "type": "upsert",
            "eventId": uid,
            "occurredAt": "2024-05-01T00:00:00Z",
            "user": {"userId": uid, "userName": "冷启动", "groupId": "88", "groupName": "G"},
        }
        event = {
            "TopicOwner": "1",
            "Message": orjson.dumps(change).decode(),
            "Subscriber": "1",
            "PublishTime": 1,
            "SubscriptionName": "s",
            "MessageMD5": "x",
            "TopicName": "t",
            "MessageId": uid,
        }
        return Prepared(_event_file(folder, event), dict(self.base_env), lambda a: a["outcomes"]["created"] == 1)

    def upload(self, n: int, folder: Path) -> Prepared:
        bucket = f"cold-upload-{n}-{time.time_ns() % 10**9}"
        self.s3.create_bucket(Bucket=bucket)
        rows = ["userId,userName,groupId,groupName,departName,userMobile"]
        rows += [f"cold-u-{bucket}-{i},用户{i},88,示例科技,研发部,138{i:08d}" for i in range(UPLOAD_USERS)]
        body = ("\n".join(rows) + "\n").encode()
        self.s3.put_object(Bucket=bucket, Key=UPLOAD_KEY, Body=body)
        event = {
            "events": [
                {
                    "eventName": "ObjectCreated:PutObject",
                    "eventSource": "acs:oss",
                    "eventTime": "2024-05-01T02:00:00.000Z",
                    "eventVersion": "1.0",
                    "region": "cn-hangzhou",
                    "oss": {
                        "bucket": {"name": bucket, "arn": f"acs:oss:cn-hangzhou:0:{bucket}", "ownerIdentity": "0"},
                        "object": {"key": UPLOAD_KEY, "size": len(body), "eTag": "x", "deltaSize": len(body)},
                        "ossSchemaVersion": "1.0",
                        "ruleId": "cvc-sync",
                    },
                    "userIdentity": {"principalId": "0"},
                }
            ]
        }
        return Prepared(
            _event_file(folder, event),
            {**self.base_env, **self.s3_env},
            lambda a: a["runs"][0]["outcomes"]["created"] == UPLOAD_USERS,
        )

    def http(self, n: int, folder: Path) -> Prepared:
        uid = f"cold-h-{n}-{time.time_ns()}"
        path, query = f"/users/{uid}", "source=hr-portal"
        body = orjson.dumps({"userName": "冷启动", "groupId": "88", "groupName": "示例科技", "departName": "市场部"})
        headers = {"Content-Type": "application/json", "User-Agent": "curl/8.5.0"}
        stamp = int(time.time())
        headers.update(
            sign("PUT", path, query, body, key_id=HTTP_KEY_ID, secret=HTTP_SECRET, timestamp=stamp, nonce=new_nonce())
        )
        event = {
            "version": "v1",
            "rawPath": path,
            "body": body.decode(),
            "isBase64Encoded": False,
            "headers": headers,
            "queryParameters": {"source": "hr-portal"},
            "requestContext": {
                "accountId": "1234567890123456",
                "domainName": "cvc-sync-http.cn-hangzhou.fcapp.run",
                "http": {"method": "PUT", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10"},
                "requestId": f"1-{uid}",
                "time": "2024-05-01T02:00:05Z",
                "timeEpoch": "1714528805123",
            },
        }
        env = {**self.base_env, "CVCSYNC_HTTP_KEYS": f"{HTTP_KEY_ID}:{HTTP_SECRET}"}
        return Prepared(_event_file(folder, event), env, lambda a: a["statusCode"] == 200)

    def scheduled(self, n: int, folder: Path) -> Prepared:
        bucket = f"cold-state-{n}-{time.time_ns() % 10**9}"
        self.s3.create_bucket(Bucket=bucket)
        uid = f"cold-s-{bucket}"
        letter = DeadLetter(
            record={"userId": uid, "userName": "冷启动", "groupId": "88", "groupName": "示例科技"},
            source={"bucket": "uploads", "key": "users.csv", "line": 2, "userId": uid, "operation": "upsert"},
            error_code="ServiceUnavailable",
            error_message="the service is unavailable",
            attempts=2,
            failed_at=(datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="milliseconds"),
            run_id="run-cold",
            retryable=True,
        )
        sink = ObjectDeadLetterSink(S3ObjectStore(self.s3), bucket, SyncSettings().key("dead-letters") + "/")
        sink.put([letter])
        event = {"triggerTime": "2024-05-01T02:00:00Z", "triggerName": "cvc-sync-redrive", "payload": "redrive"}
        env = {**self.base_env, **self.s3_env, "CVCSYNC_STATE_BUCKET": bucket}
        return Prepared(_event_file(folder, event), env, lambda a: a["outcomes"].get("applied") == 1)

    def sdk(self, n: int) -> tuple[list[str], dict[str, str]]:
        uid = f"cold-sdk-{n}-{time.time_ns()}"
        return [uid, KEY_ID, KEY_SECRET, self.emulator_url.removeprefix("http://")], dict(self.base_env)


def _event_file(folder: Path, event: Any) -> Path:
    path = folder / "event.json"
    path.write_bytes(orjson.dumps(event))
    return path


def cold_handler(
    handler: Handler, n: int, bytecode: Bytecode, *, importtime: bool = False
) -> tuple[dict[str, Any], str]:
    with tempfile.TemporaryDirectory() as fresh_tmp:  # a new container: its /tmp is empty
        folder = Path(fresh_tmp)
        prepared = handler.prepare(n, folder)
        env = {**prepared.env, "TMPDIR": fresh_tmp}
        args = [str(FUNCTIONS / handler.name), str(prepared.event), handler.name]
        out, err = run_child(HANDLER_CHILD, args, env, bytecode, importtime=importtime)
    result = orjson.loads(out.strip().splitlines()[-1])
    if not prepared.check(result["answer"]):
        raise RuntimeError(f"{handler.name}: unexpected answer {result['answer']}")
    return result, err


def cold_sdk(bench: Bench, n: int, bytecode: Bytecode, *, importtime: bool = False) -> tuple[dict[str, Any], str]:
    args, env = bench.sdk(n)
    with tempfile.TemporaryDirectory() as fresh_tmp:
        out, err = run_child(SDK_CHILD, args, {**env, "TMPDIR": fresh_tmp}, bytecode, importtime=importtime)
    result = orjson.loads(out.strip().splitlines()[-1])
    if not result["answer"].get("Success"):
        raise RuntimeError(f"official SDK: unexpected answer {result['answer']}")
    return result, err


@dataclass
class Side:
    """The samples of one side (a handler or the SDK) in one bytecode setting: wall and CPU ms per run."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, result: Mapping[str, Any]) -> None:
        self.wall.append(result["seconds"] * 1000)
        self.cpu.append(result["cpu"] * 1000)

    def figures(self) -> dict[str, Any]:
        return {
            "ms": round(statistics.median(self.wall), 1),
            "cpuMs": round(statistics.median(self.cpu), 1),
            "samplesMs": [round(s, 1) for s in self.wall],
        }


def measure(bench: Bench, handlers: list[Handler], runs: int, bytecode: Bytecode) -> tuple[Side, dict[str, Side]]:
    """``runs`` cold starts of the SDK and of each handler, interleaved: the machine's load falls on all alike."""
    sdk, ours = Side(), {h.name: Side() for h in handlers}
    for n in range(runs):
        sdk.add(cold_sdk(bench, n, bytecode)[0])
        for handler in handlers:
            result, _ = cold_handler(handler, n, bytecode)
            ours[handler.name].add(result)
            handler.boto3 = handler.boto3 or result["boto3"]
    return sdk, ours


def median_split(splits: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for s in splits for k in s}
    medians = {k: round(statistics.median(s.get(k, 0.0) for s in splits), 1) for k in keys}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def import_alone(
    module: str, runs: int, traced: int, env: Mapping[str, str], bytecode: Bytecode
) -> tuple[float, dict[str, float]]:
    """(median ms of ``import module`` in fresh processes, median -X importtime split by package)."""
    code = IMPORT_ALONE.format(module=module)
    samples = [float(run_child(code, [], env, bytecode)[0]) * 1000 for _ in range(runs)]
    trees = [import_tree(run_child(code, [], env, bytecode, importtime=True)[1]) for _ in range(traced)]
    return statistics.median(samples), median_split([split_import_time(tree, requests_part) for tree in trees])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per side (at least 5)")
    parser.add_argument("--importtime-runs", type=int, default=3)
    parser.add_argument("--uncompiled-runs", type=int, default=5, help="runs without .pyc (0: skip)")
    parser.add_argument("--only", nargs="*", default=None, help="function folders to measure (default: all four)")
    args = parser.parse_args()
    runs = max(5, args.runs)
    logging.getLogger("cvcsync").setLevel(logging.ERROR)  # the bench's own set-up writes dead letters on purpose

    os.environ.update(DUMMY_CREDENTIALS)  # the bench's own boto3 (moto accepts anything; nothing leaves loopback)
    emulator = start_emulator("--capacity", "10000000", keys=[f"{KEY_ID}:{KEY_SECRET}"], admin=False)
    moto = start_moto()
    caches = Path(tempfile.mkdtemp(prefix="cvcsync-bench-pyc-"))
    try:
        bench = Bench(emulator.url, moto)
        handlers = [
            Handler("queue_changes", "MNS topic message, one upsert, no state bucket", bench.queue),
            Handler("object_upload", f"OSS PutObject, {UPLOAD_USERS}-user CSV in S3 (moto), first sync", bench.upload),
            Handler("http_api", "FC 3.0 HTTP event, signed PUT /users/{id}", bench.http),
            Handler("scheduled", "FC timer redrive, one dead letter in S3 (moto)", bench.scheduled),
        ]
        if args.only:
            handlers = [h for h in handlers if h.name in args.only]
        compiled = Bytecode(caches / "compiled", write=True)
        env = dict(bench.base_env)
        for module in ("requests", "aliyunsdkcore.vendored.requests"):
            run_child(IMPORT_ALONE.format(module=module), [], env, compiled)
        measure(bench, handlers, 1, compiled)  # warm-up: compiles into the cache; not counted
        sdk, ours = measure(bench, handlers, runs, compiled)
        splits: dict[str, list[dict[str, float]]] = {h.name: [] for h in handlers}
        sdk_splits = []
        for n in range(args.importtime_runs):
            traced = cold_sdk(bench, 1000 + n, compiled, importtime=True)[1]
            sdk_splits.append(split_import_time(import_tree(traced), handler_group, HANDLER_INHERITED))
            for handler in handlers:
                traced = cold_handler(handler, 1000 + n, compiled, importtime=True)[1]
                splits[handler.name].append(split_import_time(import_tree(traced), handler_group, HANDLER_INHERITED))
        ours_requests, ours_parts = import_alone("requests", runs, args.importtime_runs, env, compiled)
        sdk_requests, sdk_parts = import_alone(
            "aliyunsdkcore.vendored.requests", runs, args.importtime_runs, env, compiled
        )
        uncompiled: tuple[Side, dict[str, Side]] | None = None
        if args.uncompiled_runs:
            uncompiled = measure(bench, handlers, args.uncompiled_runs, stdlib_only(compiled, caches / "stdlib"))
    finally:
        shutil.rmtree(caches, ignore_errors=True)
        moto.stop()
        emulator.stop()

    sdk_ms = statistics.median(sdk.wall)
    print(f"cold start: fresh interpreter, empty TMPDIR, import + first event; median of {runs} per side")
    print(f"{'handler':<16} {'event':<58} {'ms':>6} {'CPU ms':>6} {'SDK ms':>6} {'ratio':>6}  boto3")
    rows = []
    for handler in handlers:
        side = ours[handler.name].figures()
        print(
            f"{handler.name:<16} {handler.what:<58} {side['ms']:>6.0f} {side['cpuMs']:>6.0f} {sdk_ms:>6.0f} "
            f"{sdk_ms / side['ms']:>5.2f}x  {handler.boto3}"
        )
        row = {"name": handler.name, "event": handler.what, **side, "boto3Imported": handler.boto3}
        row["importSplitMs"] = median_split(splits[handler.name])
        if uncompiled is not None:
            row["uncompiled"] = uncompiled[1][handler.name].figures()
        rows.append(row)
    sdk_cpu = statistics.median(sdk.cpu)
    print(f"{'official SDK':<16} {'import aliyunsdkcore + one CreateUser call':<58} {sdk_ms:>6.0f} {sdk_cpu:>6.0f}")
    print("ratio: the SDK's time over ours (>= 1 meets the target: cold start <= the official SDK's)")
    if uncompiled is not None:
        sdk_uncompiled = statistics.median(uncompiled[0].wall)
        print(f"\nwithout .pyc (a package built without its target interpreter), median of {args.uncompiled_runs}:")
        for row in rows:
            ms = row["uncompiled"]["ms"]
            ratio = sdk_uncompiled / ms
            print(f"  {row['name']:<16} {ms:>6.0f} ms   official SDK {sdk_uncompiled:.0f} ms   ratio {ratio:.2f}x")
    print(f"\nimport time split (ms under -X importtime, median of {args.importtime_runs}; inflated by the tracing)")
    for row in rows:
        print(f"  {row['name']:<16} " + ", ".join(f"{k} {v:.0f}" for k, v in row["importSplitMs"].items()))
    sdk_split = median_split(sdk_splits)
    print(f"  {'official SDK':<16} " + ", ".join(f"{k} {v:.0f}" for k, v in sdk_split.items()))
    print(f"\nimport alone, fresh processes, median of {runs}:")
    print(f"  import requests (ours: requests + urllib3 2)  {ours_requests:>6.0f} ms   " + _parts(ours_parts))
    print(f"  the SDK's vendored requests                   {sdk_requests:>6.0f} ms   " + _parts(sdk_parts))
    figures: dict[str, Any] = {
        "runs": runs,
        "importtimeRuns": args.importtime_runs,
        "sdk": {"what": "import aliyunsdkcore + one CreateUser call", **sdk.figures(), "importSplitMs": sdk_split},
        "handlers": rows,
        "requestsImport": {
            "oursMs": round(ours_requests, 1),
            "oursSplitMs": ours_parts,
            "sdkVendoredMs": round(sdk_requests, 1),
            "sdkVendoredSplitMs": sdk_parts,
        },
    }
    if uncompiled is not None:
        figures["uncompiled"] = {"runs": args.uncompiled_runs, "sdk": uncompiled[0].figures()}
    write_figures("bench_cold_start", figures)
    return 0


def _parts(parts: Mapping[str, float]) -> str:
    return "(-X importtime: " + ", ".join(f"{k} {v:.0f}" for k, v in parts.items()) + ")"


if __name__ == "__main__":
    sys.exit(main())
