"""The ``cvcsync`` command: talk to CVC (or the emulator) from a terminal or a script.

Results are JSON on stdout (indented on a terminal); problems are one clear line each on stderr (rows rejected
for one reason are one line with the fix: ``cli_problems``); the exit code says what happened, as the README's
table lists: 0 done (or a dry run), 1 CVC refused or failed records, 2 usage or configuration (argparse's own
errors, a missing file, an unusable event file), 3 invalid input (some records rejected), 4 refused (a safety
gate, or a stale saved plan), 5 ``--reconcile`` found drift. Known failures never end in a traceback.

``create`` and ``sync`` read a file the same way (``cli_files``); planning shows progress on a terminal (or with
``--progress``) by counting what is read from the file (``cli_output.ReadProgress``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from cvcsync import __version__
from cvcsync.adapters.cvc import CvcClient
from cvcsync.cli_files import cmd_create, file_env, file_options, local_file, planning_progress
from cvcsync.cli_output import (
    EXIT_CVC,
    EXIT_DRIFT,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Progress,
    ReadProgress,
    emit,
    summary_table,
)
from cvcsync.config import ENV_LOG_LEVEL
from cvcsync.engine.outcomes import RunStatus
from cvcsync.errors import ConfigurationError, CvcError, CvcSyncError, InvalidInputError
from cvcsync.inputs.formats import FORMATS
from cvcsync.inputs.records import user_from_cvc
from cvcsync.logs import configure_logging

if TYPE_CHECKING:
    from cvcsync.platform.context import SyncContext

# InvalidInputError codes that are the caller's mistake on the command line, not bad records: usage errors.
USAGE_CODES = frozenset({"Usage", "NoSuchFile", "BadEventFile"})

_summary_table = summary_table  # the demo's name for it


def _client(args: argparse.Namespace) -> CvcClient:
    return CvcClient.from_env(endpoint=args.endpoint)


def _cmd_get(args: argparse.Namespace) -> int:
    emit(user_from_cvc(_client(args).get_user(args.user_id)))
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    users = [user_from_cvc(info) for info in _client(args).list_users(page_size=args.page_size)]
    emit(users)
    return EXIT_OK


def _cmd_account(args: argparse.Namespace) -> int:
    emit(_client(args).get_account_info())
    return EXIT_OK


def _cmd_create(args: argparse.Namespace) -> int:
    return cmd_create(args, lambda: _client(args))


def _cmd_delete(args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(uid.strip() for uid in args.user_ids if uid.strip()))
    if args.dry_run:
        emit({"dryRun": True, "wouldDelete": ids})
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
    emit({"deleted": deleted, "failedBatches": failed})
    return EXIT_CVC if failed else EXIT_OK


def _cmd_sync(args: argparse.Namespace) -> int:
    from cvcsync.runs.export import apply_saved_plan, sync_source
    from cvcsync_dev.local import local_context, open_input

    progress: Progress | None = None
    reading: ReadProgress | None = None

    def start(total: int) -> None:
        nonlocal progress
        if reading is not None:
            reading.finish()  # planning is over: its last line stays, the apply's starts below it
        progress = Progress("applied", total, sys.stderr, enabled=args.progress)

    def advance(count: int) -> None:
        if progress is not None:
            progress.advance(count)

    if not args.reconcile and bool(args.apply_plan) == bool(args.source):  # before anything is made or called
        raise InvalidInputError("give either FILE_OR_S3_URL, --apply-plan F or --reconcile", code="Usage")
    plan_file = local_file(args.apply_plan) if args.apply_plan and not args.reconcile else None
    env = file_env(args)
    ctx = local_context(args.state, _client(args), env=env, on_progress=advance, on_apply_start=start)
    if args.reconcile:
        return _reconcile(ctx, args)
    if plan_file is not None:
        with plan_file.open("rb") as artefact:
            report = apply_saved_plan(artefact, ctx).to_dict()
    else:
        raw, name, source = open_input(args.source, env)
        reading = planning_progress(raw, Path(source["file"]) if "file" in source else None, args)
        mode = args.mode or ctx.settings.mode_for(name)
        dry_run = args.dry_run or bool(args.plan_out)
        with reading as stream, Path(args.plan_out).open("wb") if args.plan_out else _nothing() as plan_out:
            report = sync_source(
                cast(IO[bytes], stream),
                name=name,
                source=source,
                mode=mode,
                ctx=ctx,
                dry_run=dry_run,
                approved=args.approve,
                plan_out=plan_out,
            ).to_dict()
            reading.finish()
    if args.json:
        emit(report)
    else:
        _print_summary(report, ctx)
    if report["refused"]:
        return EXIT_REFUSED
    if report["status"] == RunStatus.REJECTED.value:  # the file as a whole could not be read
        return EXIT_INVALID
    if report["deadLetters"]:
        return EXIT_CVC
    return EXIT_INVALID if report["outcomes"].get("rejected") or report["planned"].get("reject") else EXIT_OK


def _print_summary(report: dict[str, Any], ctx: SyncContext) -> None:
    """The summary table, its problems grouped from the run's full list (the report holds the first 100 only)."""
    from cvcsync.engine.outcomes import RunReport
    from cvcsync.runs.lifecycle import report_key

    key = report_key(ctx, RunReport.from_dict(report)).removesuffix(".json")
    root = getattr(ctx.store, "root", None)  # a local state directory: name the file as a path
    where = str(Path(root, ctx.output_bucket, key)) if root is not None else f"s3://{ctx.output_bucket}/{key}"
    problems: Iterator[dict[str, Any]] | None = None
    if report["problemCount"] > len(report["problems"]):
        problems = _stored_problems(ctx, key + ".problems.ndjson")
    summary_table(report, sys.stdout, problems=problems, problems_at=f"{where}.problems.csv")


def _stored_problems(ctx: SyncContext, key: str) -> Iterator[dict[str, Any]] | None:
    """Every problem of the run, streamed from its report files (a million stay a million lines, not a list);
    None, so the report's first ones do, where the file cannot be opened."""
    from cvcsync.adapters.objects import ObjectStoreError

    try:
        stream = ctx.store.open(ctx.output_bucket, key)
    except ObjectStoreError:
        return None
    return _problem_lines(stream)


def _problem_lines(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    with stream:
        for line in stream:
            if line.strip():
                yield orjson.loads(line)


def _reconcile(ctx: Any, args: argparse.Namespace) -> int:
    """The state against CVC's own directory (ListUsers): drift, and with --rebuild-state, a state equal to CVC."""
    import uuid

    from cvcsync.engine.reconcile import reconcile

    drift = reconcile(ctx.cvc, ctx.state, run_id=str(uuid.uuid4()), rebuild=args.rebuild_state).to_dict()
    if args.json:
        emit(drift)
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


def _nothing() -> AbstractContextManager[None]:
    return nullcontext()


def _cmd_invoke(args: argparse.Namespace) -> int:
    from cvcsync_dev.local import invoke

    emit(invoke(args.function, Path(args.event), platform=args.platform, timeout=args.timeout))
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
    emit(answer)
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

    create = commands.add_parser(
        "create", help="upsert the users of an export, read and mapped as sync reads it (CreateUser; never deletes)"
    )
    create.add_argument("file")
    create.add_argument("--format", choices=FORMATS, help="default: from the extension, else from the content")
    file_options(create)
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
    file_options(sync)
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
        if exc.code in USAGE_CODES:
            print(f"cvcsync: error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        hint = " — e.g. --encoding gbk" if exc.code == "BadEncoding" and "--encoding" not in exc.message else ""
        print(f"cvcsync: invalid input: {exc.message}{hint}", file=sys.stderr)
        return EXIT_INVALID
    except CvcSyncError as exc:
        if exc.code == "StateChanged":  # a saved plan made against an older state: refused, plan again
            print(f"cvcsync: refused: {exc.message}", file=sys.stderr)
            return EXIT_REFUSED
        print(f"cvcsync: error: {exc.message}", file=sys.stderr)
        return EXIT_CVC
    except OSError as exc:
        if exc.filename is None:  # not about a file the command line named
            raise
        print(f"cvcsync: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return code


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["emulator"]:
        # Everything after "emulator" is the emulator's own (argparse's REMAINDER drops options like --host).
        return _run(argparse.Namespace(run=_cmd_emulator, emulator_args=arguments[1:]))
    args = build_parser().parse_args(arguments)
    level = "INFO" if args.verbose else os.environ.get(ENV_LOG_LEVEL, "ERROR")
    # JSON lines for a pipeline or a log collector; one readable line for a person at a terminal.
    form = os.environ.get("CVCSYNC_LOG_FORMAT", "").strip().lower() or ("text" if sys.stderr.isatty() else "json")
    configure_logging(level, text=form == "text")
    return _run(args)
