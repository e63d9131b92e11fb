"""Memory of the signature nonces seen, bounded by the replay window.

A request is only accepted while its Timestamp is within the window of server time, so a nonce needs remembering
only until its own Timestamp leaves the window: after that the Timestamp check refuses any replay. Each nonce is
kept with that expiry in a dict, and a heap of expiries lets every call forget the expired ones cheaply, so memory
holds at most the nonces of the last two windows' worth of traffic and never grows without bound.
"""

from __future__ import annotations

import heapq
import threading


class NonceCache:
    """Thread-safe set of ``(access key id, nonce)`` pairs, each forgotten once its expiry has passed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def use(self, key_id: str, nonce: str, *, expires_at: float, now: float) -> bool:
        """Record the nonce and return ``True``, or return ``False`` if it is still remembered (a replay)."""
        entry = (key_id, nonce)
        with self._lock:
            self._sweep(now)
            if entry in self._expiry:
                return False
            self._expiry[entry] = expires_at
            heapq.heappush(self._heap, (expires_at, entry))
            return True

    def _sweep(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, entry = heapq.heappop(heap)
            if self._expiry.get(entry) == expires_at:
                del self._expiry[entry]

    def sweep(self, now: float) -> None:
        """Forget every nonce whose expiry has passed."""
        with self._lock:
            self._sweep(now)

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            self._heap.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)
