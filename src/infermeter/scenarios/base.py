"""What a scenario takes (Load, Budget) and returns (ScenarioResult); the scenarios themselves are in
registry.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from infermeter.errors import BadInput
from infermeter.records import column, columns_of

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
      time_s seconds if time_s is also given; bounded by max_time_s (then stop.ci_target_reached is False);
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


# ---- what a scenario returns: typed records, each field a results.csv column or a file beside the row ----

@dataclass(frozen=True)
class WarmUp:
    """The unmeasured requests before the timed region."""

    requests: int = column("warmup_requests")
    seconds: float = column("warmup_s")
    first_ms: float | None = column("warmup_first_ms", default=None)  # the first warm-up call (client 0)


@dataclass(frozen=True)
class StopInfo:
    """Why measuring stopped, and the confidence intervals of the final data."""

    rule: str = column("stop_rule")  # iterations | time | ci
    reason: str | None = column("stop_reason")  # iterations | time | ci | max_time | loadgen
    ci95_rel_latency: float = column("ci95_rel_latency")
    ci95_rel_throughput: float = column("ci95_rel_throughput")
    ci_target: float | None = column("ci_target", default=None)
    ci_target_reached: bool | None = column("ci_target_reached", default=None)  # None unless the rule is ci
    ci_checks: int = column("ci_checks", default=0)


@dataclass(frozen=True)
class ServerStats:
    """What the server scenario's load generator offered and how the requests fared in the queue."""

    offered_qps: float = column("offered_qps")
    issued: int = column("issued")
    planned: int = column("planned")
    dropped: int = column("dropped")
    late_dispatches: int | None = column("late_dispatches")
    dispatch_lag_ms_p99: float | None = column("dispatch_lag_ms_p99")
    dispatch_lag_ms_max: float | None = column("dispatch_lag_ms_max")
    queue_wait_ms_mean: float | None = column("queue_wait_ms_mean")
    service_ms_mean: float | None = column("service_ms_mean")


@dataclass(frozen=True)
class LoadGenRun:
    """A run driven by MLCommons LoadGen, with LoadGen's own verdict from mlperf_log_summary.txt."""

    result: str | None = column("loadgen_result")  # VALID | INVALID (None: the summary says neither)
    failed_constraints: str | None = column("loadgen_failed_constraints")  # e.g. "Early stopping satisfied: NO"
    runs: int = column("loadgen_runs")
    total_s: float = column("loadgen_total_s")  # every run's timed window (--target-ci makes several)
    wall_s: float = column("loadgen_wall_s")  # the reported run, LoadGen's start to its end
    summary: dict = column(file="loadgen/<cell>.json")  # mlperf_log_summary.txt parsed, with the detail log's messages
    log_dir: str | None = column(file="loadgen/<cell>/", default=None)  # LoadGen's own logs (None: not kept)


@dataclass
class ScenarioResult:
    """Raw timings of one measured run. Times are time.perf_counter() seconds; latencies in ms."""

    scenario: str = column(internal="the row's cell names it")
    latencies_ms: np.ndarray = column(file="latency/<cell>.csv")  # one per request, in issue order
    issue_times_s: np.ndarray = column(file="latency/<cell>.csv")  # from t_start (server: the scheduled arrival)
    items: int = column()
    requests: int = column("iterations")
    t_start: float = column(internal="perf_counter clock: bounds the telemetry window")
    t_end: float = column(internal="perf_counter clock: bounds the telemetry window")
    duration_s: float = column()
    throughput_items_s: float = column()  # server: achieved items/s
    achieved_qps: float = column()  # requests/s
    # latency_ms_{mean,p50,p90,p95,p99,std,min,max}: keyed by their column names already
    stats: dict[str, float] = column(file="results.csv latency_ms_* columns")
    ci95_rel: float = column()  # max of the latency and throughput 95% CI half-widths, each over its value
    latency_bound_met: bool | None = column()
    streams: int = column()
    warmup: WarmUp = column(part=True, default_factory=lambda: WarmUp(0, 0.0))
    stop: StopInfo | None = column(part=True, default=None)
    server: ServerStats | None = column(part=True, default=None)  # the server scenario's own figures
    loadgen: LoadGenRun | None = column(part=True, default=None)  # --loadgen runs

    def columns(self) -> dict:
        """Every results.csv column this result fills: the one place a result becomes row fields."""
        return {**self.stats, **columns_of(self)}
