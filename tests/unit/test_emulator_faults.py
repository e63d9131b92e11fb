"""Fault injection is deterministic for a seed, honours its rates, and validates its settings."""

from __future__ import annotations

import pytest

from cvcsync_dev.emulator.faults import NO_FAULT, FaultDecision, FaultInjector, FaultKind, FaultSettings


def sequence(settings: FaultSettings, n: int = 200) -> list[FaultDecision]:
    injector = FaultInjector(settings)
    return [injector.decide() for _ in range(n)]


MIXED = FaultSettings(throttle_rate=0.2, error_rate=0.2, drop_rate=0.2, jitter_ms=10, seed=7)


def test_same_seed_gives_the_same_sequence() -> None:
    assert sequence(MIXED) == sequence(MIXED)


def test_another_seed_gives_another_sequence() -> None:
    other = FaultSettings(throttle_rate=0.2, error_rate=0.2, drop_rate=0.2, jitter_ms=10, seed=8)
    assert sequence(MIXED) != sequence(other)


def test_configure_restarts_the_sequence() -> None:
    injector = FaultInjector(MIXED)
    first = [injector.decide() for _ in range(50)]
    injector.configure(MIXED)
    assert [injector.decide() for _ in range(50)] == first


def test_every_kind_appears_at_roughly_its_rate() -> None:
    kinds = [decision.kind for decision in sequence(MIXED, 2000)]
    for kind in (FaultKind.THROTTLE, FaultKind.ERROR, FaultKind.DROP, FaultKind.NONE):
        share = kinds.count(kind) / len(kinds)
        expected = 0.4 if kind is FaultKind.NONE else 0.2
        assert abs(share - expected) < 0.05, (kind, share)


def test_throttling_sometimes_carries_retry_after() -> None:
    decisions = sequence(FaultSettings(throttle_rate=1.0, retry_after_ms=250, seed=1), 100)
    assert {d.kind for d in decisions} == {FaultKind.THROTTLE}
    assert {d.retry_after_ms for d in decisions} == {None, 250}
    assert {d.status for d in decisions} == {400}


def test_errors_are_500_or_503() -> None:
    decisions = sequence(FaultSettings(error_rate=1.0, seed=1), 100)
    assert {d.kind for d in decisions} == {FaultKind.ERROR}
    assert {d.status for d in decisions} == {500, 503}


def test_latency_with_jitter_stays_in_bounds() -> None:
    delays = [d.delay_s for d in sequence(FaultSettings(latency_ms=100, jitter_ms=50, seed=3), 200)]
    assert all(0.1 <= delay <= 0.15 for delay in delays)
    assert len(set(delays)) > 100


def test_no_settings_means_no_fault() -> None:
    assert set(sequence(FaultSettings(), 20)) == {NO_FAULT}


@pytest.mark.parametrize(
    "settings",
    [
        {"throttle_rate": 1.5},
        {"error_rate": -0.1},
        {"throttle_rate": 0.6, "drop_rate": 0.6},
        {"latency_ms": -1},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FaultSettings(**settings)  # type: ignore[arg-type]


def test_json_round_trip_and_validation() -> None:
    settings = FaultSettings(latency_ms=5, throttle_rate=0.5, seed=9)
    assert FaultSettings.from_json(settings.to_json()) == settings
    assert FaultSettings.from_json({}) == FaultSettings()
    with pytest.raises(ValueError, match="unknown"):
        FaultSettings.from_json({"latency": 5})
    with pytest.raises(ValueError, match="seed"):
        FaultSettings.from_json({"seed": 1.5})
    with pytest.raises(ValueError, match="throttleRate"):
        FaultSettings.from_json({"throttleRate": "high"})
