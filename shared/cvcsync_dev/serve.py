"""``cvcsync serve``: the one ``HttpApi`` on waitress, on a loopback address, for manual use and tests.

The same ``WsgiServer`` as the emulator's (``wsgi_server.py``), refusing anything but a loopback address.
"""

from __future__ import annotations

import ipaddress
import sys

from cvcsync.errors import ConfigurationError
from cvcsync.http_api.app import HttpApi
from cvcsync_dev.wsgi_server import WsgiServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
READY_LINE = "cvcsync http api listening on {url}"


def require_loopback(host: str) -> None:
    """Refuse anything but a loopback address: this server is for one machine, with keys from its environment."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(f"cvcsync serve listens on loopback addresses only (127.0.0.1, ::1), not {host!r}")


class ApiServer(WsgiServer):
    def __init__(self, app: HttpApi, *, host: str = DEFAULT_HOST, port: int = 0, threads: int = DEFAULT_THREADS):
        require_loopback(host)
        super().__init__(app, host=host, port=port, threads=threads, ident="cvcsync-http")


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, threads: int = DEFAULT_THREADS) -> int:
    """Serve until SIGTERM or SIGINT; one readiness line with the real URL on stdout once listening."""
    try:
        server = ApiServer(HttpApi(), host=host, port=port, threads=threads)
    except ImportError as exc:
        raise ConfigurationError(f"cvcsync serve needs waitress (pip install 'cvcsync[emulator]'): {exc}") from exc
    except OSError as exc:
        print(f"cvcsync serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1

    server.serve_until_signalled(READY_LINE.format(url=server.url))
    return 0
