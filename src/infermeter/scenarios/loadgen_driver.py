"""`--loadgen`: drive a scenario through MLCommons LoadGen (python module `mlperf_loadgen`).

LoadGen decides when queries are issued (its own Poisson schedule for Server, one query of many samples for
Offline, queries of len(clients) samples for MultiStream); our SUT queues each sample for a pool of client
threads and reports completion. One LoadGen sample = one of our batches (`inputs(index)`). Latencies in the
result come from the SUT's own timestamps (receipt in issue_query -> client returned; for offline, the
batch's own run time, as in the native offline scenario); LoadGen's verdict and summary are in the result's
`loadgen` (LoadGenRun).

Budget mapping: iterations -> min = max query count (multi-stream: rounded up to whole queries of
len(clients) samples; offline: the sample count); time -> min_duration and min_query_count=min_iterations;
target_ci -> LoadGen has no CI rule, so runs of doubling min_duration (from 2 s, or max_time_s if shorter) until
the CI computed from the SUT's timestamps meets the target or max_time_s is spent; the last run is reported, and
on_measure_start is called before each run so a meter's window holds that run alone.
"""

from __future__ import annotations

import json
import math
import os
import queue
import tempfile
import threading
import time
from dataclasses import replace

import numpy as np

from infermeter.errors import BadInput
from infermeter.scenarios.base import (
    DEFAULT_TIME_S,
    Budget,
    Load,
    LoadGenRun,
    MeasureStart,
    ScenarioResult,
    WarmUp,
)
from infermeter.scenarios.closed_loop import warm_up
from infermeter.scenarios.measure import StopRule, build_result

LOADGEN_SCENARIOS = {"single-stream": "SingleStream", "multi-stream": "MultiStream", "server": "Server",
                     "offline": "Offline"}
#: size of the sample library LoadGen draws indices from; inputs(index) rotates over the staged pool
QSL_SIZE = 1024
SUMMARY_FILE = "mlperf_log_summary.txt"
DETAIL_FILE = "mlperf_log_detail.txt"


def _import_loadgen():
    try:
        import mlperf_loadgen
    except ImportError as e:
        raise BadInput(f"--loadgen needs MLCommons LoadGen, which is not importable here ({e}); "
                       "install it with: pip install mlcommons-loadgen") from e
    return mlperf_loadgen


def run_with_loadgen(name: str, load: Load, budget: Budget, *, target_qps: float | None = None,
                     latency_bound_ms: float | None = None, seed: int = 0,
                     outdir: str | os.PathLike | None = None, on_measure_start: MeasureStart | None = None,
                     concurrent: bool = False) -> ScenarioResult:
    """concurrent: the scenario drives every client at once (it takes --streams); else the first alone."""
    lg = _import_loadgen()
    outdir = os.fspath(outdir) if outdir is not None else None  # LoadGen's bindings take str only, not a Path
    clients = load.clients if concurrent else load.clients[:1]
    warm = warm_up(clients, load.inputs, budget)
    est_latency_s = _estimate_latency_s(clients, load.inputs, warm)
    if budget.rule != "ci":
        return _one_run(lg, name, load, clients, budget, budget.min_time_s, target_qps, latency_bound_ms, seed,
                        outdir, est_latency_s, warm, on_measure_start)
    # LoadGen has no CI rule: lengthen the run until the interval is narrow enough or max_time_s is spent
    spent_s, duration_s, runs = 0.0, min(max(budget.min_time_s, DEFAULT_TIME_S), budget.max_time_s), 0
    while True:
        runs += 1
        run_dir = os.path.join(outdir, f"run{runs}") if outdir else None
        # each run opens its own meter window: the reported run's items and energy share one window
        result = _one_run(lg, name, load, clients, budget, duration_s, target_qps, latency_bound_ms, seed,
                          run_dir, est_latency_s, warm, on_measure_start)
        spent_s += result.duration_s
        duration_s = min(2 * duration_s, budget.max_time_s - spent_s)
        if result.stop.ci_target_reached or duration_s < 0.5:
            break
    result.loadgen = replace(result.loadgen, runs=runs, total_s=spent_s)
    result.stop = replace(result.stop, reason="ci" if result.stop.ci_target_reached else "max_time")
    return result


def _estimate_latency_s(clients, inputs, warm: WarmUp) -> float:
    """Service time guess for LoadGen's expected-latency/expected-QPS settings (sizes Offline's query)."""
    if warm.requests:
        # warm-up runs every client at once: wall time x clients / requests = time per request
        return warm.seconds * len(clients) / warm.requests
    t0 = time.perf_counter()
    for i in range(3):
        clients[0](inputs(i))
    return (time.perf_counter() - t0) / 3


def _settings(lg, name: str, budget: Budget, duration_s: float, n_streams: int, target_qps: float | None,
              latency_bound_ms: float | None, seed: int, est_latency_s: float):
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIOS[name])
    s.mode = lg.TestMode.PerformanceOnly
    s.qsl_rng_seed = s.sample_index_rng_seed = s.schedule_rng_seed = seed
    s.performance_sample_count_override = QSL_SIZE
    per_query = n_streams if name == "multi-stream" else 1
    if name == "multi-stream":
        s.multi_stream_samples_per_query = n_streams
        s.multi_stream_expected_latency_ns = int(est_latency_s * 1e9)
    s.single_stream_expected_latency_ns = int(est_latency_s * 1e9)
    s.offline_expected_qps = max(1.0 / est_latency_s, 1.0)
    if name == "server":
        s.server_target_qps = float(target_qps)
        if latency_bound_ms is not None:
            s.server_target_latency_ns = int(latency_bound_ms * 1e6)
    if budget.rule == "iterations":
        count = math.ceil(budget.iterations / per_query)
        s.min_duration_ms = 0
        s.min_query_count = s.max_query_count = count
        if name == "offline":
            s.offline_expected_qps = 1.0  # so the sample count is min_query_count alone
    else:
        s.min_duration_ms = int(duration_s * 1e3)
        s.min_query_count = max(1, math.ceil(budget.min_iterations / per_query))
        s.max_query_count = 0
    return s


class _SUT:
    """Queues LoadGen's samples for one worker thread per client; keeps (received, started, done) times."""

    def __init__(self, lg, clients, inputs):
        self.lg, self.clients, self.inputs = lg, clients, inputs
        self.pending: queue.Queue = queue.Queue()
        self.records: list[tuple[float, float, float]] = []
        self.failures: list[BaseException] = []
        self.workers = [threading.Thread(target=self._work, args=(k,), name=f"infermeter-loadgen-{k}",
                                         daemon=True) for k in range(len(clients))]
        for w in self.workers:
            w.start()

    def issue_query(self, samples) -> None:
        t_received = time.perf_counter()
        for s in samples:
            self.pending.put((s.id, s.index, t_received))

    def flush_queries(self) -> None:
        pass

    def _work(self, k: int) -> None:
        client = self.clients[k]
        while True:
            item = self.pending.get()
            if item is None:
                return
            sample_id, index, t_received = item
            try:
                if not self.failures:
                    x = self.inputs(index)
                    t_started = time.perf_counter()
                    client(x)
                    self.records.append((t_received, t_started, time.perf_counter()))
            except BaseException as e:  # noqa: BLE001 — re-raised after the test; LoadGen must not hang
                self.failures.append(e)
            # always answer, so LoadGen finishes even after a failure
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(sample_id, 0, 0)])

    def close(self) -> None:
        for _ in self.workers:
            self.pending.put(None)
        for w in self.workers:
            w.join()


def _one_run(lg, name, load: Load, clients, budget: Budget, duration_s: float, target_qps, latency_bound_ms,
             seed, outdir, est_latency_s, warm, on_measure_start=None) -> ScenarioResult:
    settings = _settings(lg, name, budget, duration_s, len(clients), target_qps, latency_bound_ms, seed,
                         est_latency_s)
    tmp = None
    if outdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="infermeter-loadgen-")
        outdir = tmp.name
    os.makedirs(outdir, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = _SUT(lg, clients, load.inputs)
    sut_handle = lg.ConstructSUT(sut.issue_query, sut.flush_queries)
    qsl_handle = lg.ConstructQSL(QSL_SIZE, QSL_SIZE, lambda indices: None, lambda indices: None)
    try:
        if on_measure_start is not None:
            on_measure_start()
        wall0 = time.perf_counter()
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log)
        wall_s = time.perf_counter() - wall0
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroySUT(sut_handle)
        sut.close()
        summary_text = _read(os.path.join(outdir, SUMMARY_FILE))
        detail_text = _read(os.path.join(outdir, DETAIL_FILE)) or ""
        if tmp is not None:
            tmp.cleanup()
    if sut.failures:
        raise sut.failures[0]
    if summary_text is None:
        raise RuntimeError(f"LoadGen wrote no {SUMMARY_FILE} in {outdir}; see mlperf_log_detail.txt there")
    rec = np.asarray(sut.records, dtype=np.float64).reshape(-1, 3)
    if rec.shape[0] == 0:
        raise RuntimeError("LoadGen issued no sample to the SUT")
    # offline: one query holds every sample, so receipt-to-done is queueing; the batch's own time is the
    # latency the native offline scenario reports (LoadGen's queue-inclusive figures are in its summary)
    issue_s = rec[:, 1] if name == "offline" else rec[:, 0]
    stop = StopRule(budget, load.batch_size, watch_throughput=name != "server")
    stop.reason = "loadgen"
    summary = parse_summary(summary_text)
    summary["messages"] = parse_detail_messages(detail_text)
    t_start, t_end = float(rec[:, 0].min()), float(rec[:, 2].max())
    loadgen = LoadGenRun(result=summary["result"] if summary["result"] in ("VALID", "INVALID") else None,
                         failed_constraints="; ".join(summary["failed_constraints"]) or None, runs=1,
                         total_s=t_end - t_start, wall_s=wall_s, summary=summary,
                         log_dir=None if tmp is not None else outdir)
    return build_result(name, issue_s=issue_s, done_s=rec[:, 2], t_start=t_start, t_end=t_end,
                        batch_size=load.batch_size, streams=len(clients), latency_bound_ms=latency_bound_ms,
                        stop=stop, warmup=warm, loadgen=loadgen, throughput_in_ci=name != "server")


# ---- LoadGen's log files --------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def parse_detail_messages(text: str) -> list[str]:
    """The errors and warnings in mlperf_log_detail.txt, as "error|warning: key: value" lines (e.g. LoadGen
    counts reaching max_query_count as an error, which an iteration budget does on purpose)."""
    messages = []
    for line in text.splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        meta = entry.get("metadata", {})
        for kind in ("error", "warning"):
            if meta.get(f"is_{kind}"):
                messages.append(f"{kind}: {entry.get('key')}: {entry.get('value')}")
    return messages


_LATENCY_KEYS = {"Min latency (ns)": "min", "Max latency (ns)": "max", "Mean latency (ns)": "mean"}
_THROUGHPUT_KEYS = ("Samples per second", "Completed samples per second", "QPS w/o loadgen overhead")


def _number(text: str):
    """int or finite float where the text is one, else the text (keeps the dict JSON-safe)."""
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return text
        return value if math.isfinite(value) else text


def parse_summary(text: str) -> dict:
    """mlperf_log_summary.txt -> dict: `fields` holds every `key : value` line as LoadGen wrote it (first
    occurrence wins), plus normalised entries: scenario, mode, result (VALID/INVALID), valid (bool),
    samples_per_second, scheduled_samples_per_second (server), latency_ms_{min,max,mean,p50,p90,p95,p97,p99,p99.9},
    min_duration_satisfied / min_queries_satisfied / early_stopping_satisfied / performance_constraints_satisfied,
    failed_constraints (each "... satisfied" line that does not say Yes, as LoadGen wrote it, e.g. "Early
    stopping satisfied: NO"), warnings / errors (bool: LoadGen reported some)."""
    fields: dict[str, object] = {}
    for line in text.splitlines():
        if line.startswith("=") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key and value and not key.startswith("*"):
            fields.setdefault(key, _number(value))
    out: dict[str, object] = {"fields": fields}
    out["scenario"] = fields.get("Scenario")
    out["mode"] = fields.get("Mode")
    out["result"] = fields.get("Result is")
    out["valid"] = fields.get("Result is") == "VALID"
    for key in _THROUGHPUT_KEYS:
        if key in fields:
            out["samples_per_second"] = float(fields[key])
            break
    if "Scheduled samples per second" in fields:
        out["scheduled_samples_per_second"] = float(fields["Scheduled samples per second"])
    for key, value in fields.items():
        if key in _LATENCY_KEYS:
            out[f"latency_ms_{_LATENCY_KEYS[key]}"] = float(value) / 1e6
        elif key.endswith("percentile latency (ns)") and not key[0:1].isalpha():
            q = float(key.split()[0].rstrip("th"))
            label = f"{q:g}"
            out.setdefault(f"latency_ms_p{label}", float(value) / 1e6)
    for key in ("Min duration satisfied", "Min queries satisfied", "Early stopping satisfied",
                "Performance constraints satisfied"):
        if key in fields:
            out[key.lower().replace(" ", "_")] = str(fields[key]).lower() == "yes"
    out["failed_constraints"] = [f"{k}: {v}" for k, v in fields.items()
                                 if k.lower().endswith(" satisfied") and str(v).lower() != "yes"]
    out["warnings"] = "No warnings encountered during test." not in text
    out["errors"] = "No errors encountered during test." not in text
    return out
