"""The commands' export files: the file options over the environment, progress while planning, and ``create``.

``create`` and ``sync`` read a file the same way: the same readers, the same column mapping (presets,
``CVCSYNC_COLUMN_MAP``) and validation, because both plan it with the engine's planner (``engine.plan``).
``create`` plans against an empty shadow state, so every valid user is a create; it upserts those, keeps no state
and never deletes (a row saying the person left is skipped, with a note). The options ``--encoding``,
``--group-id`` and ``--group-name`` win over ``CVCSYNC_ENCODING``, ``CVCSYNC_GROUP_ID`` and ``CVCSYNC_GROUP_NAME``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

import orjson

from cvcsync.adapters.cvc import CvcClient
from cvcsync.cli_output import EXIT_CVC, EXIT_INVALID, EXIT_OK, Progress, ReadProgress, emit
from cvcsync.cli_problems import group_problems, grouped_lines
from cvcsync.config import ENV_ENCODING, ENV_GROUP_ID, ENV_GROUP_NAME, SyncSettings
from cvcsync.errors import CvcSyncError, InvalidInputError

MAX_PROBLEMS_SHOWN = 50  # problems listed one by one in create's JSON result (the console groups them all)


def file_options(command: argparse.ArgumentParser) -> None:
    """The options of commands that read an export; each wins over its environment variable."""
    command.add_argument(
        "--encoding", help=f"default: ${ENV_ENCODING}, else detected (UTF-8, UTF-8 or UTF-16 with BOM, else GB18030)"
    )
    command.add_argument("--group-id", help=f"groupId for records that have none (default: ${ENV_GROUP_ID})")
    command.add_argument("--group-name", help=f"groupName for records that have none (default: ${ENV_GROUP_NAME})")


def file_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment with the command line's file options over it: a flag wins over its variable."""
    env = dict(os.environ)
    for name, value in (
        (ENV_GROUP_ID, args.group_id),
        (ENV_GROUP_NAME, args.group_name),
        (ENV_ENCODING, getattr(args, "encoding", None)),
    ):
        if value:
            env[name] = value
    return env


def local_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise InvalidInputError(f"{text}: no such file", code="NoSuchFile")
    return path


def planning_progress(stream: IO[bytes], path: Path | None, args: argparse.Namespace) -> ReadProgress:
    total = path.stat().st_size if path is not None else None
    return ReadProgress(stream, total=total, stream=sys.stderr, enabled=args.progress)


def _notes(notices: Mapping[str, Any]) -> None:
    for notice in notices["first"]:
        print(f"cvcsync: note: {notice}", file=sys.stderr)
    if notices["count"] > len(notices["first"]):
        print(f"cvcsync: note: … and {notices['count'] - len(notices['first'])} more notes", file=sys.stderr)


def cmd_create(args: argparse.Namespace, client: Callable[[], CvcClient]) -> int:
    """Upsert every valid user of a file: planned by the engine's planner against an empty state, so the file is
    read, mapped and validated exactly as ``sync`` reads it; no shadow state, no deletions."""
    from cvcsync.engine.plan import build_plan
    from cvcsync.engine.state import ShadowState
    from cvcsync.engine.workspace import CREATE, DELETE, DELTA, DUPLICATE, REJECT, PlanInput
    from cvcsync.inputs.columns import ColumnMap
    from cvcsync.inputs.readers import read_records

    env = file_env(args)
    settings, mapper = SyncSettings.from_env(env), ColumnMap.from_env(env)
    path = local_file(args.file)
    with tempfile.TemporaryDirectory(prefix="cvcsync-create-") as scratch:
        workdir = Path(scratch)
        state = ShadowState(workdir / "nothing-synced.sqlite")  # empty: every valid user is planned as a create
        try:
            with planning_progress(path.open("rb"), path, args) as stream:
                binary = cast(IO[bytes], stream)  # a RawIOBase is a binary file object (typeshed does not say so)
                rows = read_records(binary, name=path.name, fmt=args.format, encoding=settings.encoding)
                item = PlanInput(rows, DELTA, settings.defaults, mapper, {"file": args.file})
                plan = build_plan(item, state, workdir)
                stream.finish()
        finally:
            state.close()
        try:
            _notes(plan.notices)
            counts = plan.op_counts()
            leavers = [user_id for _seq, user_id, _record in plan.pending(DELETE)]
            if leavers:
                sample = ", ".join(repr(u) for u in leavers[:3]) + (", …" if len(leavers) > 3 else "")
                print(
                    f"cvcsync: note: {len(leavers)} rows say the person left or is to be deleted ({sample}): create "
                    "never deletes; use `cvcsync sync` (or `cvcsync delete`) for them",
                    file=sys.stderr,
                )
            for line in grouped_lines(group_problems(p.to_dict() for p in plan.problems())):
                print(f"cvcsync: rejected: {line}", file=sys.stderr)  # before calling CVC: what will not be sent
            report: dict[str, Any] = {
                "file": args.file,
                "received": plan.rows_read(),
                "valid": counts[CREATE],
                "dryRun": args.dry_run,
            }
            upserted, failed = 0, list[dict[str, Any]]()
            if not args.dry_run and counts[CREATE]:
                upserted, failed = _upsert(client(), plan.pending(CREATE), counts[CREATE], args)
            report.update(
                upserted=upserted,
                rejected=counts[REJECT],
                duplicates=counts[DUPLICATE],
                notCreated=len(leavers),
                failed=sum(len(f["userIds"]) for f in failed),
                problemCount=plan.problem_count(),
                problems=[p.to_dict() for p in plan.problems(MAX_PROBLEMS_SHOWN)],
                failedBatches=failed,
            )
            outcomes = upserted + counts[REJECT] + counts[DUPLICATE] + len(leavers) + report["failed"]
            if not args.dry_run and report["received"] != outcomes:
                # Every row read ends in exactly one outcome: the invariant reports are trusted for.
                raise CvcSyncError(
                    f"accounting mismatch: read {report['received']} rows, {outcomes} outcomes",
                    code="AccountingMismatch",
                )
        finally:
            plan.close()
    emit(report)
    if failed:
        return EXIT_CVC
    return EXIT_INVALID if report["rejected"] else EXIT_OK  # a duplicate (an earlier copy of a row) is no problem


def _upsert(
    client: CvcClient, pending: Iterator[tuple[int, str, str | None]], total: int, args: argparse.Namespace
) -> tuple[int, list[dict[str, Any]]]:
    """CreateUser in batches: (users upserted, failed batches with their error and user ids)."""
    upserted, failed = 0, list[dict[str, Any]]()
    progress = Progress("upserted", total, sys.stderr, enabled=args.progress)
    for batch in client.iter_create(orjson.loads(record or "{}") for _seq, _user_id, record in pending):
        if batch.ok:
            upserted += len(batch.user_ids)
        else:
            assert batch.error is not None
            failed.append({**batch.error.to_dict(), "userIds": batch.user_ids})
            print(f"cvcsync: error: batch of {len(batch.user_ids)} users: {batch.error}", file=sys.stderr)
        progress.advance(len(batch.user_ids))
    return upserted, failed
