"""Seeded, deterministic fault injection: latency, throttling, server errors and dropped connections.

Every decision draws the same number of values from one ``random.Random(seed)`` under a lock, so a given seed and
settings give the same sequence of faults in every run (the order in which concurrent requests take them is up to
the threads, of course). Faults are only ever decided for requests that passed the signature checks.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# camelCase (admin API) name of each setting.
JSON_NAMES = {
    "latency_ms": "latencyMs",
    "jitter_ms": "jitterMs",
    "throttle_rate": "throttleRate",
    "error_rate": "errorRate",
    "drop_rate": "dropRate",
    "retry_after_ms": "retryAfterMs",
    "seed": "seed",
}
_RATES = ("throttle_rate", "error_rate", "drop_rate")


@dataclass(frozen=True)
class FaultSettings:
    """What to inject. Rates are probabilities per request; together they may not exceed 1."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    retry_after_ms: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{JSON_NAMES[name]} must be between 0 and 1, got {value}")
        if sum(getattr(self, name) for name in _RATES) > 1.0 + 1e-9:
            raise ValueError("throttleRate + errorRate + dropRate must not exceed 1")
        for name in ("latency_ms", "jitter_ms", "retry_after_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{JSON_NAMES[name]} must not be negative")

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or any(getattr(self, name) for name in _RATES))

    def to_json(self) -> dict[str, Any]:
        return {JSON_NAMES[name]: value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultSettings:
        """From the admin API's camelCase object; absent settings take their defaults (faults off)."""
        unknown = set(data) - set(JSON_NAMES.values())
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, json_name in JSON_NAMES.items():
            if json_name not in data:
                continue
            value = data[json_name]
            integral = name in ("seed", "retry_after_ms")
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                kind = "a whole number" if integral else "a number"
                raise ValueError(f"{json_name} must be {kind}, got {value!r}")
            values[name] = value
        return cls(**values)


class FaultKind(enum.Enum):
    NONE = "none"
    THROTTLE = "throttle"  # gateway Throttling, HTTP 400, sometimes with x-acs-retry-after
    ERROR = "error"  # InternalError 500 or ServiceUnavailable 503
    DROP = "drop"  # the connection closes before the answer is complete


@dataclass(frozen=True)
class FaultDecision:
    kind: FaultKind = FaultKind.NONE
    delay_s: float = 0.0
    status: int = 200  # for ERROR: 500 or 503
    retry_after_ms: int | None = None  # for THROTTLE: the header's value, when the header is sent


NO_FAULT = FaultDecision()


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._random = random.Random(self._settings.seed)  # noqa: S311 - test randomness, not cryptography

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings and restart the sequence from the settings' seed."""
        with self._lock:
            self._settings = settings
            self._random = random.Random(settings.seed)  # noqa: S311 - test randomness, not cryptography

    def decide(self) -> FaultDecision:
        settings = self._settings
        if not settings.active:
            return NO_FAULT
        with self._lock:
            settings = self._settings
            rng = self._random
            roll, detail, jitter = rng.random(), rng.random(), rng.random()
        delay_s = (settings.latency_ms + jitter * settings.jitter_ms) / 1000.0
        threshold = settings.throttle_rate
        if roll < threshold:
            retry_after = settings.retry_after_ms if detail < 0.5 else None
            return FaultDecision(FaultKind.THROTTLE, delay_s, 400, retry_after)
        threshold += settings.error_rate
        if roll < threshold:
            return FaultDecision(FaultKind.ERROR, delay_s, 500 if detail < 0.5 else 503)
        threshold += settings.drop_rate
        if roll < threshold:
            return FaultDecision(FaultKind.DROP, delay_s)
        return FaultDecision(FaultKind.NONE, delay_s)
