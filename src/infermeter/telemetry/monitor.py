"""The monitor the worker holds for a run: one GPU (NVML), the CPU sockets (RAPL), the host (psutil).

Per cell: start() starts the sampler and then reads the energy counters; stop() reads the counters
first and then stops the sampler, so the samples bracket the counter window and the counter window
brackets the timed region [t0, t1] (the worker synchronises the device before each call).

Energy sources, best first: the GPU's energy counter; the GPU's power samples integrated over [t0, t1]
(older GPUs without the counter); RAPL (CPU runs only: it measures whole sockets); else none, said why.

The idle baseline waits until power has stopped falling (IDLE_RULE), so a board still warm from the work
before it (the check, the held-out pass) does not raise it. The counter's update period is measured once
(measure_counter_period) and sets the shortest energy window whose quantisation error is within
COUNTER_MAX_ERROR. Each row says whether the cell was host- or device-bound by BOUND_RULE.
"""

from __future__ import annotations

import os
import time

from infermeter.device import DeviceInfo
from infermeter.telemetry import energy as ea
from infermeter.telemetry.host import HostReader, busiest_thread_pct, cpu_util_pct, proc_cpu_util_pct
from infermeter.telemetry.nvml import GpuReader, clock_event_names, open_nvml
from infermeter.telemetry.rapl import DEFAULT_POWERCAP_ROOT, WHOLE_SOCKET_NOTE, RaplAccumulator, RaplReader
from infermeter.telemetry.records import (
    CellTelemetry,
    CounterFacts,
    EnergyRecord,
    IdleFacts,
    MemoryRecord,
    TelemetryFacts,
    UtilisationRecord,
)
from infermeter.telemetry.sampler import Sampler

COUNTER, SAMPLES, RAPL = "nvml-energy-counter", "nvml-power-samples", "rapl"
TRACE_COLUMNS = ("time_s", "power_w", "gpu_util_pct", "mem_used_mb", "temp_c", "sm_clock_mhz", "mem_clock_mhz",
                 "cpu_util_pct", "proc_cpu_pct", "rss_mb")
MIG_NOTE = " (board-wide: this run uses a MIG slice; the other slices' draw is included)"
RAPL_MIN_INTERVAL_S = 0.01  # RAPL updates about every millisecond: shorter spans give noise, not power
IDLE_SETTLE_TOLERANCE = 0.02  # the last idle window's mean within 2% of the one before: power stopped falling
IDLE_SETTLE_MAX_S = 60.0      # the longest the baseline waits for that; then the last window, marked unsettled
IDLE_RULE = ("idle power = mean of the last {w:g} s once it is within {tol:g}% of the mean of the {w:g} s before "
             "(power has stopped falling), checked at every sample, waiting at most {max:g} s")
COUNTER_MAX_ERROR = 0.01      # energy window >= update period / 1%: the counter's steps cost at most 1%
COUNTER_PROBE_S = 1.0         # how long measure_counter_period reads the counter at most
COUNTER_PROBE_CHANGES = 6     # ... stopping once it has seen this many changes
BOUND_GPU_UTIL_PCT = 50.0     # below: the GPU idles part of the window
BOUND_THREAD_PCT = 90.0       # at or above (% of one core): a host thread is saturated
BOUND_RULE = (f"host: GPU utilisation < {BOUND_GPU_UTIL_PCT:g}% while the worker's busiest thread uses >= "
              f"{BOUND_THREAD_PCT:g}% of one core; device: GPU utilisation >= {BOUND_GPU_UTIL_PCT:g}%; "
              "unknown: anything else (neither saturated, or a reading missing)")


def bound_of(gpu_util_pct: float | None, busiest_thread_pct: float | None) -> str:
    """BOUND_RULE."""
    if gpu_util_pct is None:
        return "unknown"
    if gpu_util_pct >= BOUND_GPU_UTIL_PCT:
        return "device"
    if busiest_thread_pct is not None and busiest_thread_pct >= BOUND_THREAD_PCT:
        return "host"
    return "unknown"


def _max(values) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _series(samples: list[dict], key: str) -> tuple[list[float], list[float]]:
    pairs = [(s["t"], s[key]) for s in samples if s.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _brackets(times: list[float], t_start: float, t_end: float) -> bool:
    return len(times) >= 2 and times[0] <= t_start and times[-1] >= t_end


class Monitor:
    def __init__(self, device: DeviceInfo, interval_ms: float, pid: int, gpu: GpuReader | None, gpu_why: str,
                 rapl: RaplReader) -> None:
        self.device, self.interval_ms, self.pid = device, interval_ms, pid
        self._gpu, self._gpu_why, self._rapl = gpu, gpu_why, rapl
        self._rapl_acc = RaplAccumulator(rapl) if rapl.available else None
        self._host = HostReader(pid)
        self._sampler = Sampler(self._read_sample, interval_ms)
        self.power_idle_w: float | None = None
        self.idle_info: IdleFacts | None = None  # the settled-idle rule and what it found, for run.json
        self.counter_period_s: float | None = None
        self.counter_info: CounterFacts | None = None  # the counter's measured update period, for run.json
        self.energy_source = self._choose_source()
        self._cell: dict | None = None

    # -- which source -------------------------------------------------------------------------------------
    def _choose_source(self) -> str:
        gpu = self._gpu
        if gpu is not None:
            if not gpu.counter_why:
                return COUNTER
            if gpu.power_field:
                return SAMPLES
            return f"unavailable: {gpu.name}: {gpu.counter_why}; {gpu.power_why}"
        if self.device.kind == "cuda":
            # the board cannot be read; socket energy would be the wrong quantity for a GPU run
            return f"unavailable: GPU run but {self._gpu_why}"
        if self._rapl_acc is not None:
            return RAPL
        return f"unavailable: {self._gpu_why} and {self._rapl.why}"

    @property
    def energy_available(self) -> bool:
        return not self.energy_source.startswith("unavailable")

    def energy_window_needed_s(self, energy_time_s: float) -> float:
        """The shortest energy window: --energy-time-s, or longer where the counter's measured update period
        needs it for COUNTER_MAX_ERROR."""
        if self.energy_source != COUNTER:
            return energy_time_s
        return max(energy_time_s, ea.counter_min_window_s(self.counter_period_s, COUNTER_MAX_ERROR))

    def energy_pass_needed(self, window_s: float, energy_time_s: float) -> bool:
        """True when energy can be measured but the timed region is too short for the counter's steps."""
        return self.energy_available and window_s < self.energy_window_needed_s(energy_time_s)

    def measure_counter_period(self, max_s: float = COUNTER_PROBE_S) -> float | None:
        """Read the GPU energy counter in a tight loop (about every millisecond) for at most max_s and take
        the median time between its changes as its update period; recorded for run.json."""
        if self.energy_source != COUNTER:
            return None
        times, values = [], []
        t_end = time.perf_counter() + max_s
        try:
            while time.perf_counter() < t_end:
                values.append(self._gpu.energy_mj())
                times.append(time.perf_counter())
                if sum(1 for a, b in zip(values, values[1:]) if a != b) >= COUNTER_PROBE_CHANGES:
                    break
                time.sleep(0.001)
        except Exception as e:  # a failed read costs the probe, never the run: windows keep --energy-time-s
            self.counter_info = CounterFacts(None, why=f"counter read failed ({type(e).__name__}: {e}); "
                                                        "windows keep --energy-time-s")
            return None
        self.counter_period_s = ea.counter_update_period_s(times, values)
        changes = sum(1 for a, b in zip(values, values[1:]) if a != b)
        self.counter_info = CounterFacts(
            update_period_ms=None if self.counter_period_s is None else self.counter_period_s * 1e3,
            why=None if self.counter_period_s is not None else (
                f"the counter changed {changes} time(s) in {max_s:g} s: too few to tell its period; windows keep "
                "--energy-time-s"),
            changes_seen=changes, probe_s=times[-1] - times[0] if times else 0.0, reads=len(values),
            max_quantisation_error=COUNTER_MAX_ERROR,
            min_energy_window_s=ea.counter_min_window_s(self.counter_period_s, COUNTER_MAX_ERROR),
            rule="energy window >= update period / max_quantisation_error (each counter read lags by less "
                 "than one period)")
        return self.counter_period_s

    # -- reading --------------------------------------------------------------------------------------------
    def _read_sample(self) -> dict:
        s = self._gpu.sample() if self._gpu is not None else {}
        if self._rapl_acc is not None:
            s["rapl_uj"] = self._rapl_acc.total_uj()
        s.update(self._host.sample())
        return s

    def _read_counters(self) -> dict:
        """GPU and RAPL counters with the perf_counter time of each read (midpoint)."""
        out: dict = {}
        if self._gpu is not None and not self._gpu.counter_why:
            t_before = time.perf_counter()
            try:
                value = self._gpu.energy_mj()
                out["gpu_mj"] = (0.5 * (t_before + time.perf_counter()), value)
            except Exception as e:  # fall back to the power samples for this cell, and say so
                out["gpu_error"] = f"energy counter read failed ({type(e).__name__}: {e})"
        if self._rapl_acc is not None:
            t_before = time.perf_counter()
            value = self._rapl_acc.total_uj()
            out["rapl_uj"] = (0.5 * (t_before + time.perf_counter()), value)
        return out

    # -- idle baseline ---------------------------------------------------------------------------------------
    def _idle_trace(self, samples: list[dict]) -> tuple[list[float], list[float], bool]:
        """(times, values, cumulative): RAPL's energy in J (cumulative), else the GPU's power in W."""
        if self.energy_source == RAPL:
            times, totals = _series(samples, "rapl_uj")
            return times, [v / 1e6 for v in totals], True
        times, power = _series(samples, "power_w")
        return times, power, False

    def measure_idle(self, seconds: float, max_wait_s: float = IDLE_SETTLE_MAX_S,
                     tolerance: float = IDLE_SETTLE_TOLERANCE) -> float | None:
        """Idle power in the current state (context alive, model loaded), kept for net energy: the mean of the
        last `seconds` once it is within `tolerance` of the `seconds` before (IDLE_RULE), so the baseline is
        not taken while the board still cools down from earlier work. Waits at most max(max_wait_s,
        2 x seconds); unsettled by then, the last window is kept and idle_info says so. RAPL (a CPU run) takes
        one window: a CPU package's power follows its load within milliseconds, while a GPU board steps down
        its clocks and power states over seconds."""
        if self._cell is not None:
            raise RuntimeError("measure_idle() during a cell; call it before start() or after stop()")
        if not self.energy_available or seconds <= 0:
            return None
        if self.energy_source == RAPL:
            return self._idle_one_window(seconds)
        limit_s = max(max_wait_s, 2 * seconds)
        self._sampler.start()
        t_begin = time.perf_counter()
        settled, last, prev = False, None, None
        try:
            while True:
                time.sleep(self._sampler.interval_s)
                times, values, cumulative = self._idle_trace(list(self._sampler.samples))
                settled, last, prev = ea.settled_idle(times, values, seconds, tolerance, cumulative)
                waited = time.perf_counter() - t_begin
                if settled or waited >= limit_s or (not times and waited >= 2 * seconds):  # nothing to wait for
                    break
        finally:
            samples = self._sampler.stop()
        times, values, cumulative = self._idle_trace(samples)  # with the closing sample: the rule on the full trace
        settled, last, prev = ea.settled_idle(times, values, seconds, tolerance, cumulative)
        if not settled and len(times) >= 2 and times[-1] > times[0]:  # the window the limit allowed
            t0 = max(times[0], times[-1] - seconds)
            last = ea.window_power_w(times, values, t0, times[-1], cumulative)
        self.power_idle_w = last
        why = None if settled else (f"power did not settle within {limit_s:g} s: the last window is the baseline"
                                    if last is not None else "no idle power readings")
        self.idle_info = IdleFacts(rule=IDLE_RULE.format(w=seconds, tol=100 * tolerance, max=limit_s),
                                   window_s=seconds, power_idle_w=last, settled=settled, tolerance=tolerance,
                                   max_wait_s=limit_s, previous_window_w=prev,
                                   waited_s=(times[-1] - t_begin) if times else None, why=why)
        return self.power_idle_w

    def _idle_one_window(self, seconds: float) -> float | None:
        self._sampler.start()
        time.sleep(seconds)
        times, values, cumulative = self._idle_trace(self._sampler.stop())
        if len(times) >= 2 and times[-1] > times[0]:
            self.power_idle_w = ea.window_power_w(times, values, times[0], times[-1], cumulative)
        self.idle_info = IdleFacts(rule=f"idle power = mean over {seconds:g} s (RAPL: one window; a CPU package's "
                                        "power follows its load within milliseconds)", window_s=seconds,
                                   power_idle_w=self.power_idle_w, settled=None)
        return self.power_idle_w

    # -- one cell ----------------------------------------------------------------------------------------------
    def start(self, restart: bool = False) -> None:
        """Open the cell's window. restart=True first drops a window already open (a scenario that times
        several runs and reports the last one opens a fresh window before each)."""
        if self._cell is not None:
            if not restart:
                raise RuntimeError("start() twice without stop()")
            self.discard()
        self._sampler.start()
        self._cell = {"counters_start": self._read_counters(), "threads": (time.perf_counter(), self._threads())}

    def _threads(self) -> dict[int, float]:
        try:
            return self._host.thread_cpu_s()
        except Exception:  # a thread vanished mid-read: no busiest-thread figure for this cell
            return {}

    @property
    def window_open(self) -> bool:
        return self._cell is not None

    def discard(self) -> None:
        """Close an open window without a result (its run failed, or a later run replaces it)."""
        if self._cell is not None:
            self._sampler.stop()
            self._cell = None

    def stop(self, t0: float, t1: float, items: int | None, allocator_peak_mb: float | None = None) -> CellTelemetry:
        """Close the cell whose timed region was [t0, t1] (perf_counter) and processed `items` items in it."""
        if self._cell is None:
            raise RuntimeError("stop() without start()")
        counters_end = self._read_counters()
        t_threads, threads_end = time.perf_counter(), self._threads()
        samples = self._sampler.stop()
        counters_start = self._cell["counters_start"]
        t_threads0, threads_start = self._cell["threads"]
        self._cell = None
        notes = [f"sampler: {self._sampler.error_count} failed reads ({'; '.join(self._sampler.errors)})"] \
            if self._sampler.error_count else []
        if self._gpu is not None:
            notes += self._gpu.problems()
        self._add_derived(samples)

        energy_j, window_s, source, rel = self._energy(samples, counters_start, counters_end, t0, t1, notes)
        derived = ea.derived_energy_fields(energy_j, window_s, items,
                                           self.power_idle_w if energy_j is not None else None)
        if derived["energy_j"] is not None and derived["energy_net_j"] is not None and self.idle_info is not None \
                and self.idle_info.settled is False:
            derived["energy_net_note"] = f"idle baseline unsettled ({self.idle_info.why})"
        rapl_j = None
        if source != RAPL and "rapl_uj" in counters_start and "rapl_uj" in counters_end:
            # the sockets' energy beside a GPU run, for JSON readers; never the row's energy_j
            rapl_j = (counters_end["rapl_uj"][1] - counters_start["rapl_uj"][1]) / 1e6
        energy = EnergyRecord(
            **derived,
            power_peak_w=self._power_peak(samples, t0, t1, source),
            power_idle_w=self.power_idle_w,
            energy_trace_vs_counter_rel=rel,
            energy_trace_vs_counter_pct=None if rel is None else 100.0 * rel,
            power_field=(self._gpu.power_field if self._gpu is not None else
                         "rapl-counter-delta" if source == RAPL else None),
            throttle_reasons=self._throttle_reasons(samples),
            energy_source=source + MIG_NOTE if self.device.mig and source in (COUNTER, SAMPLES) else source,
            rapl_energy_j=rapl_j)
        in_window = [s for s in samples if t0 <= s["t"] <= t1] or samples  # memory of this cell's timed run
        memory = MemoryRecord(device_mem_peak_mb=_max(s.get("proc_mem_mb") for s in in_window),
                              device_mem_allocator_peak_mb=allocator_peak_mb,
                              host_rss_peak_mb=_max(s.get("rss_mb") for s in samples))
        gpu_util = self._window_mean(samples, "gpu_util_pct", t0, t1)
        thread_pct = busiest_thread_pct(threads_start, threads_end, t_threads - t_threads0) \
            if threads_start and threads_end else None
        utilisation = UtilisationRecord(
            gpu_util_avg_pct=gpu_util,
            busiest_thread_cpu_pct=thread_pct,
            # host- or device-bound: a question about a GPU run; a CPU run's host is its device
            bound=bound_of(gpu_util, thread_pct) if self.device.kind == "cuda" else None,
            cpu_util_avg_pct=cpu_util_pct(samples[0], samples[-1]) if len(samples) >= 2 else None,
            proc_cpu_util_avg_pct=(proc_cpu_util_pct(samples[0], samples[-1], samples[-1]["t"] - samples[0]["t"])
                                   if len(samples) >= 2 else None))
        if len(samples) < 2:
            notes.append(f"only {len(samples)} sample(s) in the cell: sampler reads failed")
        return CellTelemetry(energy, memory, utilisation, "; ".join(notes) or None, self._trace(samples, t0, t1))

    def _energy(self, samples, c_start, c_end, t0, t1, notes):
        """(energy_j, window_s, energy_source, trace_vs_counter_rel) for the cell."""
        source = self.energy_source
        if not self.energy_available:
            return None, None, source, None
        p_times, power = _series(samples, "power_w")
        if source == COUNTER:
            if "gpu_mj" in c_start and "gpu_mj" in c_end and c_start["gpu_mj"][1] is not None \
                    and c_end["gpu_mj"][1] is not None:
                (tc0, mj0), (tc1, mj1) = c_start["gpu_mj"], c_end["gpu_mj"]
                energy_j = (mj1 - mj0) / 1000.0
                rel = None
                if _brackets(p_times, tc0, tc1):
                    rel = ea.relative_difference(ea.window_integral(p_times, power, tc0, tc1), energy_j)
                else:
                    notes.append("power samples do not cover the counter window: no trace/counter comparison")
                return energy_j, tc1 - tc0, source, rel
            notes.append(c_start.get("gpu_error") or c_end.get("gpu_error") or "energy counter read failed")
            source = SAMPLES  # this cell only: integrate the samples instead
        if source == SAMPLES:
            if _brackets(p_times, t0, t1):
                return ea.window_integral(p_times, power, t0, t1), t1 - t0, source, None
            return None, None, "unavailable: power samples do not cover the timed region (reads failed)", None
        (tr0, uj0), (tr1, uj1) = c_start["rapl_uj"], c_end["rapl_uj"]
        return (uj1 - uj0) / 1e6, tr1 - tr0, RAPL, None

    # -- derived per-sample values ------------------------------------------------------------------------------
    def _add_derived(self, samples: list[dict]) -> None:
        """Per-interval CPU utilisation (and RAPL power) ending at each sample; None at the first."""
        prev = None
        for s in samples:
            s["cpu_util_pct"] = cpu_util_pct(prev, s) if prev else None
            s["proc_cpu_pct"] = proc_cpu_util_pct(prev, s, s["t"] - prev["t"]) if prev else None
            if self._rapl_acc is not None and self._gpu is None:
                ok = prev is not None and s["t"] - prev["t"] >= RAPL_MIN_INTERVAL_S
                s["power_w"] = (s["rapl_uj"] - prev["rapl_uj"]) / 1e6 / (s["t"] - prev["t"]) if ok else None
            prev = s

    def _power_peak(self, samples, t0, t1, source) -> float | None:
        if source == RAPL:  # interval powers whose interval overlaps the window
            return _max(s.get("power_w") for prev, s in zip(samples, samples[1:]) if s["t"] > t0 and prev["t"] < t1)
        times, power = _series(samples, "power_w")
        if not _brackets(times, t0, t1):
            return _max(p for t, p in zip(times, power) if t0 <= t <= t1)
        return max(ea.trim_trace(times, power, t0, t1)[1])

    @staticmethod
    def _window_mean(samples, key, t0, t1) -> float | None:
        times, values = _series(samples, key)
        if _brackets(times, t0, t1):
            return ea.window_mean(times, values, t0, t1)
        inside = [v for t, v in zip(times, values) if t0 <= t <= t1]
        return sum(inside) / len(inside) if inside else None

    @staticmethod
    def _throttle_reasons(samples) -> str | None:
        bits = [s["clock_event_bits"] for s in samples if s.get("clock_event_bits") is not None]
        if not bits:
            return None
        combined = 0
        for b in bits:
            combined |= b
        return ",".join(clock_event_names(combined)) or "none"

    @staticmethod
    def _trace(samples: list[dict], t0: float, t1: float) -> list[dict]:
        """Samples inside (t0, t1) plus rows interpolated at exactly t0 and t1; time_s relative to t0."""
        cols = TRACE_COLUMNS[1:]

        def at(t: float) -> dict | None:
            for a, b in zip(samples, samples[1:]):
                if a["t"] <= t <= b["t"]:
                    frac = 0.0 if b["t"] == a["t"] else (t - a["t"]) / (b["t"] - a["t"])
                    return {c: (None if a.get(c) is None or b.get(c) is None
                                else a[c] + frac * (b[c] - a[c])) for c in cols}
            return None

        rows = []
        edge = at(t0)
        if edge is not None:
            rows.append({"time_s": 0.0, **edge})
        rows += [{"time_s": s["t"] - t0, **{c: s.get(c) for c in cols}} for s in samples if t0 < s["t"] < t1]
        edge = at(t1)
        if edge is not None and t1 > t0:
            rows.append({"time_s": t1 - t0, **edge})
        return rows

    # -- run-level ------------------------------------------------------------------------------------------------
    def run_info(self) -> TelemetryFacts:
        """Once per run: the GPU's settings and neighbours, RAPL's domains, and what the energy figures mean."""
        notes = []
        if self._gpu is not None:
            gpu = {"available": True, **self._gpu.run_info()}
            if gpu.get("other_processes_note"):
                notes.append(gpu["other_processes_note"])
        else:
            gpu = {"available": False, "why": self._gpu_why}
        if self._rapl.available:
            notes.append(WHOLE_SOCKET_NOTE)
        return TelemetryFacts(energy_source=self.energy_source, interval_ms=self.interval_ms, pid=self.pid,
                              power_idle_w=self.power_idle_w, idle=self.idle_info, energy_counter=self.counter_info,
                              bound_rule=BOUND_RULE, gpu=gpu, rapl=self._rapl.info(), notes=notes)

    def close(self) -> None:
        self._sampler.stop()
        self._cell = None
        if self._gpu is not None:
            self._gpu.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_monitor(device: DeviceInfo, interval_ms: float = 100.0, pid: int | None = None, *,
                 rapl_root: str = DEFAULT_POWERCAP_ROOT, gpu_reader: GpuReader | None = None) -> Monitor:
    """A monitor for this device. NVML is initialised here, never at import; close() releases it.

    gpu_reader replaces the NVML reader (a scripted reader for tests of the arithmetic).
    """
    pid = os.getpid() if pid is None else pid
    gpu, gpu_why = gpu_reader, ""
    if gpu is None:
        if device.kind == "cuda":
            gpu, gpu_why = open_nvml(device.gpu_id, device.uuid, pid)
        else:
            from infermeter.device import nvml_gpus

            names, why = nvml_gpus()
            gpu_why = why if not names else f"CPU run (the {len(names)} GPU(s) here are not measured)"
    return Monitor(device, interval_ms, pid, gpu, gpu_why, RaplReader(rapl_root))
