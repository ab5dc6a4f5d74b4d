"""Server scenario: Poisson arrivals at a target rate, served by a pool of client threads.

A dispatcher (the calling thread) puts each request on a FIFO queue at its scheduled arrival time; one
worker thread per client takes requests in order. Latency = completion - scheduled arrival, so it includes
queueing and any lag of the dispatcher. The row reports the achieved rate (completed requests over the
measured window) and whether p99 <= latency_bound_ms.
"""

from __future__ import annotations

import math
import queue
import threading
import time

import numpy as np

from infermeter.scenarios.base import Budget, Load, MeasureStart, ScenarioResult, ServerStats
from infermeter.scenarios.closed_loop import warm_up
from infermeter.scenarios.measure import StopRule, build_result
from infermeter.scenarios.stats import percentile, poisson_schedule

#: a dispatch later than this after its scheduled time counts as late (sleep granularity is ~0.1 ms)
LATE_DISPATCH_MS = 1.0
#: after the last arrival, queued requests get this long (or the window's length, if longer) to start;
#: those that have not started by then are dropped and counted, so an overloaded server cannot hang
DRAIN_TIMEOUT_S = 5.0


def plan_arrivals(budget: Budget, target_qps: float) -> tuple[int, float]:
    """(arrival count, window seconds) with count = rate x window exactly.

    iterations: that many arrivals; time: time_s worth (at least min_iterations); ci: up to max_time_s worth
    (the run stops issuing once the CI target is met)."""
    if budget.rule == "iterations":
        n = budget.iterations
    elif budget.rule == "time":
        n = max(round(target_qps * budget.min_time_s), budget.min_iterations, 1)
    else:
        n = max(round(target_qps * budget.max_time_s), budget.min_iterations, 1)
    return n, n / target_qps


def run_server(load: Load, budget: Budget, *, target_qps: float, latency_bound_ms: float | None = None,
               seed: int = 0, on_measure_start: MeasureStart | None = None) -> ScenarioResult:
    rng = np.random.default_rng(seed)
    n_planned, window_s = plan_arrivals(budget, target_qps)
    arrivals_s = poisson_schedule(target_qps, rng, n=n_planned, duration_s=window_s)
    warm = warm_up(load.clients, load.inputs, budget)
    # the achieved rate follows the schedule (exactly rate x window arrivals) while the server keeps up,
    # and its batch-to-batch noise is the Poisson arrivals', not the system's: the CI rule watches latency
    stop = StopRule(budget, load.batch_size, watch_throughput=False)

    pending: queue.Queue = queue.Queue()
    n_workers = len(load.clients)
    # per request k: scheduled (absolute), service start, done; NaN until known
    scheduled = np.full(n_planned, np.nan)
    started = np.full(n_planned, np.nan)
    done = np.full(n_planned, np.nan)
    dropped = [0]
    failures: list[BaseException] = []
    halt = threading.Event()
    drop_after = [math.inf]  # absolute time after which queued requests are dropped (set when issuing ends)
    count_lock = threading.Lock()
    n_done = [0]

    def work(k: int) -> None:
        client = load.clients[k]
        while True:
            item = pending.get()
            if item is None:
                return
            idx = item
            if halt.is_set() or time.perf_counter() > drop_after[0]:
                with count_lock:
                    dropped[0] += 1
                continue
            try:
                x = load.inputs(idx)
                started[idx] = time.perf_counter()
                client(x)
                done[idx] = time.perf_counter()
                with count_lock:
                    n_done[0] += 1
            except BaseException as e:  # noqa: BLE001 — re-raised in the calling thread below
                failures.append(e)
                halt.set()

    def snapshot() -> tuple[np.ndarray, np.ndarray]:
        ok = ~np.isnan(done)
        d = done[ok]
        order = np.argsort(d)
        return (d - scheduled[ok])[order], d[order]

    workers = [threading.Thread(target=work, args=(k,), name=f"infermeter-server-{k}", daemon=True)
               for k in range(n_workers)]
    for w in workers:
        w.start()
    lags_ms: list[float] = []
    issued = 0
    if on_measure_start is not None:
        on_measure_start()
    t_start = time.perf_counter()
    try:
        for k in range(n_planned):
            target = t_start + arrivals_s[k]
            wait = target - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if halt.is_set():
                break
            scheduled[k] = target
            pending.put(k)
            now = time.perf_counter()
            lags_ms.append((now - target) * 1e3)
            issued += 1
            # iteration and time budgets are the schedule itself; only the CI rule ends it early
            if stop.rule == "ci" and stop.should_stop(n_done[0], now, t_start, snapshot):
                break
    finally:
        # the offered window ends where the next arrival would have been (or at the planned end)
        issue_end = t_start + (arrivals_s[issued] if issued < n_planned else window_s)
        drop_after[0] = time.perf_counter() + max(DRAIN_TIMEOUT_S, window_s)
        for _ in workers:
            pending.put(None)
        for w in workers:
            w.join()
    if failures:
        raise failures[0]
    if stop.reason is None:  # the whole schedule was issued
        stop.reason = {"iterations": "iterations", "time": "time", "ci": "max_time"}[stop.rule]
    ok = ~np.isnan(done)
    if not ok.any():
        raise RuntimeError(f"server: none of {issued} requests completed ({dropped[0]} dropped)")
    t_end = max(issue_end, float(done[ok].max()))
    lags = np.asarray(lags_ms)
    server = ServerStats(
        offered_qps=issued / (issue_end - t_start), issued=issued, planned=n_planned, dropped=dropped[0],
        late_dispatches=int((lags > LATE_DISPATCH_MS).sum()), dispatch_lag_ms_p99=percentile(lags, 99),
        dispatch_lag_ms_max=float(lags.max()),
        queue_wait_ms_mean=float(np.mean(started[ok] - scheduled[ok]) * 1e3),
        service_ms_mean=float(np.mean(done[ok] - started[ok]) * 1e3))
    return build_result("server", issue_s=scheduled[ok], done_s=done[ok], t_start=t_start, t_end=t_end,
                        batch_size=load.batch_size, streams=n_workers, latency_bound_ms=latency_bound_ms,
                        stop=stop, warmup=warm, server=server, throughput_in_ci=False)
