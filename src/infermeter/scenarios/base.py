"""What a scenario takes (Load, Budget) and returns (ScenarioResult); the scenarios themselves are in
registry.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infermeter.errors import BadInput

#: called once the warm-up is over, right before the timed region starts
MeasureStart = Callable[[], None]

#: measured seconds when the budget names no stopping rule
DEFAULT_TIME_S = 2.0


@dataclass
class Load:
    """The work: `clients[k](x)` runs one synchronous inference (one client per concurrent stream);
    `inputs(i)` returns the i-th staged batch (the scenario passes a growing i; the provider rotates)."""

    clients: list[Callable[[Any], Any]]
    inputs: Callable[[int], Any]
    batch_size: int

    def __post_init__(self) -> None:
        if not self.clients:
            raise BadInput("a load needs at least one client")
        if not all(callable(c) for c in self.clients):
            raise BadInput("every client must be callable: client(batch) -> outputs")
        if not callable(self.inputs):
            raise BadInput("inputs must be callable: inputs(i) -> batch")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise BadInput(f"batch size must be a positive integer, got {self.batch_size!r}")


@dataclass
class Budget:
    """Warm-up, then a stopping rule. Which rule applies (first match):

    - iterations: exactly that many measured requests in total (for multi-stream: across all clients);
    - target_ci: until the 95% CI half-width of the mean latency AND of the throughput are both within
      target_ci of their values, checked periodically, after at least min_iterations requests and at least
      time_s seconds if time_s is also given; bounded by max_time_s (then extra["ci_target_reached"] is False);
    - time_s: that many seconds and at least min_iterations requests;
    - none of them: time_s = DEFAULT_TIME_S (2 s).

    Warm-up: `warmup` requests per client, or `warmup_time_s` seconds (overrides `warmup`) with all clients
    running concurrently; never measured."""

    warmup: int = 10
    warmup_time_s: float | None = None
    iterations: int | None = None
    time_s: float | None = None
    min_iterations: int = 10
    target_ci: float | None = None
    max_time_s: float = 60.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_iterations < 0:
            raise BadInput("warm-up and minimum iterations must not be negative")
        if self.iterations is not None and self.iterations <= 0:
            raise BadInput(f"iterations must be positive, got {self.iterations}")
        for name in ("warmup_time_s", "time_s", "target_ci"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise BadInput(f"{name} must be positive, got {v}")
        if self.target_ci is not None and self.target_ci >= 1:
            raise BadInput(f"target_ci is a fraction below 1 (0.01 = 1%), got {self.target_ci}")
        if not self.max_time_s > 0:
            raise BadInput(f"max_time_s must be positive, got {self.max_time_s}")

    @property
    def rule(self) -> str:
        """'iterations' | 'ci' | 'time' — the stopping rule in force."""
        if self.iterations is not None:
            return "iterations"
        if self.target_ci is not None:
            return "ci"
        return "time"

    @property
    def min_time_s(self) -> float:
        """Seconds to measure at least (time rule), or before the CI may stop the run (ci rule)."""
        if self.rule == "time":
            return self.time_s if self.time_s is not None else DEFAULT_TIME_S
        if self.rule == "ci":
            return self.time_s or 0.0
        return 0.0


@dataclass
class ScenarioResult:
    """Raw timings of one measured run. Times are time.perf_counter() seconds; latencies in ms."""

    scenario: str
    latencies_ms: np.ndarray  # one per request, in issue order
    issue_times_s: np.ndarray  # relative to t_start (server: the scheduled arrival)
    items: int
    requests: int
    t_start: float
    t_end: float
    duration_s: float
    throughput_items_s: float  # server: achieved items/s
    achieved_qps: float  # requests/s
    stats: dict[str, float]  # latency_ms_{mean,p50,p90,p95,p99,std,min,max}
    ci95_rel: float  # max of the latency and throughput 95% CI half-widths, each over its value
    latency_bound_met: bool | None
    streams: int
    extra: dict[str, Any] = field(default_factory=dict)
