"""A cold start imports what its first event needs and nothing heavy besides (issue 15).

Each test is a new container: a fresh interpreter imports ``functions/<name>/index.py`` and, for the queue and HTTP
functions, hands it a first event as FC does (bytes), one that needs no network yet walks the path past its parsing,
settings, authentication and validation: the FC MNS sample, whose message is not a change (dead-lettered at once);
the FC 3.0 ``PUT /users/{id}`` sample, signed, without the group its user needs (400 after the signature is
checked); a SCIM create with a valid token and no state bucket (503 once SCIM has read it). No module named in the
lists below may then be loaded (a name covers its submodules); the upload and scheduled functions are checked after
the import alone, since boto3 must wait for their first S3 client. ``bench/bench_cold_start.py`` measures what the
path costs against its floor; a failure here names the chain of imports that loaded the module (from
``-X importtime``), which is the import to move into the function that needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.events import load_event
from support.http_api import AUTH_ENV, signed_headers
from support.scim_api import SCIM_TOKEN

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

# Never on a first event of any function: libraries and code a cold start must not pay for before it needs them.
HEAVY = {
    "boto3": "the AWS SDK: imported with the first S3 or SQS client, never at import",
    "botocore": "boto3's core",
    "s3transfer": "boto3's transfer manager",
    "openpyxl": "the workbook reader: only an .xlsx or .xlsm upload needs it",
    "jsonschema": "schema validation: nothing in the functions validates with it",
    "multiprocessing": "process pools: nothing in the functions forks",
    "asyncio": "an event loop: the functions are synchronous",
    "logging.config": "logging is configured by cvcsync.logs, in code",
    "aliyunsdkcore": "the official CVC SDK: cvc-sync signs its own calls",
    "fc2": "FC's SDK: continuations are signed by cvcsync.platform.dispatch",
    "cvcsync_dev": "development code (the emulator, the demo) that the layers do not ship",
}
# Never on a first change (a queue message, an HTTP user write) without a state bucket.
NOT_FOR_CHANGES = {
    **HEAVY,
    "cvcsync.adapters.s3": "the S3 adapter: no state bucket is configured",
    "cvcsync.outputs.letter_sinks": "dead letters in a store or a queue: without a state bucket they are log lines",
    "cvcsync.runs.export": "the export machinery: a change reads no file",
    "cvcsync.runs.lifecycle": "the export lifecycle (checkpoints, fan-out)",
    "cvcsync.runs.continuation": "continuations of an export",
    "cvcsync.inputs.readers": "file readers",
    "cvcsync.inputs.columns": "the column mapping of files",
    "cvcsync.inputs.header_mapping": "the header mapping of files",
    "cvcsync.platform.dispatch": "continuations: only an export hands work on",
    "cvcsync.schedule": "the scheduled tasks",
    "cvcsync.adapters.secret_stores": "the remote secret stores: no secretsmanager:/ssm:/kms: reference is set",
}
NOT_FOR_QUEUE = {**NOT_FOR_CHANGES, "cvcsync.http_api": "the HTTP API"}
NOT_FOR_HTTP = {**NOT_FOR_CHANGES, "cvcsync.http_api.scim": "SCIM, for a request that is not SCIM's"}
NOT_FOR_UPLOAD_IMPORT = {**HEAVY, "cvcsync.http_api": "the HTTP API", "cvcsync.inputs.xlsx_rows": "workbooks"}
NOT_FOR_SCHEDULE_IMPORT = {
    **HEAVY,
    "cvcsync.http_api": "the HTTP API",
    "cvcsync.runs.export": "the export machinery: no scheduled task reads a file",
    "cvcsync.inputs.readers": "file readers",
}

# argv: function folder, function name, [event file]. Prints the loaded modules and the answer, as JSON.
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import index
answer = None
if len(sys.argv) > 3:
    from cvcsync.platform.runtime import local_fc_context
    with open(sys.argv[3], "rb") as stream:
        answer = index.handler(stream.read(), local_fc_context(sys.argv[2]))
    if isinstance(answer, bytes):
        answer = json.loads(answer)
print(json.dumps({"modules": sorted(sys.modules), "answer": answer}))
"""


def cold_start(
    tmp_path: Path, function: str, event: Any = None, env: Mapping[str, str] | None = None
) -> tuple[set[str], Any, dict[str, list[str]]]:
    """(modules loaded, the handler's answer, each module's chain of importers) of one fresh interpreter."""
    args = [str(FUNCTIONS / function), function]
    if event is not None:
        path = tmp_path / "event.json"
        path.write_bytes(orjson.dumps(event))
        args.append(str(path))
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(tmp_path),  # a new container: its /tmp is empty
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "cold-import-key",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "cold-import-secret",
        "CVC_ENDPOINT": "http://127.0.0.1:9",  # never called: no event here reaches CVC
        **({"PYTHONDONTWRITEBYTECODE": "1"} if os.environ.get("PYTHONDONTWRITEBYTECODE") else {}),
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD, *args],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    return set(result["modules"]), result["answer"], import_chains(done.stderr)


def import_chains(stderr: str) -> dict[str, list[str]]:
    """Each module with the modules that imported it, innermost first, from ``-X importtime`` (which prints a module
    when its import ends, its children before it and indented two more)."""
    parent: dict[str, str] = {}
    pending: dict[int, list[str]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        raw = line.split("|", 2)[2]
        name = raw.strip()
        depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2
        for child in pending.pop(depth + 1, []):
            parent[child] = name
        pending.setdefault(depth, []).append(name)
    chains: dict[str, list[str]] = {}
    for name in parent.keys() | {n for names in pending.values() for n in names}:
        chain, seen = [name], {name}
        while chain[-1] in parent and parent[chain[-1]] not in seen:
            chain.append(parent[chain[-1]])
            seen.add(chain[-1])
        chains[name] = chain
    return chains


def heavy_loaded(modules: set[str], banned: Mapping[str, str], chains: Mapping[str, list[str]]) -> list[str]:
    """What of ``banned`` is loaded: the module, why it is not wanted, and who imported it."""
    found = []
    for name, why in banned.items():
        loaded = sorted(m for m in modules if m == name or m.startswith(name + "."))
        if loaded:
            importers = chains.get(loaded[0], [loaded[0]])[1:]
            by = " <- ".join(importers) if importers else "a function, while handling the event"
            found.append(f"{loaded[0]} ({why}), imported by {by}")
    return found


def test_the_queue_function_handles_its_first_message_without_heavy_modules(tmp_path: Path) -> None:
    event = load_event("fc/queue-mns-topic-json.json")  # an upsert without a userName: dead-lettered at once
    modules, answer, chains = cold_start(tmp_path, "queue_changes", event)
    assert answer["received"] == 1 and answer["deadLetters"] == 1  # the whole path ran, up to the dead letter
    assert heavy_loaded(modules, NOT_FOR_QUEUE, chains) == []


def test_the_http_function_handles_a_signed_user_write_without_heavy_modules(tmp_path: Path) -> None:
    event = load_event("http/fc3-put-user.json")
    user = orjson.loads(event["body"])
    del user["groupId"], user["groupName"]  # refused after the signature and the body are read: no CVC call
    event["body"] = orjson.dumps(user).decode()
    event["headers"].update(signed_headers("PUT", event["rawPath"], "source=hr-portal", event["body"].encode()))
    modules, answer, chains = cold_start(tmp_path, "http_api", event, AUTH_ENV)
    assert answer["statusCode"] == 400, answer
    assert "groupId" in answer["body"]  # the user's own problem: it went past authentication
    assert heavy_loaded(modules, NOT_FOR_HTTP, chains) == []


def test_a_scim_request_loads_scim_and_still_nothing_heavy(tmp_path: Path) -> None:
    event = load_event("http/fc3-put-user.json")
    path = "/scim/v2/Users"
    resource = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "cold.start@example.com"}
    event.update(rawPath=path, body=orjson.dumps(resource).decode(), queryParameters={})
    event["requestContext"]["http"].update(method="POST", path=path)
    event["headers"].update({"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"})
    modules, answer, chains = cold_start(tmp_path, "http_api", event, {"CVCSYNC_SCIM_TOKENS": SCIM_TOKEN})
    assert answer["statusCode"] == 503 and "state bucket" in answer["body"], answer  # read, authenticated, no store
    assert "cvcsync.http_api.scim.app" in modules
    not_for_scim = {k: v for k, v in NOT_FOR_CHANGES.items() if k != "cvcsync.adapters.s3"}  # SCIM's store is S3
    assert heavy_loaded(modules, not_for_scim, chains) == []


@pytest.mark.parametrize(
    ("function", "banned"),
    [("object_upload", NOT_FOR_UPLOAD_IMPORT), ("scheduled", NOT_FOR_SCHEDULE_IMPORT)],
)
def test_the_object_store_functions_import_no_sdk_before_their_first_event(
    tmp_path: Path, function: str, banned: Mapping[str, str]
) -> None:
    modules, answer, chains = cold_start(tmp_path, function)
    assert answer is None and "index" in modules
    assert heavy_loaded(modules, banned, chains) == []


def test_cold_imports_pause_the_collector_then_freeze_what_was_made() -> None:
    code = """
import gc
from cvcsync.platform.cold_start import cold_imports
before = gc.get_freeze_count()
with cold_imports():
    paused = not gc.isenabled()
    made = [[] for _ in range(1000)]
print(paused, gc.isenabled(), gc.get_freeze_count() >= before + 1000)
try:
    with cold_imports():
        raise ImportError("a handler's import failed")
except ImportError:
    print(gc.isenabled())
gc.disable()
with cold_imports():
    pass
print(gc.isenabled())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True", "True", "True", "False"]  # a runtime's disabled collector stays so


def test_a_heavy_module_is_named_with_the_imports_that_loaded_it() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       900 |        900 |       botocore",
            "import time:       100 |       1000 |     boto3",
            "import time:        50 |       1050 |   cvcsync.adapters.s3",
            "import time:        10 |       1060 | cvcsync.platform.services",
        ]
    )
    chains = import_chains(stderr)
    assert chains["botocore"] == ["botocore", "boto3", "cvcsync.adapters.s3", "cvcsync.platform.services"]
    found = heavy_loaded({"boto3", "botocore", "json"}, {"boto3": "the AWS SDK"}, chains)
    assert found == ["boto3 (the AWS SDK), imported by cvcsync.adapters.s3 <- cvcsync.platform.services"]
    lazily = heavy_loaded({"openpyxl"}, {"openpyxl": "workbooks"}, import_chains("import time: 5 | 5 | openpyxl"))
    assert lazily == ["openpyxl (workbooks), imported by a function, while handling the event"]
