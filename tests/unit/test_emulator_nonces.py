"""The nonce memory: replays refused within the window, forgotten after it, memory bounded, thread-safe."""

from __future__ import annotations

import threading

from cvcsync_dev.emulator.nonces import NonceCache


def test_a_nonce_is_accepted_once() -> None:
    cache = NonceCache()
    assert cache.use("key", "n1", expires_at=100.0, now=0.0) is True
    assert cache.use("key", "n1", expires_at=100.0, now=50.0) is False


def test_nonces_are_per_access_key() -> None:
    cache = NonceCache()
    assert cache.use("key-a", "n1", expires_at=100.0, now=0.0) is True
    assert cache.use("key-b", "n1", expires_at=100.0, now=0.0) is True


def test_a_nonce_is_forgotten_once_expired() -> None:
    cache = NonceCache()
    cache.use("key", "n1", expires_at=100.0, now=0.0)
    assert cache.use("key", "n1", expires_at=300.0, now=100.0) is True
    assert len(cache) == 1


def test_memory_holds_only_unexpired_nonces() -> None:
    cache = NonceCache()
    for second in range(10_000):
        cache.use("key", f"n{second}", expires_at=second + 900.0, now=float(second))
    assert len(cache) == 900
    cache.sweep(now=20_000.0)
    assert len(cache) == 0


def test_expiries_out_of_order_are_swept_correctly() -> None:
    cache = NonceCache()
    cache.use("key", "late", expires_at=500.0, now=0.0)
    cache.use("key", "early", expires_at=100.0, now=0.0)
    cache.sweep(now=200.0)
    assert cache.use("key", "late", expires_at=900.0, now=200.0) is False
    assert cache.use("key", "early", expires_at=900.0, now=200.0) is True


def test_clear_forgets_everything() -> None:
    cache = NonceCache()
    cache.use("key", "n1", expires_at=100.0, now=0.0)
    cache.clear()
    assert len(cache) == 0
    assert cache.use("key", "n1", expires_at=100.0, now=0.0) is True


def test_one_winner_when_threads_race_with_the_same_nonce() -> None:
    cache = NonceCache()
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def racer() -> None:
        barrier.wait()
        accepted = cache.use("key", "shared", expires_at=100.0, now=0.0)
        with lock:
            results.append(accepted)

    threads = [threading.Thread(target=racer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]
