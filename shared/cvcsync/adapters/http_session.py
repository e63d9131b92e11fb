"""The HTTP session every signed call goes through (CVC, KMS, Function Compute's invoke API).

No adapter-level retries: a request replayed by urllib3 would reuse its signature's nonce (refused, or worse, taken
as a replay), so retries are the callers' own, each attempt signed anew. One session per warm container: its
connection pool is what saves the TLS handshake on the next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests


def signed_call_session(pool_size: int = 10) -> requests.Session:
    """A ``requests.Session`` that never retries on its own, with ``pool_size`` connections per host."""
    import requests  # here: the paths that never make a signed call do not pay for it

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=0, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
