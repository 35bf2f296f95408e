"""Fault profiles, the fixed-window rate limiter and the server-side request counters."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["FAULT_PROFILES", "FaultConfig", "RateLimiter", "ServerStats", "resolve_faults"]


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong on purpose. Rates are probabilities per request (0 to 1).

    Rate limits count requests per *simulated* second (fixed windows), so a client whose clock
    is scaled like the simulator's sees the same limits at any `time_scale`.
    """

    gateway_rps: float | None = None  # Gateway requests admitted per simulated second
    chain_rps: float | None = None  # chain index requests admitted per simulated second
    error_5xx_rate: float = 0.0  # Gateway answers 500/502/503
    chain_5xx_rate: float = 0.0
    latency_s: float = 0.0  # added to every Gateway answer, simulated seconds (0..latency_s)
    drop_rate: float = 0.0  # headers sent, then the connection closes without the body
    truncate_rate: float = 0.0  # a 200 body cut short (Content-Length matches the cut body)
    malformed_rate: float = 0.0  # a 200 body that is not valid JSON
    error_object_rate: float = 0.0  # errors in the object form {"error": {code, message, ...}}
    retry_after_date_rate: float = 0.0  # Retry-After as an HTTP date instead of seconds
    webhook_duplicate_rate: float = 0.0  # a delivery sent twice
    webhook_failure_rate: float = 0.0  # the first attempt of a delivery is lost (then retried)


FAULT_PROFILES: dict[str, FaultConfig] = {
    "none": FaultConfig(),
    "mild": FaultConfig(
        gateway_rps=50,
        chain_rps=3,
        error_5xx_rate=0.01,
        latency_s=0.2,
        drop_rate=0.002,
        truncate_rate=0.002,
        malformed_rate=0.002,
        error_object_rate=0.2,
        retry_after_date_rate=0.2,
        webhook_duplicate_rate=0.02,
        webhook_failure_rate=0.02,
    ),
    "harsh": FaultConfig(
        gateway_rps=20,
        chain_rps=3,
        error_5xx_rate=0.05,
        chain_5xx_rate=0.02,
        latency_s=1.0,
        drop_rate=0.01,
        truncate_rate=0.01,
        malformed_rate=0.01,
        error_object_rate=0.5,
        retry_after_date_rate=0.5,
        webhook_duplicate_rate=0.05,
        webhook_failure_rate=0.1,
    ),
}


def resolve_faults(
    faults: str | FaultConfig, *, gateway_rps: float | None = None, chain_rps: float | None = None
) -> FaultConfig:
    """Return the fault config for a profile name or config, with explicit rps overrides."""
    if isinstance(faults, str):
        if faults not in FAULT_PROFILES:
            raise ValueError(f"faults must be one of {sorted(FAULT_PROFILES)}, not {faults!r}")
        faults = FAULT_PROFILES[faults]
    if gateway_rps is not None:
        faults = replace(faults, gateway_rps=gateway_rps)
    if chain_rps is not None:
        faults = replace(faults, chain_rps=chain_rps)
    return faults


class RateLimiter:
    """Admit at most `rps` requests per simulated second (fixed one-second windows)."""

    def __init__(self, rps: float | None) -> None:
        self.rps = rps
        self._window = -1
        self._count = 0

    def admit(self, now: float) -> float | None:
        """Return None if admitted, else the simulated seconds until the next window."""
        if self.rps is None:
            return None
        window = int(now)
        if window != self._window:
            self._window, self._count = window, 0
        if self._count < self.rps:
            self._count += 1
            return None
        return window + 1 - now


class ServerStats:
    """Counters of everything one app served; `snapshot()` is what `/_sim/stats` returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_endpoint_status: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_task: Counter[str] = Counter()
        self.per_second: Counter[int] = Counter()  # simulated epoch second -> requests
        self.per_second_admitted: Counter[int] = Counter()  # ... not answered 429
        self.faults: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()

    def count(self, endpoint: str, status: str, now: float, *, task_id: str | None = None) -> None:
        """Count one answered request."""
        with self._lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1
            self.by_status[status] += 1
            self.by_endpoint_status[endpoint][status] += 1
            self.per_second[int(now)] += 1
            if status != "429":
                self.per_second_admitted[int(now)] += 1
            if task_id is not None:
                self.by_task[task_id] += 1

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as plain JSON-able dicts."""
        with self._lock:
            return {
                "requests": self.requests,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
                "by_endpoint_status": {k: dict(v) for k, v in self.by_endpoint_status.items()},
                "by_task": dict(self.by_task),
                "per_second": {str(k): v for k, v in sorted(self.per_second.items())},
                "per_second_admitted": {
                    str(k): v for k, v in sorted(self.per_second_admitted.items())
                },
                "max_per_second_admitted": max(self.per_second_admitted.values(), default=0),
                "faults": dict(self.faults),
                "webhooks": dict(self.webhooks),
            }
