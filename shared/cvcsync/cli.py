"""The ``cvcsync`` command: talk to CVC (or the emulator) from a terminal or a script.

Results are JSON on stdout (indented on a terminal); problems are one clear line each on stderr; the exit code
says what happened: 0 done, 1 CVC refused or failed, 2 usage or configuration, 3 invalid input (some records
rejected), so scripts can tell them apart.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

import orjson

from cvcsync import __version__
from cvcsync.adapters.cvc import CvcClient
from cvcsync.config import ENV_LOG_LEVEL
from cvcsync.errors import ConfigurationError, CvcError, CvcSyncError, InvalidInputError
from cvcsync.inputs.formats import FORMATS
from cvcsync.inputs.readers import read_records
from cvcsync.inputs.records import RecordError, User, parse_user, user_from_cvc
from cvcsync.logs import configure_logging

# The README's exit codes; one per run status family (``engine.outcomes.RunStatus``).
EXIT_OK, EXIT_CVC, EXIT_USAGE, EXIT_INVALID, EXIT_REFUSED, EXIT_DRIFT = 0, 1, 2, 3, 4, 5
MAX_PROBLEMS_SHOWN = 50


def _emit(value: Any, stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    option = orjson.OPT_INDENT_2 if out.isatty() else 0
    out.write(orjson.dumps(value, option=option).decode() + "\n")
    out.flush()


class Progress:
    """``created 300/1000`` on a terminal's stderr, rewritten in place; silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int, stream: IO[str], enabled: bool | None = None) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled:
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r{self.label} {self.done}/{self.total}{end}")
            self.stream.flush()


def _client(args: argparse.Namespace) -> CvcClient:
    return CvcClient.from_env(endpoint=args.endpoint)


def _cmd_get(args: argparse.Namespace) -> int:
    _emit(user_from_cvc(_client(args).get_user(args.user_id)))
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    users = [user_from_cvc(info) for info in _client(args).list_users(page_size=args.page_size)]
    _emit(users)
    return EXIT_OK


def _cmd_account(args: argparse.Namespace) -> int:
    _emit(_client(args).get_account_info())
    return EXIT_OK


def _load_users(args: argparse.Namespace, problems: list[dict[str, Any]]) -> tuple[list[User], int]:
    """Validate every record of the file; collect rejections in ``problems``; return users and rows read."""
    defaults = {k: v for k, v in (("groupId", args.group_id), ("groupName", args.group_name)) if v}
    users: list[User] = []
    received = 0
    path = Path(args.file)
    if not path.is_file():
        raise InvalidInputError(f"{args.file}: no such file", code="NoSuchFile")
    with path.open("rb") as stream:
        for row in read_records(stream, name=path.name, fmt=args.format, encoding=args.encoding):
            received += 1
            if row.error:
                problems.append(
                    {"line": row.line, "code": "UnreadableRecord", "message": f"{row.position}: {row.error}"}
                )
                continue
            try:
                user = parse_user(row.data, position=row.position, defaults=defaults)
            except RecordError as exc:
                problems.append({"line": row.line, **exc.to_dict()})
                continue
            for notice in user.notices:
                print(f"cvcsync: note: {row.position}: {notice}", file=sys.stderr)
            users.append(user)
    return users, received


def _dedupe(users: list[User], problems: list[dict[str, Any]]) -> list[User]:
    """The last record of a userId wins, as it would in CVC; earlier ones are reported as duplicates."""
    last: dict[str, User] = {}
    for user in users:
        if user.user_id in last:
            problems.append({"code": "DuplicateUserId", "userId": user.user_id, "message": "superseded by a later row"})
        last[user.user_id] = user
    return list(last.values())


def _cmd_create(args: argparse.Namespace) -> int:
    problems: list[dict[str, Any]] = []
    users, received = _load_users(args, problems)
    unique = _dedupe(users, problems)
    report: dict[str, Any] = {"file": args.file, "received": received, "valid": len(unique), "dryRun": args.dry_run}
    failed: list[dict[str, Any]] = []
    upserted = 0
    if not args.dry_run and unique:
        client = _client(args)
        progress = Progress("upserted", len(unique), sys.stderr, enabled=args.progress)
        for batch in client.iter_create(u.to_cvc() for u in unique):
            if batch.ok:
                upserted += len(batch.user_ids)
            else:
                assert batch.error is not None
                failed.append({**batch.error.to_dict(), "userIds": batch.user_ids})
                print(f"cvcsync: error: batch of {len(batch.user_ids)} users: {batch.error}", file=sys.stderr)
            progress.advance(len(batch.user_ids))
    report.update(
        upserted=upserted,
        rejected=received - len(users),
        duplicates=len(users) - len(unique),
        failed=sum(len(f["userIds"]) for f in failed),
        problems=problems[:MAX_PROBLEMS_SHOWN],
        failedBatches=failed,
    )
    outcomes = upserted + report["rejected"] + report["duplicates"] + report["failed"]
    if not args.dry_run and received != outcomes:
        # Every row read ends in exactly one outcome: the invariant reports are trusted for.
        raise CvcSyncError(f"accounting mismatch: read {received} rows, {outcomes} outcomes", code="AccountingMismatch")
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        print(f"cvcsync: rejected: {problem.get('message')}", file=sys.stderr)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"cvcsync: … and {len(problems) - MAX_PROBLEMS_SHOWN} more problems", file=sys.stderr)
    _emit(report)
    if failed:
        return EXIT_CVC
    return EXIT_INVALID if report["rejected"] else EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(uid.strip() for uid in args.user_ids if uid.strip()))
    if args.dry_run:
        _emit({"dryRun": True, "wouldDelete": ids})
        return EXIT_OK
    failed: list[dict[str, Any]] = []
    deleted: list[str] = []
    for batch in _client(args).iter_delete(ids):
        if batch.ok:
            deleted.extend(batch.user_ids)
        else:
            assert batch.error is not None
            failed.append({**batch.error.to_dict(), "userIds": batch.user_ids})
            print(f"cvcsync: error: {batch.error}", file=sys.stderr)
    _emit({"deleted": deleted, "failedBatches": failed})
    return EXIT_CVC if failed else EXIT_OK


def _summary_table(report: dict[str, Any], stream: IO[str]) -> None:
    """The run at a glance, for a person at a terminal."""
    source = report["source"].get("file") or f"{report['source'].get('bucket')}/{report['source'].get('key')}"
    lines = [
        f"run {report['runId']}  {report['status'].upper()}  mode {report['mode']}  {source}",
        f"received {report['received']} "
        f"({report['rowsRead']} rows read, {report['impliedDeletions']} implied deletions)",
    ]
    planned_or_done = report["planned"] if report["status"] == "dry-run" else report["outcomes"]
    width = max(len(k) for k in planned_or_done)
    lines += [f"  {name:<{width}}  {count:>8}" for name, count in planned_or_done.items() if count]
    for guard in report["guards"]:
        mark = "ok" if guard["passed"] else ("OVERRIDDEN" if guard["overridden"] else "REFUSED")
        lines.append(f"  gate {guard['name']}: {mark} — {guard['detail']}")
    lines += [f"  ! {message}" for message in report["messages"]]
    lines += [f"  problem: {p.get('message')}" for p in report["problems"][:10]]
    if report["problemCount"] > 10:
        lines.append(f"  … {report['problemCount'] - 10} more problems in the report")
    calls = ", ".join(f"{k} {v}" for k, v in report["calls"].items()) or "none"
    lines.append(f"CVC calls: {calls}; dead letters: {report['deadLetters']}")
    stream.write("\n".join(lines) + "\n")


def _cmd_sync(args: argparse.Namespace) -> int:
    from cvcsync.runs.export import apply_saved_plan, sync_source
    from cvcsync_dev.local import local_context, open_input

    progress: Progress | None = None

    def start(total: int) -> None:
        nonlocal progress
        progress = Progress("applied", total, sys.stderr, enabled=args.progress)

    def advance(count: int) -> None:
        if progress is not None:
            progress.advance(count)

    ctx = local_context(args.state, _client(args), on_progress=advance, on_apply_start=start)
    if args.reconcile:
        return _reconcile(ctx, args)
    if bool(args.apply_plan) == bool(args.source):
        raise InvalidInputError("give either FILE_OR_S3_URL, --apply-plan F or --reconcile", code="Usage")
    if args.apply_plan:
        with Path(args.apply_plan).open("rb") as artefact:
            report = apply_saved_plan(artefact, ctx).to_dict()
    else:
        stream, name, source = open_input(args.source)
        mode = args.mode or ctx.settings.mode_for(name)
        dry_run = args.dry_run or bool(args.plan_out)
        with stream, Path(args.plan_out).open("wb") if args.plan_out else _nothing() as plan_out:
            report = sync_source(
                stream,
                name=name,
                source=source,
                mode=mode,
                ctx=ctx,
                dry_run=dry_run,
                approved=args.approve,
                plan_out=plan_out,
            ).to_dict()
    if args.json:
        _emit(report)
    else:
        _summary_table(report, sys.stdout)
    if report["refused"]:
        return EXIT_REFUSED
    if report["deadLetters"]:
        return EXIT_CVC
    return EXIT_INVALID if report["outcomes"].get("rejected") or report["planned"].get("reject") else EXIT_OK


def _reconcile(ctx: Any, args: argparse.Namespace) -> int:
    """The state against CVC's own directory (ListUsers): drift, and with --rebuild-state, a state equal to CVC."""
    import uuid

    from cvcsync.engine.reconcile import reconcile

    drift = reconcile(ctx.cvc, ctx.state, run_id=str(uuid.uuid4()), rebuild=args.rebuild_state).to_dict()
    if args.json:
        _emit(drift)
    else:
        verdict = "IN SYNC" if drift["inSync"] else "DRIFT"
        print(f"{verdict}: CVC holds {drift['cvcUsers']} users, the shadow state {drift['stateUsers']}")
        for name, count in drift["counts"].items():
            if count:
                sample = ", ".join(drift[name][:5])
                print(f"  {name}: {count} (e.g. {sample})")
        if drift["generationAfter"]:
            print(f"  state rebuilt from CVC: generation {drift['generationAfter']}")
    # Drift is news, not an error: its own exit code, so a scheduled `sync --reconcile` can alert on it. A rebuild
    # made the state equal CVC, so there is no drift left.
    return EXIT_OK if drift["inSync"] or drift["generationAfter"] else EXIT_DRIFT


def _nothing() -> Any:
    return nullcontext()


def _cmd_invoke(args: argparse.Namespace) -> int:
    from cvcsync_dev.local import invoke

    _emit(invoke(args.function, Path(args.event), platform=args.platform, timeout=args.timeout))
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    try:
        from cvcsync_dev.emulator.server import main as emulator_main
    except ImportError as exc:  # waitress is an extra: the functions never need it
        raise ConfigurationError(
            f"the emulator needs the 'emulator' extra (pip install 'cvcsync[emulator]'): {exc}"
        ) from exc
    return emulator_main(args.emulator_args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from cvcsync_dev.serve import serve

    return serve(host=args.host, port=args.port, threads=args.threads)


def _request_body(data: str | None) -> bytes | None:
    """``--data``: JSON text, ``@file``, or ``@-`` for standard input; checked to be JSON before it is signed."""
    if data is None:
        return None
    if data == "@-":
        raw = sys.stdin.buffer.read()
    elif data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise InvalidInputError(f"{data[1:]}: no such file", code="NoSuchFile")
        raw = path.read_bytes()
    else:
        raw = data.encode("utf-8")
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"--data is not JSON: {exc}", code="InvalidJson") from None
    return raw


def _cmd_call(args: argparse.Namespace) -> int:
    """One signed request to the HTTP API; the answer's JSON on stdout, its error on stderr, the status as exit code."""
    import requests

    from cvcsync_dev.call import auth_from_env, call, endpoint_from_env

    endpoint = endpoint_from_env(os.environ, args.api_endpoint)
    auth = auth_from_env(os.environ, endpoint=endpoint, key_id=args.key_id, bearer=args.bearer)
    try:
        response = call(args.method, args.path, body=_request_body(args.data), endpoint=endpoint, auth=auth)
    except requests.RequestException as exc:
        print(f"cvcsync: error: {type(exc).__name__} calling {endpoint}", file=sys.stderr)
        return EXIT_CVC
    try:
        answer = response.json()
    except ValueError:
        answer = {"status": response.status_code, "text": response.text[:2000]}
    _emit(answer)
    if response.status_code >= 400 or response.status_code == 207:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        detail = f"{error.get('code')}: {error.get('message')}" if error else "some records were not applied"
        print(f"cvcsync: HTTP {response.status_code} {detail}", file=sys.stderr)
    if response.status_code >= 500:
        return EXIT_CVC
    if response.status_code >= 400 or response.status_code == 207:
        return EXIT_INVALID
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvcsync", description="Keep CVC's user directory in step with HR.")
    parser.add_argument("--version", action="version", version=f"cvcsync {__version__}")
    parser.add_argument("--endpoint", help="CVC endpoint URL (default: $CVC_ENDPOINT or the public endpoint)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each CVC call (JSON lines on stderr)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = commands.add_parser("get", help="show one user (GetUser)")
    get.add_argument("user_id")
    get.set_defaults(run=_cmd_get)

    create = commands.add_parser("create", help="upsert the users of a CSV, JSON or NDJSON file (CreateUser)")
    create.add_argument("file")
    create.add_argument("--format", choices=FORMATS, help="default: from the extension, else from the content")
    create.add_argument("--encoding", help="default: detected (UTF-8, UTF-8 with BOM, UTF-16, else GB18030)")
    create.add_argument("--group-id", help="groupId for records that have none")
    create.add_argument("--group-name", help="groupName for records that have none")
    create.add_argument("--dry-run", action="store_true", help="validate and report; call nothing")
    create.add_argument("--progress", action="store_true", default=None, help="progress on stderr even off a terminal")
    create.set_defaults(run=_cmd_create)

    delete = commands.add_parser("delete", help="delete users by id (DeleteUser)")
    delete.add_argument("user_ids", nargs="+", metavar="USER_ID")
    delete.add_argument("--dry-run", action="store_true", help="show what would be deleted; call nothing")
    delete.set_defaults(run=_cmd_delete)

    listing = commands.add_parser("list", help="list every user (ListUsers, all pages)")
    listing.add_argument("--page-size", type=int, default=100, choices=range(1, 101), metavar="1..100")
    listing.set_defaults(run=_cmd_list)

    account = commands.add_parser("account", help="show licensed capacity and usage (GetAccountInfo)")
    account.set_defaults(run=_cmd_account)

    sync = commands.add_parser("sync", help="sync an HR export (file or s3://) into CVC with the full engine")
    sync.add_argument("source", nargs="?", metavar="FILE_OR_S3_URL")
    sync.add_argument("--mode", choices=("full", "delta"), help="default: from the key prefix, else full")
    sync.add_argument("--dry-run", action="store_true", help="plan and report; send nothing")
    sync.add_argument("--plan-out", metavar="F", help="write the dry run's plan (JSON) to F")
    sync.add_argument("--apply-plan", metavar="F", help="apply exactly a saved plan (refused if the state moved)")
    sync.add_argument("--state", metavar="DIR_OR_S3_URL", help="shadow state, reports, dead letters (default .cvcsync)")
    sync.add_argument("--approve", action="store_true", help="override the deletion and completeness gates")
    sync.add_argument("--reconcile", action="store_true", help="compare the shadow state with CVC (ListUsers)")
    sync.add_argument("--rebuild-state", action="store_true", help="with --reconcile: make the state equal CVC")
    sync.add_argument("--json", action="store_true", help="print the run report as JSON")
    sync.add_argument("--progress", action="store_true", default=None, help="progress on stderr even off a terminal")
    sync.set_defaults(run=_cmd_sync)

    invoke = commands.add_parser("invoke", help="run a function's handler locally with a realistic context")
    invoke.add_argument("function", help="a folder of functions/ (e.g. object_upload) or a path to an index.py")
    invoke.add_argument("event", metavar="EVENT_FILE")
    invoke.add_argument("--platform", choices=("fc", "lambda"), default="fc")
    invoke.add_argument("--timeout", type=int, default=60, help="the function's timeout in seconds")
    invoke.set_defaults(run=_cmd_invoke)

    serve = commands.add_parser("serve", help="run the HTTP API on loopback (the functions' WSGI app, waitress)")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default %(default)s)")
    serve.add_argument("--threads", type=int, default=8, help="worker threads (default %(default)s)")
    serve.set_defaults(run=_cmd_serve)

    call = commands.add_parser("call", help="send one signed request to the HTTP API (docs/http-api.md)")
    call.add_argument("method", type=str.upper, choices=("GET", "PUT", "POST", "DELETE"), metavar="METHOD")
    call.add_argument("path", metavar="PATH", help="the route, e.g. /users/u-1001 or '/runs/<id>?x=1'")
    call.add_argument("--data", metavar="JSON|@FILE", help="the JSON body: text, @file, or @- for stdin")
    call.add_argument(
        "--endpoint",
        dest="api_endpoint",
        metavar="URL",
        help="the HTTP API's base URL (default: $CVCSYNC_HTTP_ENDPOINT, else http://127.0.0.1:8080)",
    )
    call.add_argument("--key-id", help="which key of $CVCSYNC_HTTP_KEYS signs (default: the last listed)")
    call.add_argument("--bearer", action="store_true", help="send the last token of $CVCSYNC_HTTP_TOKENS instead")
    call.set_defaults(run=_cmd_call)

    emulator = commands.add_parser("emulator", help="run the local CVC emulator (see docs/emulator.md)", add_help=False)
    emulator.add_argument("emulator_args", nargs=argparse.REMAINDER)
    emulator.set_defaults(run=_cmd_emulator)
    return parser


def _run(args: argparse.Namespace) -> int:
    """Turn the error hierarchy into one stderr line and an exit code; never a traceback for a known failure."""
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        print(f"cvcsync: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except CvcError as exc:
        print(f"cvcsync: error: {exc}", file=sys.stderr)
        return EXIT_CVC
    except InvalidInputError as exc:
        print(f"cvcsync: invalid input: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    except CvcSyncError as exc:
        if exc.code == "StateChanged":  # a saved plan made against an older state: refused, plan again
            print(f"cvcsync: refused: {exc.message}", file=sys.stderr)
            return EXIT_REFUSED
        print(f"cvcsync: error: {exc.message}", file=sys.stderr)
        return EXIT_CVC
    return code


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["emulator"]:
        # Everything after "emulator" is the emulator's own (argparse's REMAINDER drops options like --host).
        return _run(argparse.Namespace(run=_cmd_emulator, emulator_args=arguments[1:]))
    args = build_parser().parse_args(arguments)
    level = "INFO" if args.verbose else os.environ.get(ENV_LOG_LEVEL, "ERROR")
    configure_logging(level)
    return _run(args)
