"""Closed-loop scenarios: each client issues its next request as soon as the last one returns.

offline: back-to-back batches on clients[0] (maximum throughput; latency per batch).
single-stream: the same loop, one request at a time, reported as single-stream (batch usually 1).
multi-stream: len(clients) threads, released together by a barrier, each issuing back to back; overall
throughput and every request's latency. Frameworks release the GIL during inference, so threads overlap.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from infermeter.scenarios.base import Budget, Load, MeasureStart, ScenarioResult, WarmUp
from infermeter.scenarios.measure import StopRule, build_result

#: how often the controlling thread looks at the clock while client threads run
POLL_S = 0.01


def run_offline(load: Load, budget: Budget, *, latency_bound_ms: float | None = None,
                on_measure_start: MeasureStart | None = None) -> ScenarioResult:
    """Maximum throughput: back-to-back batches on one client, or on several at once when the engine
    keeps several requests in flight for throughput (Engine.offline_clients)."""
    if len(load.clients) == 1:
        return _run_one_client("offline", load, budget, latency_bound_ms, on_measure_start)
    return _run_threads("offline", load, budget, latency_bound_ms, on_measure_start)


def run_single_stream(load: Load, budget: Budget, *, latency_bound_ms: float | None = None,
                      on_measure_start: MeasureStart | None = None) -> ScenarioResult:
    return _run_one_client("single-stream", load, budget, latency_bound_ms, on_measure_start)


def run_multi_stream(load: Load, budget: Budget, *, latency_bound_ms: float | None = None,
                     on_measure_start: MeasureStart | None = None) -> ScenarioResult:
    return _run_threads("multi-stream", load, budget, latency_bound_ms, on_measure_start)


def _run_threads(scenario: str, load: Load, budget: Budget, latency_bound_ms: float | None,
                 on_measure_start: MeasureStart | None) -> ScenarioResult:
    warm = warm_up(load.clients, load.inputs, budget)
    stop = StopRule(budget, load.batch_size)
    if on_measure_start is not None:
        on_measure_start()
    issue_s, done_s, t_start = measure_threads(load.clients, load.inputs, stop)
    return build_result(scenario, issue_s=issue_s, done_s=done_s, t_start=t_start, t_end=float(done_s.max()),
                        batch_size=load.batch_size, streams=len(load.clients), latency_bound_ms=latency_bound_ms,
                        stop=stop, warmup=warm)


def _run_one_client(scenario: str, load: Load, budget: Budget, latency_bound_ms: float | None,
                    on_measure_start: MeasureStart | None) -> ScenarioResult:
    client = load.clients[0]
    warm = warm_up([client], load.inputs, budget)
    stop = StopRule(budget, load.batch_size)
    if on_measure_start is not None:
        on_measure_start()
    issue_s, done_s, t_start = measure_inline(client, load.inputs, stop)
    return build_result(scenario, issue_s=issue_s, done_s=done_s, t_start=t_start, t_end=float(done_s[-1]),
                        batch_size=load.batch_size, streams=1, latency_bound_ms=latency_bound_ms, stop=stop,
                        warmup=warm)


# ---- warm-up --------------------------------------------------------------------------------------------

def warm_up(clients: list[Callable[[Any], Any]], inputs: Callable[[int], Any], budget: Budget) -> WarmUp:
    """Unmeasured requests: `budget.warmup` per client, or `budget.warmup_time_s` seconds with every client
    busy at once (so concurrent clients also warm whatever they share)."""
    if budget.warmup_time_s is None and budget.warmup == 0:
        return WarmUp(requests=0, seconds=0.0)
    per_client = None if budget.warmup_time_s is not None else budget.warmup
    counts = [0] * len(clients)
    first_ms: list[float] = []
    failures: list[BaseException] = []
    t0 = time.perf_counter()

    def work(k: int) -> None:
        try:
            for i in itertools.count():
                if per_client is not None and i >= per_client:
                    return
                if per_client is None and time.perf_counter() - t0 >= budget.warmup_time_s and i > 0:
                    return
                x = inputs(i)
                t_issue = time.perf_counter()
                clients[k](x)
                if k == 0 and i == 0:
                    first_ms.append((time.perf_counter() - t_issue) * 1e3)
                counts[k] += 1
        except BaseException as e:  # noqa: BLE001 — re-raised in the calling thread below
            failures.append(e)

    if len(clients) == 1:
        work(0)
    else:
        threads = [threading.Thread(target=work, args=(k,), name=f"infermeter-warmup-{k}", daemon=True)
                   for k in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    return WarmUp(requests=sum(counts), seconds=time.perf_counter() - t0, first_ms=first_ms[0] if first_ms else None)


# ---- measured loops -------------------------------------------------------------------------------------

def measure_inline(client: Callable[[Any], Any], inputs: Callable[[int], Any],
                   stop: StopRule) -> tuple[np.ndarray, np.ndarray, float]:
    """One client in the calling thread (engines whose sessions are bound to it keep working).
    Returns absolute (issue_s, done_s, t_start)."""
    issue: list[float] = []
    done: list[float] = []

    def snapshot() -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(done)
        return d - np.asarray(issue), d

    t_start = time.perf_counter()
    for i in itertools.count():
        x = inputs(i)
        t_issue = time.perf_counter()
        client(x)
        t_done = time.perf_counter()
        issue.append(t_issue)
        done.append(t_done)
        if stop.should_stop(i + 1, t_done, t_start, snapshot):
            break
    return np.asarray(issue), np.asarray(done), t_start


def measure_threads(clients: list[Callable[[Any], Any]], inputs: Callable[[int], Any],
                    stop: StopRule) -> tuple[np.ndarray, np.ndarray, float]:
    """One thread per client, released together; requests numbered from one shared counter (so an
    iteration budget is the total across clients). All threads are joined before returning; a client's
    exception stops the others and is re-raised here. Returns absolute (issue_s, done_s, t_start)."""
    n = len(clients)
    records: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    tickets = itertools.count()
    ticket_lock = threading.Lock()
    halt = threading.Event()
    failures: list[BaseException] = []
    start_box: list[float] = []
    # the barrier action runs once, before any thread is released: the measured window's start
    barrier = threading.Barrier(n + 1, action=lambda: start_box.append(time.perf_counter()))
    limit = stop.max_requests

    def work(k: int) -> None:
        client, mine = clients[k], records[k]
        try:
            barrier.wait()
            while not halt.is_set():
                with ticket_lock:
                    i = next(tickets)
                if limit is not None and i >= limit:
                    return
                x = inputs(i)
                t_issue = time.perf_counter()
                client(x)
                mine.append((t_issue, time.perf_counter()))
        except threading.BrokenBarrierError:
            return
        except BaseException as e:  # noqa: BLE001 — re-raised in the calling thread below
            failures.append(e)
            halt.set()

    def snapshot() -> tuple[np.ndarray, np.ndarray]:
        pairs = np.asarray([p for r in records for p in r[: len(r)]], dtype=np.float64).reshape(-1, 2)
        pairs = pairs[np.argsort(pairs[:, 1])]
        return pairs[:, 1] - pairs[:, 0], pairs[:, 1]

    threads = [threading.Thread(target=work, args=(k,), name=f"infermeter-stream-{k}", daemon=True)
               for k in range(n)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
        t_start = start_box[0]
        while not halt.is_set() and any(t.is_alive() for t in threads):
            time.sleep(POLL_S)
            # an iteration budget is enforced by the tickets; the others by the clock and the data
            if limit is None:
                n_done = sum(len(r) for r in records)
                if stop.should_stop(n_done, time.perf_counter(), t_start, snapshot):
                    halt.set()
    finally:
        halt.set()
        barrier.abort()  # harmless once passed; frees threads if the main thread failed before it
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    if limit is not None:
        stop.reason = "iterations"
    pairs = np.asarray([p for r in records for p in r], dtype=np.float64).reshape(-1, 2)
    if pairs.size == 0:
        raise RuntimeError("multi-stream: no request completed")
    return pairs[:, 0], pairs[:, 1], t_start
