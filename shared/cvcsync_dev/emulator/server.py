"""Serving the emulator with waitress: the ``cvcsync emulator`` command line and an in-process ``EmulatorServer``.

waitress is imported here only, and only when a server is made: the functions never need it.

Once listening, ``cvcsync emulator`` prints its readiness line first (scripts and tests wait for it), then the
lines a person pastes into another shell to point the ``cvcsync`` command at it: ``export CVC_ENDPOINT=…`` and the
key the emulator accepts, and one example command. The key is the emulator's own, given on its command line or in
``CVC_EMULATOR_ACCESS_KEYS`` (``make emulator``: the documented demo key), valid nowhere else, so showing it is fine.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from cvcsync.config import (
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_CVC_ENDPOINT,
    ENV_EMULATOR_ACCESS_KEYS,
    ENV_SECURITY_TOKEN,
)
from cvcsync_dev.emulator.app import DEFAULT_CAPACITY, DEFAULT_CONCURRENT_MAX, DEFAULT_MAX_BATCH, EmulatorApp
from cvcsync_dev.emulator.faults import FaultSettings
from cvcsync_dev.emulator.keys import AccessKey, parse_access_key, parse_access_keys
from cvcsync_dev.emulator.limits import LimitSettings
from cvcsync_dev.emulator.store import MemoryStore, SqliteStore, Store
from cvcsync_dev.wsgi_server import WsgiServer

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_THREADS = 16
READY_LINE = "cvcsync emulator listening on {url}"
EXAMPLE_COMMAND = ".venv/bin/cvcsync create events/users/demo-users.csv"
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}  # noqa: S104  # nosec B104 - names, to print a reachable address


class _DropWarningFilter(logging.Filter):
    """A dropped connection is an injected fault, not news: keep waitress from warning about each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned too few bytes" not in record.getMessage()


_drop_filter = _DropWarningFilter()


class EmulatorServer(WsgiServer):
    """The emulator served by waitress (``WsgiServer``), for in-process use (benchmarks, tests, the demo)."""

    def __init__(
        self,
        app: EmulatorApp,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        logging.getLogger("waitress").addFilter(_drop_filter)
        super().__init__(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="cvcsync-emulator",
            connection_limit=max(100, threads * 64),
        )


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvcsync emulator",
        description="A local stand-in for the Alibaba Cloud Video Conferencing (CVC) user API, version 2019-10-30.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_port, default=0, help="port to listen on; 0 (the default) picks a free one")
    parser.add_argument(
        "--access-key",
        action="append",
        default=[],
        metavar="ID:SECRET[:TOKEN]",
        help=f"a key the emulator accepts (repeatable; with TOKEN an STS key). Default: ${ENV_EMULATOR_ACCESS_KEYS}",
    )
    parser.add_argument(
        "--disabled-key", action="append", default=[], metavar="ID", help="start with this key disabled (repeatable)"
    )
    parser.add_argument(
        "--denied-key", action="append", default=[], metavar="ID", help="start with this key lacking RAM permission"
    )
    parser.add_argument("--db", metavar="FILE", help="keep users in this SQLite file (default: in memory)")
    parser.add_argument(
        "--capacity", type=_non_negative_int, default=DEFAULT_CAPACITY, help="licensed users (default %(default)s)"
    )
    parser.add_argument(
        "--max-batch", type=_positive_int, default=DEFAULT_MAX_BATCH, help="users per call (default %(default)s)"
    )
    parser.add_argument(
        "--concurrent-max",
        type=_non_negative_int,
        default=DEFAULT_CONCURRENT_MAX,
        help="AccountConcurrentMax answered by GetAccountInfo (default %(default)s)",
    )
    parser.add_argument("--latency-ms", type=_non_negative_float, default=0.0, help="latency added to every call")
    parser.add_argument("--jitter-ms", type=_non_negative_float, default=0.0, help="random extra latency, up to this")
    parser.add_argument("--throttle-rate", type=_rate, default=0.0, help="share of calls answered Throttling (0-1)")
    parser.add_argument("--error-rate", type=_rate, default=0.0, help="share answered InternalError or 503 (0-1)")
    parser.add_argument("--drop-rate", type=_rate, default=0.0, help="share whose connection is dropped (0-1)")
    parser.add_argument(
        "--retry-after-ms",
        type=_non_negative_int,
        default=100,
        help="x-acs-retry-after value sent with half of the throttled answers (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault sequence (default %(default)s)")
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        metavar="N",
        help="answer Throttling.User to a call while N calls are being served (default: no limit)",
    )
    parser.add_argument(
        "--max-qps",
        type=_positive_float,
        metavar="R",
        help="answer Throttling.User, with x-acs-retry-after, beyond R calls a second (default: no limit)",
    )
    parser.add_argument("--admin", action="store_true", help="enable the admin API under /_emulator/")
    parser.add_argument(
        "--threads", type=_positive_int, default=DEFAULT_THREADS, help="worker threads (default %(default)s)"
    )
    return parser


def _keys_from(args: argparse.Namespace, env: Mapping[str, str]) -> list[AccessKey]:
    if args.access_key:
        keys = [parse_access_key(text) for text in args.access_key]
    else:
        keys = parse_access_keys(env.get(ENV_EMULATOR_ACCESS_KEYS, ""))
    if not keys:
        raise ValueError(
            f"no access keys: give --access-key ID:SECRET (repeatable) or set {ENV_EMULATOR_ACCESS_KEYS}"
            "=id:secret,id2:secret2"
        )
    known = {key.id: key for key in keys}
    for key_id in args.disabled_key:
        if key_id not in known:
            raise ValueError(f"--disabled-key {key_id}: no such access key")
        known[key_id].disabled = True
    for key_id in args.denied_key:
        if key_id not in known:
            raise ValueError(f"--denied-key {key_id}: no such access key")
        known[key_id].denied = True
    return list(known.values())


def paste_lines(url: str, keys: Sequence[AccessKey]) -> list[str]:
    """The lines to paste into another shell: the endpoint, a key the emulator accepts, one example command.

    The first usable plain key is shown (an STS key, with its token, only when there is no other). These are the
    emulator's own keys (``make emulator``: the documented local demo key), which nothing else accepts: printing
    them is the point, and no secret leaves this machine.
    """
    for host, reachable in _ANY_ADDRESS.items():
        url = url.replace(f"//{host}:", f"//{reachable}:")
    usable = [key for key in keys if not key.disabled and not key.denied] or list(keys)
    key = next((k for k in usable if k.token is None), usable[0])
    lines = [
        "# To use this emulator from another shell, paste these lines there.",
        "# The key is this emulator's local demo key: it is valid nowhere else, so showing it here is fine.",
        f"export {ENV_CVC_ENDPOINT}={shlex.quote(url)}",
        f"export {ENV_ACCESS_KEY_ID}={shlex.quote(key.id)}",
        f"export {ENV_ACCESS_KEY_SECRET}={shlex.quote(key.secret)}",
    ]
    if key.token is not None:
        lines.append(f"export {ENV_SECURITY_TOKEN}={shlex.quote(key.token)}")
    else:  # a token left over from a real account's STS key would be sent along, and refused
        lines.append(f"unset {ENV_SECURITY_TOKEN}")
    lines += ["# Then, from the repository's folder, for example:", EXAMPLE_COMMAND]
    return lines


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT; print one readiness line with the real URL once listening."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        keys = _keys_from(args, os.environ if env is None else env)
        faults = FaultSettings(
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            throttle_rate=args.throttle_rate,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            retry_after_ms=args.retry_after_ms,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"cvcsync emulator: {exc}", file=sys.stderr)
        return 2

    store: Store = SqliteStore(args.db) if args.db else MemoryStore()
    try:
        app = EmulatorApp(
            keys,
            store=store,
            capacity=args.capacity,
            max_batch=args.max_batch,
            concurrent_max=args.concurrent_max,
            faults=faults,
            limits=LimitSettings(args.max_concurrency, args.max_qps),
            admin=args.admin,
        )
        try:
            server = EmulatorServer(app, host=args.host, port=args.port, threads=args.threads)
        except OSError as exc:
            print(f"cvcsync emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1

        ready = [READY_LINE.format(url=server.url), *paste_lines(server.url, keys)]
        server.serve_until_signalled("\n".join(ready))
    finally:
        store.close()
    return 0
