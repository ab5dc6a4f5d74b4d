"""Shared by every scenario: the stopping rule while measuring, and turning timestamps into a result."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infermeter.scenarios.base import Budget, LoadGenRun, ScenarioResult, ServerStats, StopInfo, WarmUp
from infermeter.scenarios.stats import MIN_CI_SAMPLES, batch_means_ci, latency_stats, relative, throughput_ci

#: seconds between CI checks at least; later checks are spaced by 10% of the elapsed time, so the
#: O(n) check costs O(n log n) over a run
CI_CHECK_EVERY_S = 0.25

#: returns (latencies_s, done_times_s) of the requests completed so far
Snapshot = Callable[[], tuple[np.ndarray, np.ndarray]]


def ci_relative_parts(latencies_s: np.ndarray, done_times_s: np.ndarray, t_start: float,
                      items_per_request: int) -> tuple[float, float]:
    """(latency, throughput) 95% CI half-widths relative to their values, both by batch means."""
    lat_rel = relative(*batch_means_ci(latencies_s))
    thr_rel = relative(*throughput_ci(done_times_s, t_start, items_per_request))
    return lat_rel, thr_rel


class StopRule:
    """Applies a Budget while measuring. `should_stop` is cheap except at CI checks."""

    def __init__(self, budget: Budget, items_per_request: int, watch_throughput: bool = True):
        self.budget = budget
        self.items_per_request = items_per_request
        self.watch_throughput = watch_throughput
        self.rule = budget.rule
        self.reason: str | None = None  # why the run stopped: iterations | time | ci | max_time
        self.ci_checks = 0
        self._next_check_s = 0.0

    @property
    def max_requests(self) -> int | None:
        return self.budget.iterations if self.rule == "iterations" else None

    def should_stop(self, n_done: int, now: float, t_start: float, snapshot: Snapshot) -> bool:
        elapsed = now - t_start
        if self.rule == "iterations":
            if n_done >= self.budget.iterations:
                self.reason = "iterations"
            return self.reason is not None
        if self.rule == "time":
            if elapsed >= self.budget.min_time_s and n_done >= self.budget.min_iterations:
                self.reason = "time"
            return self.reason is not None
        # ci rule
        if elapsed >= self.budget.max_time_s:
            self.reason = "max_time"
            return True
        ready = (elapsed >= self.budget.min_time_s
                 and n_done >= max(self.budget.min_iterations, MIN_CI_SAMPLES)
                 and elapsed >= self._next_check_s)
        if not ready:
            return False
        self._next_check_s = elapsed + max(CI_CHECK_EVERY_S, 0.1 * elapsed)
        self.ci_checks += 1
        latencies_s, done_s = snapshot()
        lat_rel, thr_rel = ci_relative_parts(latencies_s, done_s, t_start, self.items_per_request)
        if max(lat_rel, thr_rel if self.watch_throughput else 0.0) <= self.budget.target_ci:
            self.reason = "ci"
            return True
        return False


def build_result(scenario: str, *, issue_s: np.ndarray, done_s: np.ndarray, t_start: float, t_end: float,
                 batch_size: int, streams: int, latency_bound_ms: float | None, stop: StopRule | None,
                 warmup: WarmUp, server: ServerStats | None = None, loadgen: LoadGenRun | None = None,
                 throughput_in_ci: bool = True) -> ScenarioResult:
    """From absolute perf_counter issue/done times (server: issue = scheduled arrival) to a ScenarioResult.

    Requests are put in issue order. latency_bound_met: p99 <= bound, and nothing dropped where the
    scenario drops requests (server.dropped). ci95_rel = max(latency, throughput) relative half-widths,
    or the latency one alone where throughput_in_ci is False (server: the rate is the schedule's)."""
    issue_s = np.asarray(issue_s, dtype=np.float64)
    done_s = np.asarray(done_s, dtype=np.float64)
    order = np.argsort(issue_s, kind="stable")
    issue_s, done_s = issue_s[order], done_s[order]
    latencies_ms = (done_s - issue_s) * 1e3
    requests = int(latencies_ms.size)
    items = requests * batch_size
    duration_s = t_end - t_start
    if requests == 0 or not duration_s > 0:
        raise RuntimeError(f"{scenario}: no request completed in the measured window "
                           f"({requests} requests over {duration_s:.3f} s); nothing to report")
    stats = latency_stats(latencies_ms)
    lat_rel, thr_rel = ci_relative_parts(latencies_ms / 1e3, done_s, t_start, batch_size)
    ci95_rel = max(lat_rel, thr_rel) if throughput_in_ci else lat_rel
    stop_info = None
    if stop is not None:
        # judged on the final data, so a run that crossed the target between checks still counts
        stop_info = StopInfo(rule=stop.rule, reason=stop.reason, ci95_rel_latency=float(lat_rel),
                             ci95_rel_throughput=float(thr_rel), ci_target=stop.budget.target_ci,
                             ci_target_reached=bool(ci95_rel <= stop.budget.target_ci) if stop.rule == "ci" else None,
                             ci_checks=stop.ci_checks)
    bound_met = None
    if latency_bound_ms is not None:
        bound_met = bool(stats["latency_ms_p99"] <= latency_bound_ms)
        if server is not None and server.dropped:
            bound_met = False
    return ScenarioResult(
        scenario=scenario,
        latencies_ms=latencies_ms,
        issue_times_s=issue_s - t_start,
        items=items,
        requests=requests,
        t_start=t_start,
        t_end=t_end,
        duration_s=duration_s,
        throughput_items_s=items / duration_s,
        achieved_qps=requests / duration_s,
        stats=stats,
        ci95_rel=float(ci95_rel),
        latency_bound_met=bound_met,
        streams=streams,
        warmup=warmup,
        stop=stop_info,
        server=server,
        loadgen=loadgen,
    )
