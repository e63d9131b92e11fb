"""The ``cvcsync`` command: talk to CVC (or the emulator) from a terminal or a script.

Results are JSON on stdout (indented on a terminal); problems are one clear line each on stderr; the exit code
says what happened: 0 done, 1 CVC refused or failed, 2 usage or configuration, 3 invalid input (some records
rejected), so scripts can tell them apart.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from . import __version__
from .config import ENV_LOG_LEVEL
from .cvc import CvcClient
from .errors import ConfigurationError, CvcError, CvcSyncError, InvalidInputError
from .logs import configure_logging
from .readers import FORMATS, read_records
from .records import RecordError, User, parse_user, user_from_cvc

EXIT_OK, EXIT_CVC, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3
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


def _cmd_emulator(args: argparse.Namespace) -> int:
    try:
        from .emulator.server import main as emulator_main
    except ImportError as exc:  # waitress is an extra: the functions never need it
        raise ConfigurationError(
            f"the emulator needs the 'emulator' extra (pip install 'cvcsync[emulator]'): {exc}"
        ) from exc
    return emulator_main(args.emulator_args)


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
        print(f"cvcsync: error: {exc.message}", file=sys.stderr)
        return EXIT_CVC
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "INFO" if args.verbose else os.environ.get(ENV_LOG_LEVEL, "ERROR")
    configure_logging(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return _run(args)
